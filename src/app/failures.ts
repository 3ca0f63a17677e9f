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
