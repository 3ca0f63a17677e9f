import { isFerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { type Descriptor, type Manifest, parseManifest } from '../oci/manifest.js';
import { forEachLimited } from '../copy/pool.js';
import { Gate } from './gate.js';
import type { ImageSource, OpOptions } from '../transports/types.js';
import { COSIGN_SUFFIXES, cosignTag, DSSE_ENVELOPE, type ReferrerKind, referrersTag } from './scheme.js';

/** An image whose referrers are wanted: where it is read from and written to. */
export interface Subject {
  sourceRepository: string;
  targetRepository: string;
  digest: Digest;
  /** For messages and the export result: the reference the user gave. */
  origin: string;
}

export interface FoundReferrer {
  subject: Subject;
  digest: Digest;
  /** The cosign or fallback tag it was found by; absent for referrers-API results and fallback-index entries. */
  tag?: string;
  kind: ReferrerKind;
  /** `tag`: a cosign tag; `api`: the referrers API; `index`: an entry of the `sha256-<hex>` fallback index (carried inside it). */
  via: 'tag' | 'api' | 'index';
  artifactType?: string;
}

/** The OCI 1.1 referrers API of the source's registry; undefined when it has none. */
export type ReferrersLookup = (repository: string, digest: Digest, opts?: OpOptions) => Promise<Descriptor[] | undefined>;

/**
 * Every tag of a repository; undefined when the source cannot list them, or not
 * within `maxPages` pages (then each tag is asked for).
 */
export type TagListing = (repository: string, opts?: OpOptions & { maxPages?: number }) => Promise<ReadonlySet<string> | undefined>;

/**
 * Pages are fetched one after another: a repository is listed in at most as many
 * pages as it has subjects (each of which would otherwise cost its own lookups),
 * and never more than this. A huge repository exported for one image costs one
 * page before its tags are asked for one by one.
 */
const TAG_PAGES_MAX = 20;

export interface DiscoverOptions extends OpOptions {
  lookup?: ReferrersLookup;
  tags?: TagListing;
  /** Requests in flight at once (`--jobs`), across all subjects. */
  jobs?: number;
}

/** A signature on an attestation is one level down; more is unusual, and a cycle must end. */
const MAX_DEPTH = 3;

/**
 * Finds what refers to each subject: cosign's `.sig`/`.att`/`.sbom` tags, and
 * OCI 1.1 referrers (API, else the `sha256-<hex>` tag), then the referrers of
 * those (a signed attestation), each digest once. A missing tag is "none".
 */
export async function discoverReferrers(source: ImageSource, subjects: Subject[], opts: DiscoverOptions = {}): Promise<FoundReferrer[]> {
  return new ReferrerFinder(source, opts).discover(subjects);
}

/**
 * The lookups of one export, sharing what they learn. Over a WAN each request
 * costs a round trip, so: a repository's tags are listed once and answer every
 * scheme-tag question about it (only tags that exist are fetched), all
 * subjects' lookups run concurrently within one `--jobs` budget, and a
 * subject's own lookups do not wait for each other.
 */
export class ReferrerFinder {
  private readonly gate: Gate;
  private readonly tagLists = new Map<string, Promise<ReadonlySet<string> | undefined>>();
  /** Subjects per source repository: how many pages its tag list is worth. */
  private readonly subjectsIn = new Map<string, number>();
  private readonly op: OpOptions;

  constructor(private readonly source: ImageSource, private readonly opts: DiscoverOptions = {}) {
    this.gate = new Gate(opts.jobs ?? 4, opts.signal);
    this.op = opts.signal ? { signal: opts.signal } : {};
  }

  async discover(subjects: Subject[]): Promise<FoundReferrer[]> {
    const found: FoundReferrer[] = [];
    const seen = new Set<string>();
    let level = subjects.filter((s) => {
      const key = `${s.sourceRepository}@${s.digest}`;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    });
    for (const s of level) this.subjectsIn.set(s.sourceRepository, (this.subjectsIn.get(s.sourceRepository) ?? 0) + 1);
    for (let depth = 0; depth < MAX_DEPTH && level.length > 0; depth++) {
      const next: Subject[] = [];
      await this.all(level, async (subject) => {
        for (const r of await this.referrersOf(subject)) {
          found.push(r);
          const key = `${subject.sourceRepository}@${r.digest}`;
          if (seen.has(key)) continue;
          seen.add(key);
          const origin = r.tag !== undefined ? `${subject.targetRepository}:${r.tag}` : `${subject.targetRepository}@${r.digest}`;
          next.push({ sourceRepository: subject.sourceRepository, targetRepository: subject.targetRepository, digest: r.digest, origin });
        }
      });
      level = next;
    }
    return found;
  }

  /** The manifest `tag` names in `repository`, or undefined when there is no such tag. */
  async tagged(repository: string, tag: string): Promise<Manifest | undefined> {
    const tags = await this.tagsOf(repository);
    if (tags !== undefined && !tags.has(tag)) return undefined;
    return this.gate.run(() => manifestIfAny(this.source, repository, tag, this.op));
  }

  /**
   * Runs `work` over the items, a few per request slot at a time: the gate
   * bounds the requests, and this the subjects waiting for one (all 10,000 of
   * an export at once held ~300,000 promises and closures: 100 MB of heap).
   * Each subject asks up to five things at once (three cosign tags, the API, the
   * fallback tag). The first failure stops further requests and subjects.
   */
  async all<T>(items: readonly T[], work: (item: T) => Promise<void>): Promise<void> {
    await forEachLimited(items, (this.opts.jobs ?? 4) * 4, async (item) => {
      try {
        await work(item);
      } catch (e) {
        this.gate.close(e instanceof Error ? e : new Error(String(e)));
        throw e;
      }
    });
  }

  private tagsOf(repository: string): Promise<ReadonlySet<string> | undefined> {
    const listing = this.opts.tags;
    if (!listing) return Promise.resolve(undefined);
    let list = this.tagLists.get(repository);
    if (!list) {
      const maxPages = Math.min(TAG_PAGES_MAX, Math.max(1, this.subjectsIn.get(repository) ?? 1));
      list = this.gate.run(() => listing(repository, { ...this.op, maxPages }));
      this.tagLists.set(repository, list);
    }
    return list;
  }

  private async referrersOf(subject: Subject): Promise<FoundReferrer[]> {
    const [cosign, oci] = await Promise.all([
      Promise.all(COSIGN_SUFFIXES.map(async ([suffix, kind]): Promise<FoundReferrer[]> => {
        const tag = cosignTag(subject.digest, suffix);
        const m = await this.tagged(subject.sourceRepository, tag);
        return m ? [{ subject, digest: m.digest, tag, kind, via: 'tag' }] : [];
      })),
      this.ociReferrers(subject),
    ]);
    return [...cosign.flat(), ...oci];
  }

  /** The referrers API's answer; without one, the `sha256-<hex>` fallback index and its entries. */
  private async ociReferrers(subject: Subject): Promise<FoundReferrer[]> {
    const lookup = this.opts.lookup;
    const listed = lookup ? await this.gate.run(() => lookup(subject.sourceRepository, subject.digest, this.op)) : undefined;
    if (listed !== undefined) {
      return listed.map((d) => ({ subject, digest: d.digest, kind: kindOf(d.artifactType), via: 'api' as const, ...(d.artifactType ? { artifactType: d.artifactType } : {}) }));
    }
    const out: FoundReferrer[] = [];
    const tag = referrersTag(subject.digest);
    const index = await this.tagged(subject.sourceRepository, tag);
    if (index) {
      const parsed = parseManifest(index.bytes, index.mediaType, `${subject.sourceRepository}:${tag}`);
      // Only an index is a referrers list; anything else under that name is somebody's ordinary tag.
      if (parsed.kind === 'index') {
        out.push({ subject, digest: index.digest, tag, kind: 'referrers-index', via: 'tag' });
        for (const d of parsed.manifests) out.push({ subject, digest: d.digest, kind: kindOf(d.artifactType), via: 'index', ...(d.artifactType ? { artifactType: d.artifactType } : {}) });
      }
    }
    return out;
  }
}

async function manifestIfAny(source: ImageSource, repository: string, tag: string, opts: OpOptions): Promise<Manifest | undefined> {
  try {
    return await source.getManifest(repository, tag, opts);
  } catch (e) {
    if (isFerryError(e, 'E_NOT_FOUND')) return undefined;
    throw e;
  }
}

/** What an OCI 1.1 referrer holds, from its artifactType (cosign, in-toto, SPDX, CycloneDX conventions). */
export function kindOf(artifactType: string | undefined): ReferrerKind {
  const t = artifactType ?? '';
  if (t.startsWith('application/vnd.dev.cosign.artifact.sig') || t.includes('signature')) return 'signature';
  if (t === DSSE_ENVELOPE || t.includes('in-toto') || t.includes('attestation')) return 'attestation';
  if (t.includes('spdx') || t.includes('cyclonedx') || t.includes('sbom')) return 'sbom';
  return 'referrer';
}
