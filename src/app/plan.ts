import { type CopyPlan, foreignLayersOf, type ImageRequest, planCopy } from '../copy/plan.js';
import { checkMetadataLimits } from '../transports/bundle/layout.js';
import { serialiseMetadata } from '../transports/bundle/metadata.js';
import { loadBases } from '../delta/inputs.js';
import { FerryError, isFerryError } from '../errors.js';
import { formatBytes, table } from '../format.js';
import type { Digest } from '../oci/digest.js';
import type { Platform } from '../oci/platform.js';
import { formatReference, fullName, parseReference } from '../oci/reference.js';
import { BlobStore } from '../store/blob-store.js';
import { cacheMaxBytes, defaultCacheDir } from './cache-dir.js';
import { failureError } from './failures.js';
import { leaveOutMissing, type SkippedImage } from './skip-missing.js';
import { checkPlatforms } from './platform-check.js';
import { type ListedImage, readImageList } from './image-list.js';
import type { RegistryAccess } from './registry-access.js';
import { openRegistries } from './resumable-source.js';
import { configInfoSink, fetchConfigs, planLayout } from './bundle-layout.js';
import { checkLowerBounds } from './bundle-limits.js';

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
  warn?: (message: string) => void;
  /** As export --skip-missing: images gone upstream are left out of the plan and listed (app/skip-missing.ts). */
  skipMissing?: boolean | undefined;
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
  /** `metadataBytes`: ferry.json as the export would write it (the largest volume's; plain images' platforms allowed for unless --split read the configs). */
  bundle: { storedBytes: number; approxFileBytes: number; metadataBytes?: number };
  disk: {
    /** The bundle file (uncompressed: zstd only makes it smaller), plus the new cache entries when the export writes the cache (--cache, FERRY_CACHE). */
    export: number;
    /** The bundle file plus what the import writes (the target's own dedup can only make it less). */
    import: number;
  };
  split?: { volumeBytes: number; volumes: number };
  /** With --skip-missing: the images an export would leave out, gone upstream. */
  skipped?: SkippedImage[];
  /** A limit of the bundle readers this bundle would pass (export refuses it): also for --json, where warning lines are not printed. */
  warnings?: string[];
}

/** tar framing: a 512-byte header per entry, contents padded to 512, two zero blocks at the end. */
const TAR_BLOCK = 512;
/** ferry.json, oci-layout, index.json and the two directory entries: a generous allowance per blob and image. */
const METADATA_PER_ENTRY = 400;

/**
 * Plan = what an export would do, without doing it: manifests are read (from
 * the registries) — and with --split the image configs, which decide the
 * metadata and so the cut — blobs are sized from their descriptors, the cache
 * is looked at by size alone (an export hashes what it reuses). The numbers to
 * answer "will it fit, and how long will it take" before the transfer window;
 * a bundle readers would refuse (metadata over its limits) is warned about.
 */
