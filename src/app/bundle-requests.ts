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
  /** `--flatten N`: cap mapped names at N path components (see repository-mapping.ts). */
  flatten?: number | undefined;
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
      targetRepository: sel.identity ? i.repository : mapRepository(i.repository, sel.renames ?? [], sel.prefix ?? '', sel.flatten),
      origin: i.origin,
    };
    if (i.tag !== undefined) r.targetTag = i.tag;
    return r;
  });
}

/**
 * Refuses requests that would put two different images on one target
 * `repository:tag` (renames or --flatten folding names together): which one
 * wins would depend on upload order. The same image arriving twice is fine,
 * and so are two sources sharing a repository under different tags.
 */
export function assertNoTagCollisions(requests: ImageRequest[]): void {
  const byTarget = new Map<string, ImageRequest[]>();
  for (const r of requests) {
    if (r.targetTag === undefined) continue;
    const key = `${r.targetRepository}:${r.targetTag}`;
    const list = byTarget.get(key) ?? [];
    if (!list.some((x) => x.sourceReference === r.sourceReference)) list.push(r);
    byTarget.set(key, list);
  }
  const clashes = [...byTarget].filter(([, list]) => list.length > 1);
  if (clashes.length === 0) return;
  const lines = clashes.map(([target, list]) => `  ${target} ← ${list.map((r) => `${r.origin} (${r.sourceReference})`).join(', ')}`);
  throw new FerryError('E_USAGE', `${clashes.length} target tag${clashes.length > 1 ? 's' : ''} would receive more than one image:\n${lines.join('\n')}`, {
    hint: 'map these sources apart: a deeper --flatten, a --project-map/--rename for one of them, or --image to push only one',
    details: { collisions: clashes.map(([target, list]) => ({ target, images: list.map((r) => ({ origin: r.origin, digest: r.sourceReference })) })) },
  });
}
