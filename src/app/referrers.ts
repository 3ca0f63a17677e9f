import type { CopyObserver } from '../copy/events.js';
import { type CopyPlan, type ImageRequest, planCopy } from '../copy/plan.js';
import { isFerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { splitQualifiedName } from '../oci/reference.js';
import { discoverReferrers, type ReferrersLookup } from '../referrers/discover.js';
import { groupReferrers, type ReferrerGroup, referrerRequests } from '../referrers/requests.js';
import { cosignTag } from '../referrers/scheme.js';
import { openRegistrySource } from '../transports/registry/open.js';
import type { RegistrySource } from '../transports/registry/source.js';
import type { ImageSource, OpOptions } from '../transports/types.js';
import { pullConnectionFor, type RegistryAccess } from './registry-access.js';

export interface ReferrersOptions {
  jobs: number;
  registry: RegistryAccess;
  /** Set when reading a layout/dir/bundle: no registry API to ask, only tags. */
  from?: string | undefined;
  signal?: AbortSignal;
  observer?: CopyObserver;
}

export interface ExportReferrers {
  images: ReferrerGroup[];
  /** Referrers ferry could not carry (an unsupported manifest kind), with why. */
  skipped: { reference: string; reason: string }[];
}

/**
 * Finds what refers to each planned image (cosign tags, OCI referrers) and
 * plans those as further images of the same export, so they are deduplicated,
 * verified and stored like any other. They are planned without the platform
 * filter: a signature or a referrers index must travel byte for byte.
 */
export async function addReferrers(source: ImageSource, plan: CopyPlan, requests: ImageRequest[], opts: ReferrersOptions): Promise<{ plan: CopyPlan; referrers: ExportReferrers }> {
  const signal = opts.signal ? { signal: opts.signal } : {};
  const api = opts.from ? undefined : new ReferrersApi(opts.registry);
  try {
    const subjects = plan.images.map((p) => ({ sourceRepository: p.request.sourceRepository, targetRepository: p.request.targetRepository, digest: p.top.digest, origin: p.request.origin }));
    const found = await discoverReferrers(source, subjects, { jobs: opts.jobs, ...(api ? { lookup: api.lookup } : {}), ...signal });
    await warnSignedSources(source, plan, opts);

    const extra = referrerRequests(found, requests, plan.images.map((p) => ({ repository: p.request.targetRepository, digest: p.top.digest })));
    const skipped: ExportReferrers['skipped'] = [];
    if (extra.length === 0) return { plan, referrers: { images: groupReferrers(found), skipped } };
    const warning = opts.observer?.warning;
    const more = await planCopy(source, extra, { jobs: opts.jobs, ...signal, ...(warning ? { observer: { warning: (m: string) => warning.call(opts.observer, m) } } : {}) });
    // A referrer ferry cannot carry (say, an unsupported manifest kind) must not cost the user the image itself.
    for (const f of more.failures) {
      if (f.error.code === 'E_ABORTED') throw f.error;
      skipped.push({ reference: f.request.origin, reason: f.error.message });
      opts.observer?.warning?.(`${f.request.origin}: not carried: ${f.error.message}`);
    }
    const dropped = new Set(skipped.map((s) => s.reference));
    const images = groupReferrers(found)
      .map((g) => ({ ...g, referrers: g.referrers.filter((r) => !dropped.has(r.reference)) }))
      .filter((g) => g.referrers.length > 0);
    return { plan: { images: [...plan.images, ...more.images], failures: [] }, referrers: { images, skipped } };
  } finally {
    await api?.close();
  }
}

/** A platform filter stores a new digest: a signature on the source index cannot travel with it, and the user should know. */
async function warnSignedSources(source: ImageSource, plan: CopyPlan, opts: ReferrersOptions): Promise<void> {
  for (const p of plan.images) {
    if (!p.sourceDigest) continue;
    const tag = cosignTag(p.sourceDigest, '.sig');
    try {
      await source.getManifest(p.request.sourceRepository, tag, opts.signal ? { signal: opts.signal } : {});
    } catch (e) {
      if (isFerryError(e, 'E_NOT_FOUND')) continue;
      throw e;
    }
    opts.observer?.warning?.(`${p.request.origin}: the index ${p.sourceDigest} is signed (${tag}), but --platform stores ${p.top.digest}; that signature will not verify against the exported image and is not carried`);
  }
}

/**
 * The referrers API of each registry the export reads from. Its own
 * connections: the export's source wraps registries for resumable fetches,
 * and this is a handful of small GETs.
 */
class ReferrersApi {
  private readonly sources = new Map<string, RegistrySource>();

  constructor(private readonly access: RegistryAccess) {}

  readonly lookup: ReferrersLookup = (qualified: string, digest: Digest, o?: OpOptions): Promise<Descriptor[] | undefined> => {
    const { registry, repository } = splitQualifiedName(qualified);
    if (registry === undefined) return Promise.resolve(undefined);
    let s = this.sources.get(registry);
    if (!s) {
      s = openRegistrySource(pullConnectionFor(this.access, registry));
      this.sources.set(registry, s);
    }
    return s.referrers(repository, digest, o);
  };

  async close(): Promise<void> {
    await Promise.all([...this.sources.values()].map((s) => s.close()));
  }
}