export async function planExport(opts: PlanOptions): Promise<ExportPlan> {
  const since = opts.since && opts.since.length > 0 ? await loadBases(opts.since) : undefined;
  const { requests, whereOf } = await requestsOf(opts);
  // Manifests come from where the export would pull them: mirrors included.
  const { source } = openRegistries(opts.registry);
  try {
    let plan = await planCopy(source, requests, { jobs: opts.jobs, ...(opts.platforms ? { platforms: opts.platforms } : {}), ...(opts.signal ? { signal: opts.signal } : {}) });
    const missing = opts.skipMissing ? leaveOutMissing(plan, requests, (origin) => whereOf.get(origin)) : undefined;
    if (missing) {
      plan = missing.plan;
      for (const m of missing.skipped) opts.warn?.(`${m.where ? `${m.where}: ` : ''}${m.image} would be left out (--skip-missing): ${m.reason}`);
    }
    if (plan.failures.length > 0) throw failureError('plan', plan.failures.map((f) => ({ image: f.request.origin, error: f.error })), requests.length);
    checkPlatforms(plan, opts.platforms, (m) => opts.warn?.(m));

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
    const sized = await sizeExport(plan, new BlobStore(cacheDir), since ? new Set(since.held.keys()) : undefined);
    const manifestBytes = [...manifests.values()].reduce((n, s) => n + s, 0);
    const result: ExportPlan = {
      images,
      totals: {
        images: images.length,
        blobs: users.size,
        manifests: manifests.size,
        referencedBytes: images.reduce((n, i) => n + i.bytes, 0),
        uniqueBytes: [...users.values()].reduce((n, u) => n + u.size, 0) + manifestBytes,
        sharedBytes: [...users.values()].filter((u) => u.images > 1).reduce((n, u) => n + u.size, 0),
      },
      cache: { dir: cacheDir, ...sized.cache, maxBytes: (opts.cacheMax === 'unlimited' ? undefined : opts.cacheMax ?? cacheMaxBytes(undefined)) ?? null },
      fetch: sized.fetch,
      bundle: sized.bundle,
      // As export decides (export.ts cacheWrite): without --cache or FERRY_CACHE the cache is only read, the bundle is all it writes.
      disk: { export: opts.cacheDir !== undefined || Boolean(process.env['FERRY_CACHE']) ? sized.disk.export : sized.disk.bundleBytes, import: sized.disk.import },
    };
    if (since) result.delta = sized.omitted;
    // The writer's own layout: its cut counts the volumes, its metadata is what readers will parse.
    const delta = since ? { bases: since.bases, omitted: new Set(since.held.keys()) } : undefined;
    const foreign = new Set([...foreignLayersOf(plan).keys()].filter((d) => !delta?.omitted.has(d)));
    // Every limit export refuses before its first fetch is warned about here: each config and the
    // manifests and configs together within what readers hold (it only checked the metadata, so a
    // 65 MiB config planned clean and then failed the export), then the metadata.
    let overLimit = limitBreach(() => checkLowerBounds(plan, { omitted: (d) => delta?.omitted.has(d) ?? false, description: 'the bundle' }));
    let infos;
    if (opts.split !== undefined) {
      const sink = configInfoSink();
      await fetchConfigs(source, sink, plan, (d) => delta?.omitted.has(d) ?? false, 'plan', { jobs: opts.jobs, ...(opts.signal ? { signal: opts.signal } : {}) });
      infos = sink.infos;
    }
    const { layout, slack } = planLayout(plan, { ...(infos ? { infos } : {}), ...(delta ? { delta } : {}), foreign, ...(opts.split !== undefined ? { split: opts.split } : {}), description: 'ferry plan' });
    result.bundle.metadataBytes = layout.files.reduce((m, f) => Math.max(m, serialiseMetadata(f.meta).length), 0) + slack.bytes;
    overLimit ??= limitBreach(() => checkMetadataLimits(layout, 'the bundle', slack));
    if (overLimit) {
      result.warnings = [overLimit];
      opts.warn?.(overLimit);
    }
    if (opts.split !== undefined) result.split = { volumeBytes: opts.split, volumes: layout.files.length };
    if (missing && missing.skipped.length > 0) result.skipped = missing.skipped;
    return result;
  } finally {
    await source.close();
  }
}

/** A reader limit the bundle would pass, as a warning line (message; hint); other failures propagate. */
function limitBreach(check: () => void): string | undefined {
  try {
    check();
    return undefined;
  } catch (e) {
    if (!isFerryError(e, 'E_USAGE')) throw e;
    return `${e.message}; ${e.hint ?? ''}`;
  }
}

export interface ExportSizes {
  cache: { blobs: number; bytes: number; partialBytes: number };
  fetch: { blobs: number; bytes: number };
  omitted: { omittedBlobs: number; omittedBytes: number };
  /** `metadataBytes`: ferry.json as the export would write it (the largest volume's; plain images' platforms allowed for unless --split read the configs). */
  bundle: { storedBytes: number; approxFileBytes: number; metadataBytes?: number };
  disk: ExportPlan['disk'] & {
    /** Of `export`: the new cache entries (fetched blobs and manifests), and the bundle file. */
    cacheBytes: number;
    bundleBytes: number;
  };
}

/**
 * What an export of `plan` stores, fetches and writes, from descriptors and the
 * cache's file sizes alone (an export hashes what it reuses): `plan` prints it,
 * and an export checks the disks against it before its first byte.
 */
