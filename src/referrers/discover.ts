import { isFerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { type Descriptor, type Manifest, parseManifest } from '../oci/manifest.js';
import { forEachLimited } from '../copy/pool.js';
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

export interface DiscoverOptions extends OpOptions {
  lookup?: ReferrersLookup;
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
  const found: FoundReferrer[] = [];
  const seen = new Set<string>();
  let level = subjects.filter((s) => {
    const key = `${s.sourceRepository}@${s.digest}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  for (let depth = 0; depth < MAX_DEPTH && level.length > 0; depth++) {
    const next: Subject[] = [];
    await forEachLimited(level, opts.jobs ?? 4, async (subject) => {
      for (const r of await referrersOf(source, subject, opts)) {
        found.push(r);
        const key = `${subject.sourceRepository}@${r.digest}`;
        if (seen.has(key)) continue;
        seen.add(key);
        const origin = r.tag !== undefined ? `${subject.targetRepository}:${r.tag}` : `${subject.targetRepository}@${r.digest}`;
        next.push({ sourceRepository: subject.sourceRepository, targetRepository: subject.targetRepository, digest: r.digest, origin });
      }
    }, opts.signal);
    level = next;
  }
  return found;
}

async function referrersOf(source: ImageSource, subject: Subject, opts: DiscoverOptions): Promise<FoundReferrer[]> {
  const out: FoundReferrer[] = [];
  for (const [suffix, kind] of COSIGN_SUFFIXES) {
    const tag = cosignTag(subject.digest, suffix);
    const m = await manifestIfAny(source, subject.sourceRepository, tag, opts);
    if (m) out.push({ subject, digest: m.digest, tag, kind, via: 'tag' });
  }
  const listed = opts.lookup ? await opts.lookup(subject.sourceRepository, subject.digest, opts) : undefined;
  if (listed !== undefined) {
    for (const d of listed) out.push({ subject, digest: d.digest, kind: kindOf(d.artifactType), via: 'api', ...(d.artifactType ? { artifactType: d.artifactType } : {}) });
    return out;
  }
  const tag = referrersTag(subject.digest);
  const index = await manifestIfAny(source, subject.sourceRepository, tag, opts);
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
