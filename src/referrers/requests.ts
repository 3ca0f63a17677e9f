import type { ImageRequest } from '../copy/plan.js';
import type { Digest } from '../oci/digest.js';
import type { FoundReferrer } from './discover.js';
import type { ReferrerKind } from './scheme.js';

/** One image's referrers as the export reports them (until the bundle metadata records the link itself). */
export interface ReferrerGroup {
  /** The subject as the user named it. */
  image: string;
  digest: Digest;
  referrers: { reference: string; digest: Digest; kind: ReferrerKind }[];
}

/**
 * Turns discovered referrers into extra copy requests: cosign and fallback tags
 * keep their tags, referrers-API results go by digest, and entries of a
 * fallback index ride inside it. Requests the user already made, and digests
 * already exported in the same repository, are not asked for twice.
 */
export function referrerRequests(found: FoundReferrer[], existing: ImageRequest[], exported: { repository: string; digest: Digest }[]): ImageRequest[] {
  const taken = new Set<string>(existing.filter((r) => r.targetTag !== undefined).map((r) => `${r.targetRepository}:${r.targetTag!}`));
  for (const e of exported) taken.add(`${e.repository}@${e.digest}`);
  const out: ImageRequest[] = [];
  for (const r of sortReferrers(found)) {
    if (r.via === 'index') continue;
    const repo = r.subject.targetRepository;
    const key = r.tag !== undefined ? `${repo}:${r.tag}` : `${repo}@${r.digest}`;
    if (taken.has(key)) continue;
    taken.add(key);
    // Pinned by digest: a tag moved since discovery must not swap in another signature.
    const req: ImageRequest = { sourceRepository: r.subject.sourceRepository, sourceReference: r.digest, targetRepository: repo, origin: key };
    if (r.tag !== undefined) req.targetTag = r.tag;
    out.push(req);
  }
  return out;
}

/** The export result's view: per subject, what refers to it (directly). */
export function groupReferrers(found: FoundReferrer[]): ReferrerGroup[] {
  const groups = new Map<string, ReferrerGroup>();
  for (const r of sortReferrers(found)) {
    const key = `${r.subject.targetRepository}@${r.subject.digest}`;
    let g = groups.get(key);
    if (!g) {
      g = { image: r.subject.origin, digest: r.subject.digest, referrers: [] };
      groups.set(key, g);
    }
    const reference = r.tag !== undefined ? `${r.subject.targetRepository}:${r.tag}` : `${r.subject.targetRepository}@${r.digest}`;
    if (!g.referrers.some((x) => x.reference === reference)) g.referrers.push({ reference, digest: r.digest, kind: r.kind });
  }
  return [...groups.values()];
}

/** Discovery runs concurrently; results are ordered so output and requests do not depend on timing. */
function sortReferrers(found: FoundReferrer[]): FoundReferrer[] {
  const k = (r: FoundReferrer) => `${r.subject.targetRepository}\u0000${r.subject.digest}\u0000${r.tag ?? '~'}\u0000${r.digest}`;
  return [...found].sort((a, b) => (k(a) < k(b) ? -1 : k(a) > k(b) ? 1 : 0));
}
