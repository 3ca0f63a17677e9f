import { asFerryError, FerryError } from '../errors.js';
import { type Digest, isDigest } from '../oci/digest.js';
import { blobsOf, checkManifestDigest, type Descriptor, isForeignLayer, type Manifest, manifestFromBytes, parseManifest, type ParsedManifest } from '../oci/manifest.js';
import { walkManifests, type WalkNode } from '../oci/walk.js';
import { formatPlatform, type Platform, platformMatches } from '../oci/platform.js';
import type { ImageSource, OpOptions } from '../transports/types.js';
import type { CopyObserver } from './events.js';
import { forEachLimited } from './pool.js';

/** One image to copy: where it is read from and where it lands. */
export interface ImageRequest {
  sourceRepository: string;
  /** A tag or a digest in the source repository. */
  sourceReference: string;
  targetRepository: string;
  /** Absent for digest-only images. */
  targetTag?: string;
  /** The reference as the user knows it, for messages and bundle metadata. */
  origin: string;
  /** The platforms to keep of this image (an images.list line's own --platform), over PlanOptions.platforms. */
  platforms?: Platform[];
}

export interface PlannedImage {
  request: ImageRequest;
  /** The manifest the tag will point at: the source's, or a platform-filtered one. */
  top: Manifest;
  /** The source's top digest, when a platform filter replaced it. */
  sourceDigest?: Digest;
  /** Every manifest of the image, children before their parents, top last. */
  manifests: Manifest[];
  parsed: ReadonlyMap<Digest, ParsedManifest>;
  /** Configs and layers, each once. */
  blobs: Descriptor[];
  platforms: string[];
}

export interface PlanFailure {
  request: ImageRequest;
  error: FerryError;
}

export interface CopyPlan {
  images: PlannedImage[];
  failures: PlanFailure[];
}

export interface PlanOptions extends OpOptions {
  platforms?: Platform[];
  jobs?: number;
  observer?: CopyObserver;
}

/**
 * Resolves every requested image to its manifests and blobs. An image that
 * cannot be resolved is a failure of that image alone: the others still go.
 */
export async function planCopy(source: ImageSource, requests: ImageRequest[], opts: PlanOptions = {}): Promise<CopyPlan> {
  opts.observer?.phase?.('planning');
  const images: (PlannedImage | undefined)[] = new Array(requests.length);
  const failures: PlanFailure[] = [];
  const fetched = new Map<string, Promise<Fetched>>();

  // Images share children (a base index, the same platform image): each manifest is fetched and parsed once per plan.
  const fetchManifest = (repository: string, reference: string, where: string) => {
    const key = `${repository}@${reference}`;
    let p = fetched.get(key);
    if (!p) {
      p = (async () => {
        const manifest = await source.getManifest(repository, reference, opts);
        if (isDigest(reference)) checkManifestDigest(manifest, reference, where);
        return { digest: manifest.digest, manifest, parsed: source.parsedManifest?.(manifest.digest) ?? parseManifest(manifest.bytes, manifest.mediaType, where) };
      })();
      fetched.set(key, p);
    }
    return p;
  };

  const indexes = requests.map((_, i) => i);
  await forEachLimited(indexes, opts.jobs ?? 4, async (i) => {
    const request = requests[i]!;
    try {
      images[i] = await planImage(request, fetchManifest, request.platforms ?? opts.platforms, opts.observer);
    } catch (e) {
      const error = asFerryError(e);
      if (error.code === 'E_ABORTED') throw error;
      failures.push({ request, error });
      opts.observer?.imageFailed?.(request.origin, error);
    }
  }, opts.signal);
  return { images: images.filter((x): x is PlannedImage => x !== undefined), failures };
}

interface Fetched extends WalkNode {
  manifest: Manifest;
}

type ManifestFetcher = (repository: string, reference: string, where: string) => Promise<Fetched>;

