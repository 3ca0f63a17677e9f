import { type CopyPlan, type ImageRequest, planCopy } from '../copy/plan.js';
import type { Descriptor } from '../oci/manifest.js';
import { isIndexMediaType } from '../oci/media-types.js';
import { type BundleBlob, type BundleImage, buildMetadata, compareImages } from '../transports/bundle/metadata.js';
import { planVolumes } from '../transports/bundle/volumes.js';
import { ociIndex } from '../transports/bundle/writer.js';
import { TOOL_VERSION } from '../version.js';
import { loadBases } from '../delta/inputs.js';
import { FerryError } from '../errors.js';
import { formatBytes, table } from '../format.js';
import type { Digest } from '../oci/digest.js';
import type { Platform } from '../oci/platform.js';
import { formatReference, fullName, parseReference } from '../oci/reference.js';
import { BlobStore } from '../store/blob-store.js';
import { cacheMaxBytes, defaultCacheDir } from './cache-dir.js';
import { failureError } from './failures.js';
import { type ListedImage, readImageList } from './image-list.js';
import { openRegistrySource } from '../transports/registry/open.js';
import { MultiRegistrySource } from '../transports/multi-registry.js';
import { pullConnectionFor, type RegistryAccess } from './registry-access.js';

export interface PlanOptions {
  listFile?: string | undefined;
  references?: string[];
  since?: string[] | undefined;
  platforms?: Platform[] | undefined;
  cacheDir?: string | undefined;
  /** The cap the export will trim the cache to (as ExportOptions.cacheMax). */
  cacheMax?: number | 'unlimited' | undefined;
  /** Volume size in bytes (`--split`), for the volume count. */
  split?: number | undefined;
  jobs: number;
  registry: RegistryAccess;
  signal?: AbortSignal;
}

export interface PlannedImageSize {
  reference: string;
  digest: Digest;
  platforms: string[];
  /** Manifests, configs and layers of this image. */
  bytes: number;
  /** Of those, bytes no other listed image needs. */
  uniqueBytes: number;
  /** Of those, bytes at least one other listed image needs too. */
  sharedBytes: number;
}

export interface ExportPlan {
  images: PlannedImageSize[];
  totals: {
    images: number;
    blobs: number;
    manifests: number;
    /** Every image's bytes added up, as separate pulls would move them. */
    referencedBytes: number;
    /** Each blob and manifest once: what a full bundle stores. */
    uniqueBytes: number;
    /** Bytes of blobs that two or more images share (counted once). */
    sharedBytes: number;
  };
  /** `maxBytes`: the cap the export trims the cache to afterwards (null: none); this export's own blobs always stay. */
  cache: { dir: string; blobs: number; bytes: number; partialBytes: number; maxBytes: number | null };
  delta?: { omittedBlobs: number; omittedBytes: number };
  /** What the export will pull over the network. */
  fetch: { blobs: number; bytes: number };
  bundle: { storedBytes: number; approxFileBytes: number };
  disk: {
    /** New cache entries plus the bundle file (uncompressed: zstd only makes it smaller). */
    export: number;
    /** The bundle file plus what the import writes (the target's own dedup can only make it less). */
    import: number;
  };
  split?: { volumeBytes: number; volumes: number };
}

/** tar framing: a 512-byte header per entry, contents padded to 512, two zero blocks at the end. */
const TAR_BLOCK = 512;
/** ferry.json, oci-layout, index.json and the two directory entries: a generous allowance per blob and image. */
const METADATA_PER_ENTRY = 400;

/**
 * Plan = what an export would do, without doing it: only manifests are read
 * (from the registries), blobs are sized from their descriptors, the cache is
 * looked at by size alone (an export hashes what it reuses). The numbers to
 * answer "will it fit, and how long will it take" before the transfer window.
 */