export async function sizeExport(plan: CopyPlan, store: BlobStore, omitted: ReadonlySet<Digest> | undefined): Promise<ExportSizes> {
  const blobs = new Map<Digest, number>();
  const manifests = new Map<Digest, number>();
  let images = 0;
  for (const image of plan.images) {
    images++;
    for (const b of image.blobs) blobs.set(b.digest, b.size);
    for (const m of image.manifests) manifests.set(m.digest, m.bytes.length);
  }
  let cachedBlobs = 0;
  let cachedBytes = 0;
  let partialBytes = 0;
  let omittedBlobs = 0;
  let omittedBytes = 0;
  let fetchBlobs = 0;
  let fetchBytes = 0;
  let storedEntries = 0;
  let storedBytes = 0;
  let tarBytes = 0;
  const entry = (size: number) => {
    storedEntries++;
    storedBytes += size;
    tarBytes += TAR_BLOCK + Math.ceil(size / TAR_BLOCK) * TAR_BLOCK;
  };
  for (const [digest, size] of blobs) {
    if (omitted?.has(digest)) {
      omittedBlobs++;
      omittedBytes += size;
      continue;
    }
    entry(size);
    if (await store.has({ digest, size })) {
      cachedBlobs++;
      cachedBytes += size;
      continue;
    }
    fetchBlobs++;
    fetchBytes += size;
    partialBytes += Math.min(size, await store.partialSize(digest));
  }
  for (const size of manifests.values()) entry(size);
  const approxFileBytes = tarBytes + 2 * TAR_BLOCK + 5 * TAR_BLOCK + METADATA_PER_ENTRY * (storedEntries + images + omittedBlobs);
  const manifestBytes = [...manifests.values()].reduce((n, x) => n + x, 0);
  const cacheBytes = fetchBytes + manifestBytes;
  return {
    cache: { blobs: cachedBlobs, bytes: cachedBytes, partialBytes },
    fetch: { blobs: fetchBlobs, bytes: fetchBytes - partialBytes },
    omitted: { omittedBlobs, omittedBytes },
    bundle: { storedBytes, approxFileBytes },
    disk: { export: cacheBytes + approxFileBytes, import: approxFileBytes + storedBytes, cacheBytes, bundleBytes: approxFileBytes },
  };
}

async function requestsOf(opts: PlanOptions): Promise<{ requests: ImageRequest[]; whereOf: Map<string, string> }> {
  const listed: ListedImage[] = [];
  if (opts.listFile) for (const l of await readImageList(opts.listFile)) listed.push(l);
  (opts.references ?? []).forEach((r, i) => listed.push({ reference: parseReference(r, `argument ${i + 1}`), where: `argument ${i + 1}` }));
  if (listed.length === 0) throw new FerryError('E_USAGE', 'nothing to plan', { hint: 'give an image list with -f images.list or image references as arguments' });
  const requests = listed.map(({ reference, platforms }) => {
    const name = fullName(reference);
    const r: ImageRequest = { sourceRepository: name, sourceReference: reference.digest ?? reference.tag!, targetRepository: name, origin: formatReference(reference) };
    if (reference.tag !== undefined) r.targetTag = reference.tag;
    if (platforms) r.platforms = platforms;
    return r;
  });
  return { requests, whereOf: new Map(listed.map((l) => [formatReference(l.reference), l.where])) };
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
    `disk needed: export about ${formatBytes(p.disk.export)} (${p.disk.export > p.bundle.approxFileBytes ? 'cache + bundle' : 'the bundle'}), import about ${formatBytes(p.disk.import)} (bundle + target)`,
  );
  if (p.split) lines.push(`volumes of ${p.split.volumeBytes.toLocaleString('en-US')} bytes (${formatBytes(p.split.volumeBytes)}): ${p.split.volumes}`);
  if (p.skipped) lines.push(`${p.skipped.length} image${p.skipped.length === 1 ? '' : 's'} left out (--skip-missing), gone upstream:${p.skipped.map((m) => `\n  ${m.image}${m.where ? ` (${m.where})` : ''}: ${m.reason}`).join('')}`);
  return lines.join('\n');
}
