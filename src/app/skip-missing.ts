import type { CopyObserver } from '../copy/events.js';
import type { CopyPlan, ImageRequest } from '../copy/plan.js';
import { FerryError } from '../errors.js';

/** An image left out of an export by --skip-missing, and why. */
export interface SkippedImage {
  image: string;
  /** Where it was asked for: `file:line` or `argument N`. */
  where?: string;
  code: 'E_NOT_FOUND';
  reason: string;
}

/**
 * `export --skip-missing`: images whose manifest (or a manifest of theirs) the
 * registry no longer has (E_NOT_FOUND) are left out of the plan and returned,
 * each with its reason, for the result and the warnings: never silently. An
 * image that exists but lacks the --platform asked for is no vanished image:
 * it stays a failure, as do failures of every other kind. Leaving out every
 * image is no export at all: that fails as before.
 */
export function leaveOutMissing(plan: CopyPlan, requests: readonly ImageRequest[], where: (origin: string) => string | undefined): { plan: CopyPlan; skipped: SkippedImage[] } {
  // In the list's order (the planner finishes images in any order).
  const gone = plan.failures.filter((f) => isGone(f.error)).sort((a, b) => requests.indexOf(a.request) - requests.indexOf(b.request));
  if (gone.length === 0) return { plan, skipped: [] };
  if (plan.images.length === 0 && gone.length === plan.failures.length) {
    throw new FerryError('E_NOT_FOUND', `--skip-missing: every image of the list is gone upstream; nothing to export:\n${gone.slice(0, 20).map((f) => `  ${f.request.origin}: ${f.error.message}`).join('\n')}`, {
      hint: 'check the registry and the list: the images may have been deleted, renamed, or the list points at the wrong registry',
      details: { skipped: gone.map((f) => ({ image: f.request.origin, reason: f.error.message })) },
    });
  }
  const skipped = gone.map((f): SkippedImage => {
    const w = where(f.request.origin);
    return { image: f.request.origin, ...(w !== undefined ? { where: w } : {}), code: 'E_NOT_FOUND', reason: f.error.message };
  });
  return { plan: { ...plan, failures: plan.failures.filter((f) => !gone.includes(f)) }, skipped };
}

/** A manifest the registry no longer has; not an image that lacks the platform asked for. */
function isGone(error: FerryError): boolean {
  return error.code === 'E_NOT_FOUND' && error.details['platforms'] === undefined;
}

/** The observer, minus the failure reports of images gone upstream: those are reported as left out instead. */
export function withoutMissingFailures(observer: CopyObserver): CopyObserver {
  return {
    ...observer,
    imageFailed: (label, error) => {
      if (!isGone(error)) observer.imageFailed?.(label, error);
    },
  };
}
