import type { CopyPlan } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import { formatPlatform, type Platform, platformMatches } from '../oci/platform.js';

/**
 * `--platform` judged against what the plan found, before any blob moves: a
 * value that selects nothing in any multi-arch image is a mistake (a typo the
 * grammar let through, or the wrong list), and an image that lacks one of the
 * wanted platforms is worth a warning. Single-platform images are carried as
 * they are: their platform is in their config, which planning does not read.
 */
export function checkPlatforms(plan: CopyPlan, wanted: readonly Platform[] | undefined, warn: (message: string) => void): void {
  // An images.list line's own --platform (copy/plan.ts ImageRequest.platforms) is judged for its image alone.
  for (const image of plan.images) {
    const own = image.request.platforms;
    if (!own) continue;
    const list = own.map(formatPlatform).join(',');
    if (image.sourceDigest === undefined) warn(`${image.request.origin}: --platform ${list} on its list line changes nothing: the image is single-platform`);
    else {
      const missing = own.filter((p) => !has(image, p));
      if (missing.length > 0) warn(`${image.request.origin}: has no ${missing.map(formatPlatform).join(', ')} (it has ${image.platforms.join(', ')}); the bundle carries what it has`);
    }
  }
  if (!wanted || wanted.length === 0) return;
  const multi = plan.images.filter((i) => i.sourceDigest !== undefined && i.request.platforms === undefined);
  if (multi.length === 0) {
    warn(`--platform ${wanted.map(formatPlatform).join(',')} changes nothing: no image in the list is multi-platform${plan.images.some((i) => i.request.platforms) ? ' without a --platform of its own' : ''}`);
    return;
  }
  const unused = wanted.filter((p) => !multi.some((image) => has(image, p)));
  if (unused.length > 0) {
    throw new FerryError('E_USAGE', `--platform ${unused.map(formatPlatform).join(',')} selects nothing: none of the ${multi.length} multi-platform images has it`, {
      hint: 'run `ferry plan` without --platform to see the platforms each image has',
      details: { platforms: unused.map(formatPlatform) },
    });
  }
  for (const image of multi) {
    const missing = wanted.filter((p) => !has(image, p));
    if (missing.length > 0) warn(`${image.request.origin}: has no ${missing.map(formatPlatform).join(', ')} (it has ${image.platforms.join(', ')}); the bundle carries what it has`);
  }
}

function has(image: CopyPlan['images'][number], p: Platform): boolean {
  return image.platforms.some((name) => {
    const [os, architecture, variant] = name.split('/');
    return platformMatches({ os: os!, architecture: architecture!, ...(variant ? { variant } : {}) }, p);
  });
}