async function planImage(request: ImageRequest, fetchManifest: ManifestFetcher, platforms: Platform[] | undefined, observer?: CopyObserver): Promise<PlannedImage> {
  const where = request.origin;
  const root = await fetchManifest(request.sourceRepository, request.sourceReference, where);
  let top = root;
  let sourceDigest: Digest | undefined;
  const platformNames = new Set<string>();

  if (root.parsed.kind === 'index' && platforms && platforms.length > 0) {
    const chosen = root.parsed.manifests.filter((d) => platforms.some((p) => platformMatches(d.platform, p)));
    if (chosen.length === 0) {
      const available = root.parsed.manifests.map((d) => (d.platform ? formatPlatform(d.platform) : 'unknown')).join(', ');
      throw new FerryError('E_NOT_FOUND', `${where}: no manifest for platform ${platforms.map(formatPlatform).join(',')} (the index has: ${available})`, {
        hint: 'pick platforms the image is built for, or drop --platform to keep them all', details: { image: where, platforms: platforms.map(formatPlatform) },
      });
    }
    sourceDigest = root.digest;
    if (chosen.length === 1) {
      // One platform: the tag points at that platform's manifest itself, byte-exact, so its digest is the registry's.
      const only = chosen[0]!;
      top = await fetchManifest(request.sourceRepository, only.digest, `${where} (${formatPlatform(only.platform!)})`);
      if (only.platform) platformNames.add(formatPlatform(only.platform));
      observer?.warning?.(`${where}: --platform keeps one platform, so the tag now points at ${top.digest} instead of the index ${sourceDigest}; signatures made on the index will not match`);
    } else {
      // The index rewritten to the chosen entries: a new top whose children are those platforms' manifests.
      const index = filteredIndex(root.manifest, chosen);
      top = { digest: index.digest, manifest: index, parsed: parseManifest(index.bytes, index.mediaType, where) };
      observer?.warning?.(`${where}: --platform rewrites the index to ${top.digest} (source ${sourceDigest}); signatures made on the source index will not match`);
    }
  }

  const walked = await walkManifests(top, (d) => fetchManifest(request.sourceRepository, d.digest, `${where} child ${d.digest}`), where);
  const parsed = walked.length === 1 ? new OneManifest(walked[0]!.node.digest, walked[0]!.node.parsed) : new Map<Digest, ParsedManifest>();
  const blobs = new Map<Digest, Descriptor>();
  for (const { node } of walked) {
    if (parsed instanceof Map) parsed.set(node.digest, node.parsed);
    for (const d of node.parsed.manifests) if (d.platform) platformNames.add(formatPlatform(d.platform));
    for (const b of blobsOf(node.parsed)) if (!blobs.has(b.digest)) blobs.set(b.digest, b);
  }
  const planned: PlannedImage = { request, top: top.manifest, manifests: walked.map(({ node }) => node.manifest), parsed, blobs: [...blobs.values()], platforms: [...platformNames] };
  if (sourceDigest) planned.sourceDigest = sourceDigest;
  return planned;
}

/**
 * The parsed manifests of an image that is one manifest (most are): a Map per
 * image was ~180 bytes of hash table each, 3.7 MB at 20,000 images.
 */
class OneManifest implements ReadonlyMap<Digest, ParsedManifest> {
  readonly size = 1;

  constructor(private readonly digest: Digest, private readonly parsed: ParsedManifest) {}

  get(key: Digest): ParsedManifest | undefined {
    return key === this.digest ? this.parsed : undefined;
  }

  has(key: Digest): boolean {
    return key === this.digest;
  }

  forEach(fn: (value: ParsedManifest, key: Digest, map: ReadonlyMap<Digest, ParsedManifest>) => void, thisArg?: unknown): void {
    fn.call(thisArg, this.parsed, this.digest, this);
  }

  *entries(): MapIterator<[Digest, ParsedManifest]> {
    yield [this.digest, this.parsed];
  }

  *keys(): MapIterator<Digest> {
    yield this.digest;
  }

  *values(): MapIterator<ParsedManifest> {
    yield this.parsed;
  }

  [Symbol.iterator](): MapIterator<[Digest, ParsedManifest]> {
    return this.entries();
  }
}

/** A copy of the index with only the chosen entries, everything else kept as the source wrote it. */
function filteredIndex(index: Manifest, chosen: Descriptor[]): Manifest {
  const doc = JSON.parse(index.bytes.toString('utf8')) as Record<string, unknown>;
  const keep = new Set<string>(chosen.map((d) => d.digest));
  doc.manifests = (doc.manifests as { digest: string }[]).filter((m) => keep.has(m.digest));
  return manifestFromBytes(Buffer.from(JSON.stringify(doc)), index.mediaType);
}

/** The foreign (non-distributable) layers the plan's images reference, each with the images that need it. */
export function foreignLayersOf(plan: CopyPlan): Map<Digest, { descriptor: Descriptor; images: string[] }> {
  const out = new Map<Digest, { descriptor: Descriptor; images: string[] }>();
  for (const image of plan.images) {
    for (const b of image.blobs) {
      if (!isForeignLayer(b)) continue;
      const entry = out.get(b.digest) ?? { descriptor: b, images: [] };
      if (!entry.images.includes(image.request.origin)) entry.images.push(image.request.origin);
      out.set(b.digest, entry);
    }
  }
  return out;
}

/**
 * The plan without these blobs: foreign layers whose bytes are absent by design
 * are not copied; the manifests that name them still are.
 */
export function withoutBlobs(plan: CopyPlan, leaveOut: ReadonlySet<Digest>): CopyPlan {
  if (leaveOut.size === 0) return plan;
  return { ...plan, images: plan.images.map((i) => ({ ...i, blobs: i.blobs.filter((b) => !leaveOut.has(b.digest)) })) };
}