export async function planExport(opts: PlanOptions): Promise<ExportPlan> {
  const since = opts.since && opts.since.length > 0 ? await loadBases(opts.since) : undefined;
  const requests = await requestsOf(opts);
  // Manifests come from where the export would pull them: mirrors included.
  const source = new MultiRegistrySource((registry) => openRegistrySource(pullConnectionFor(opts.registry, registry)));
  try {
    const plan = await planCopy(source, requests, { jobs: opts.jobs, ...(opts.platforms ? { platforms: opts.platforms } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
    if (plan.failures.length > 0) throw failureError('plan', plan.failures.map((f) => ({ image: f.request.origin, error: f.error })), requests.length);

    // Who needs what: blob digest → sizes and the images using it.
    const users = new Map<Digest, { size: number; images: number }>();
    const manifests = new Map<Digest, number>();
    for (const image of plan.images) {
      for (const b of image.blobs) {
        const u = users.get(b.digest);
        if (u) u.images++;
        else users.set(b.digest, { size: b.size, images: 1 });
      }
      for (const m of image.manifests) manifests.set(m.digest, m.bytes.length);
    }

    const images: PlannedImageSize[] = plan.images.map((image) => {
      let uniqueBytes = 0;
      let sharedBytes = 0;
      for (const b of image.blobs) {
        if (users.get(b.digest)!.images > 1) sharedBytes += b.size;
        else uniqueBytes += b.size;
      }
      // Manifests belong to their image (two tags of one image share them, which the totals show).
      const manifestBytes = image.manifests.reduce((n, m) => n + m.bytes.length, 0);
      return {
        reference: image.request.origin, digest: image.top.digest, platforms: image.platforms,
        bytes: uniqueBytes + sharedBytes + manifestBytes, uniqueBytes: uniqueBytes + manifestBytes, sharedBytes,
      };
    });

    const cacheDir = opts.cacheDir ?? defaultCacheDir();
    const store = new BlobStore(cacheDir);
    let cachedBlobs = 0;
    let cachedBytes = 0;
    let partialBytes = 0;
    let omittedBlobs = 0;
    let omittedBytes = 0;
    let fetchBlobs = 0;
    let fetchBytes = 0;
    let blobBytes = 0;
    let storedEntries = 0;
    let storedBytes = 0;
    let tarBytes = 0;
    const entry = (size: number) => {
      storedEntries++;
      storedBytes += size;
      tarBytes += TAR_BLOCK + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
    };
    for (const [digest, u] of users) {
      blobBytes += u.size;
      if (since?.held.has(digest)) {
        omittedBlobs++;
        omittedBytes += u.size;
        continue;
      }
      entry(u.size);
      if (await store.has({ digest, size: u.size })) {
        cachedBlobs++;
        cachedBytes += u.size;
        continue;
      }
      fetchBlobs++;
      fetchBytes += u.size;
      partialBytes += Math.min(u.size, await store.partialSize(digest));
    }
    for (const size of manifests.values()) entry(size);
    const approxFileBytes = tarBytes + 2 * TAR_BLOCK + 5 * TAR_BLOCK + METADATA_PER_ENTRY * (storedEntries + images.length + omittedBlobs);

    const manifestBytes = [...manifests.values()].reduce((n, s) => n + s, 0);
    const result: ExportPlan = {
      images,
      totals: {
        images: images.length,
        blobs: users.size,
        manifests: manifests.size,
        referencedBytes: images.reduce((n, i) => n + i.bytes, 0),
        uniqueBytes: blobBytes + manifestBytes,
        sharedBytes: [...users.values()].filter((u) => u.images > 1).reduce((n, u) => n + u.size, 0),
      },
      cache: { dir: cacheDir, blobs: cachedBlobs, bytes: cachedBytes, partialBytes, maxBytes: (opts.cacheMax === 'unlimited' ? undefined : opts.cacheMax ?? cacheMaxBytes(undefined)) ?? null },
      fetch: { blobs: fetchBlobs, bytes: fetchBytes - partialBytes },
      bundle: { storedBytes, approxFileBytes },
      disk: { export: fetchBytes + manifestBytes + approxFileBytes, import: approxFileBytes + storedBytes },
    };
    if (since) result.delta = { omittedBlobs, omittedBytes };
    if (opts.split !== undefined) result.split = { volumeBytes: opts.split, volumes: countVolumes(plan, images, since, opts.split) };
    return result;
  } finally {
    await source.close();
  }
}

/**
 * The volumes an export with `--split` writes, by the writer's own cut
 * (transports/bundle/volumes.ts) over the bundle's metadata as the export
 * would build it — stored order included, as the cut depends on it. Only a
 * plain image's platform is guessed (the export reads it from the config,
 * plan reads no configs): a few bytes of ferry.json, the cap's only slack.
 */
function countVolumes(plan: CopyPlan, sizes: PlannedImageSize[], since: Awaited<ReturnType<typeof loadBases>> | undefined, split: number): number {
  const order = plan.images.map((image, i) => ({ image, size: sizes[i]!.bytes })).sort((a, b) => compareImages(
    { repository: a.image.request.targetRepository, tag: a.image.request.targetTag, digest: a.image.top.digest },
    { repository: b.image.request.targetRepository, tag: b.image.request.targetTag, digest: b.image.top.digest },
  ));
  const groups: Record<'manifests' | 'configs' | 'layers', BundleBlob[]> = { manifests: [], configs: [], layers: [] };
  const seen = new Set<Digest>();
  const omitted: BundleBlob[] = [];
  const add = (group: BundleBlob[], blob: BundleBlob): void => {
    if (seen.has(blob.digest)) return;
    seen.add(blob.digest);
    if (blob.kind === 'manifest' || blob.kind === 'index' || !since?.held.has(blob.digest)) group.push(blob);
    else omitted.push(blob);
  };
  const images: BundleImage[] = [];
  for (const { image, size } of order) {
    for (const m of image.manifests) {
      const parsed = image.parsed.get(m.digest);
      if (parsed?.kind === 'image') {
        if (parsed.config) add(groups.configs, { ...pick(parsed.config), kind: 'config' });
        for (const l of parsed.layers) add(groups.layers, { ...pick(l), kind: 'layer' });
      }
      add(groups.manifests, { digest: m.digest, size: m.bytes.length, mediaType: m.mediaType, kind: isIndexMediaType(m.mediaType) ? 'index' : 'manifest' });
    }
    const r = image.request;
    const img: BundleImage = {
      origin: r.origin, repository: r.targetRepository, digest: image.top.digest, mediaType: image.top.mediaType,
      platforms: isIndexMediaType(image.top.mediaType) ? image.platforms : ['linux/arm64/v8'], size,
    };
    if (r.targetTag !== undefined) img.tag = r.targetTag;
    if (image.sourceDigest) img.sourceDigest = image.sourceDigest;
    images.push(img);
  }
  const stored = [...groups.manifests, ...groups.configs, ...groups.layers];
  const meta = buildMetadata({
    created: '1970-01-01T00:00:00Z', toolVersion: TOOL_VERSION, images, blobs: stored,
    ...(since ? { delta: { bases: since.bases, omittedBlobs: omitted } } : {}),
  });
  return planVolumes(meta, stored, ociIndex(meta).length, split, 'ferry plan').length;
}

function pick(d: Descriptor): Pick<BundleBlob, 'digest' | 'size' | 'mediaType'> {
  return { digest: d.digest, size: d.size, mediaType: d.mediaType };
}

async function requestsOf(opts: PlanOptions): Promise<ImageRequest[]> {
  const listed: ListedImage[] = [];
  if (opts.listFile) listed.push(...(await readImageList(opts.listFile)));
  (opts.references ?? []).forEach((r, i) => listed.push({ reference: parseReference(r, `argument ${i + 1}`), where: `argument ${i + 1}` }));
  if (listed.length === 0) throw new FerryError('E_USAGE', 'nothing to plan', { hint: 'give an image list with -f images.list or image references as arguments' });
  return listed.map(({ reference }) => {
    const name = fullName(reference);
    const r: ImageRequest = { sourceRepository: name, sourceReference: reference.digest ?? reference.tag!, targetRepository: name, origin: formatReference(reference) };
    if (reference.tag !== undefined) r.targetTag = reference.tag;
    return r;
  });
}

export function renderPlan(p: ExportPlan): string {
  const rows = [['IMAGE', 'SIZE', 'UNIQUE', 'SHARED', 'PLATFORMS']];
  for (const i of p.images) rows.push([i.reference, formatBytes(i.bytes), formatBytes(i.uniqueBytes), formatBytes(i.sharedBytes), i.platforms.join(',') || '-']);
  const t = p.totals;
  const lines = [
    table(rows),
    '',
    `${t.images} images, ${t.blobs} unique blobs and ${t.manifests} manifests: ${formatBytes(t.uniqueBytes)} unique (${formatBytes(t.referencedBytes)} referenced, ${formatBytes(t.sharedBytes)} of blobs shared between images)`,
    `cache ${p.cache.dir}${p.cache.maxBytes === null ? ' (no cap)' : ` (cap ${formatBytes(p.cache.maxBytes)})`}: ${p.cache.blobs} blobs (${formatBytes(p.cache.bytes)}) already there${p.cache.partialBytes > 0 ? `, ${formatBytes(p.cache.partialBytes)} of interrupted fetches to resume` : ''}`,
  ];
  const needed = p.bundle.storedBytes;
  // The export keeps every blob it used, so a release larger than the cap leaves the cache above it.
  if (p.cache.maxBytes !== null && needed > p.cache.maxBytes) lines.push(`cache cap: this export alone stores ${formatBytes(needed)} in the cache, more than the ${formatBytes(p.cache.maxBytes)} cap (raise --cache-max, or the cache stays above it until later exports no longer need these blobs)`);
  if (p.delta) lines.push(`delta: ${p.delta.omittedBlobs} blobs (${formatBytes(p.delta.omittedBytes)}) left out, the receiver has them`);
  lines.push(
    `to fetch: ${p.fetch.blobs} blobs, ${formatBytes(p.fetch.bytes)}`,
    `bundle: about ${formatBytes(p.bundle.approxFileBytes)} uncompressed (zstd makes it smaller)`,
    `disk needed: export about ${formatBytes(p.disk.export)} (cache + bundle), import about ${formatBytes(p.disk.import)} (bundle + target)`,
  );
  if (p.split) lines.push(`volumes of ${p.split.volumeBytes.toLocaleString('en-US')} bytes (${formatBytes(p.split.volumeBytes)}): ${p.split.volumes}`);
  return lines.join('\n');
}
