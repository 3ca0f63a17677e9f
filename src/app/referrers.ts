import type { CopyObserver } from '../copy/events.js';
import { type CopyPlan, type ImageRequest, planCopy } from '../copy/plan.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { splitQualifiedName } from '../oci/reference.js';
import { ReferrerFinder, type ReferrersLookup, type TagListing } from '../referrers/discover.js';
import { listTags } from '../referrers/tag-list.js';
import { groupReferrers, type ReferrerGroup, referrerRequests } from '../referrers/requests.js';
import { cosignTag } from '../referrers/scheme.js';
import { RegistryClient } from '../transports/registry/client.js';
import { RegistrySource } from '../transports/registry/source.js';
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
  const api = opts.from ? undefined : new RegistryLookups(opts.registry);
  try {
    const finder = new ReferrerFinder(source, { jobs: opts.jobs, ...(api ? { lookup: api.lookup, tags: api.tags } : {}), ...signal });
    const subjects = plan.images.map((p) => ({ sourceRepository: p.request.sourceRepository, targetRepository: p.request.targetRepository, digest: p.top.digest, origin: p.request.origin }));
    const found = await finder.discover(subjects);
    await warnSignedSources(finder, plan, opts);

    const extra = referrerRequests(found, requests, plan.images.map((p) => ({ repository: p.request.targetRepository, digest: p.top.digest })));
    const skipped: ExportReferrers['skipped'] = [];
    if (extra.length === 0) return { plan, referrers: { images: groupReferrers(found), skipped } };
    const observer = opts.observer;
    const more = await planCopy(source, extra, { jobs: opts.jobs, ...signal, ...(observer?.warning ? { observer: { warning: (m: string) => observer.warning?.(m) } } : {}) });
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
async function warnSignedSources(finder: ReferrerFinder, plan: CopyPlan, opts: ReferrersOptions): Promise<void> {
  const filtered = plan.images.filter((p) => p.sourceDigest !== undefined);
  const signed = new Array<string | undefined>(filtered.length);
  await finder.all(filtered.map((p, i) => ({ p, i })), async ({ p, i }) => {
    const tag = cosignTag(p.sourceDigest!, '.sig');
    if (await finder.tagged(p.request.sourceRepository, tag)) signed[i] = tag;
  });
  // In plan order, whatever order the lookups finished in.
  filtered.forEach((p, i) => {
    if (signed[i] !== undefined) opts.observer?.warning?.(`${p.request.origin}: the index ${p.sourceDigest!} is signed (${signed[i]}), but --platform stores ${p.top.digest}; that signature will not verify against the exported image and is not carried`);
  });
}

/**
 * What each registry the export reads from can answer in one go: its
 * referrers API and its repositories' tag lists. Its own connections: the
 * export's source wraps registries for resumable fetches, and these are a
 * handful of small GETs. A registry without the referrers API (a 404, as
 * distribution 2.8 answers) is asked once, not once per image: its first
 * answer is remembered, and lookups that arrive while it is awaited wait for it.
 */
class RegistryLookups {
  private readonly registries = new Map<string, RegistryState>();

  constructor(private readonly access: RegistryAccess) {}

  readonly lookup: ReferrersLookup = async (qualified: string, digest: Digest, o?: OpOptions): Promise<Descriptor[] | undefined> => {
    const { registry, repository } = splitQualifiedName(qualified);
    if (registry === undefined) return undefined;
    const r = this.stateOf(registry);
    for (;;) {
      if (r.api === 'absent') return undefined;
      if (r.api === 'present') return r.source.referrers(repository, digest, o);
      if (r.probe) {
        await r.probe;
        continue;
      }
      // This lookup is the probe. A failure leaves the question open for the next lookup to ask.
      let settled!: () => void;
      r.probe = new Promise<void>((resolve) => (settled = resolve));
      try {
        const listed = await r.source.referrers(repository, digest, o);
        r.api = listed === undefined ? 'absent' : 'present';
        return listed;
      } finally {
        r.probe = undefined;
        settled();
      }
    }
  };

  readonly tags: TagListing = (qualified: string, o?: OpOptions & { maxPages?: number }): Promise<ReadonlySet<string> | undefined> => {
    const { registry, repository } = splitQualifiedName(qualified);
    if (registry === undefined) return Promise.resolve(undefined);
    return listTags(this.stateOf(registry).client, repository, o);
  };

  private stateOf(registry: string): RegistryState {
    let r = this.registries.get(registry);
    if (!r) {
      const client = new RegistryClient(pullConnectionFor(this.access, registry));
      r = { client, source: new RegistrySource(client), api: 'unknown' };
      this.registries.set(registry, r);
    }
    return r;
  }

  async close(): Promise<void> {
    await Promise.all([...this.registries.values()].map((r) => r.source.close()));
  }
}

interface RegistryState {
  client: RegistryClient;
  source: RegistrySource;
  /** Whether the registry has the referrers API, once an answer said so. */
  api: 'unknown' | 'present' | 'absent';
  /** The first lookup, while it is on its way. */
  probe?: Promise<void> | undefined;
}
