import type { ImageRequest } from '../copy/plan.js';
import { FerryError } from '../errors.js';
import type { BundleMetadata } from '../transports/bundle/metadata.js';
import { mapRepository, matchesPattern, type Rename } from './repository-mapping.js';

export interface BundleSelection {
  /** Globs over the images' references; empty means all. */
  patterns?: string[];
  renames?: Rename[];
  /** Target repository prefix (`--to host/mirror`). */
  prefix?: string;
  /** Keep bundle names as they are (verify, inspect): no mapping. */
  identity?: boolean;
}

/** The bundle's images as copy requests, selected and renamed for a target. */
export function requestsFromBundle(meta: BundleMetadata, sel: BundleSelection): ImageRequest[] {
  const patterns = sel.patterns ?? [];
  const chosen = patterns.length === 0 ? meta.images : meta.images.filter((i) => patterns.some((p) => matchesPattern(i.origin, p) || matchesPattern(`${i.repository}:${i.tag ?? ''}`, p)));
  if (chosen.length === 0) {
    throw new FerryError('E_NOT_FOUND', `no image in the bundle matches ${patterns.map((p) => JSON.stringify(p)).join(', ')}`, {
      hint: `the bundle holds: ${meta.images.slice(0, 10).map((i) => i.origin).join(', ')}${meta.images.length > 10 ? ', …' : ''}`,
    });
  }
  return chosen.map((i) => {
    const r: ImageRequest = {
      sourceRepository: i.repository,
      sourceReference: i.digest,
      targetRepository: sel.identity ? i.repository : mapRepository(i.repository, sel.renames ?? [], sel.prefix ?? ''),
      origin: i.origin,
    };
    if (i.tag !== undefined) r.targetTag = i.tag;
    return r;
  });
}
