import type { CopyReport } from '../copy/engine.js';
import type { BundleMetadata } from '../transports/bundle/metadata.js';
import { FerryError } from '../errors.js';

/**
 * Folds per-image failures into the one error a command ends with. One failure
 * is that error itself; many of one kind (every image 401s) keep that kind's
 * code, so the exit status still says "credentials"; a mix is E_PARTIAL.
 */
export function failureError(verb: string, failures: { image: string; error: FerryError }[], total: number): FerryError {
  const first = failures[0]!;
  if (failures.length === 1 && total <= 1) return first.error;
  const codes = new Set(failures.map((f) => f.error.code));
  const code = codes.size === 1 ? first.error.code : 'E_PARTIAL';
  const lines = failures.slice(0, 20).map((f) => `  ${f.error.message.startsWith(f.image) ? f.error.message : `${f.image}: ${f.error.message}`}`);
  if (failures.length > 20) lines.push(`  … and ${failures.length - 20} more`);
  return new FerryError(code, `${verb}: ${failures.length} of ${total} images failed:\n${lines.join('\n')}`, {
    hint: first.error.hint ?? 'fix the causes above and run the command again; what already landed is reused',
    details: { failures: failures.map((f) => ({ image: f.image, code: f.error.code, message: f.error.message, ...f.error.details })) },
  });
}

/** Names the delta's bases in E_BASE_MISSING failures, so the user knows which bundle to import first (or pass with --base). */
export function explainMissingBases(report: CopyReport, meta: BundleMetadata): void {
  const bases = meta.delta?.bases ?? [];
  if (bases.length === 0) return;
  const named = bases.map((b) => b.bundleId).join(', ');
  const swap = (e: FerryError): FerryError => (e.code !== 'E_BASE_MISSING' || e.details['bases'] !== undefined ? e : new FerryError('E_BASE_MISSING', `${e.message}; it comes from the delta's base ${named}`, {
    hint: `import the base bundle (id ${bases[0]!.bundleId}) first, pass it with --base, or export a delta against what this destination holds (ferry inventory)`,
    details: { ...e.details, bases },
    cause: e,
  }));
  for (const f of report.failures) f.error = swap(f.error);
  for (const i of report.images) if (i.error) i.error = swap(i.error);
}
