import { lstat } from 'node:fs/promises';
import { basename, dirname, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import { copyImages } from '../copy/engine.js';
import type { CopyObserver } from '../copy/events.js';
import { foreignLayersOf, type ImageRequest, planCopy, withoutBlobs } from '../copy/plan.js';
import { FerryError, isFerryError } from '../errors.js';
import { formatBytes } from '../format.js';
import type { Platform } from '../oci/platform.js';
import { DOCKER_HUB, formatReference, fullName, type Reference } from '../oci/reference.js';
import { BundleDestination, refuseLevelWithoutZstd } from '../transports/bundle/writer.js';
import type { ImageSource, SourceImage } from '../transports/types.js';
import { TOOL_VERSION } from '../version.js';
import { cacheMaxBytes, defaultCacheDir } from './cache-dir.js';
import { BlobStore } from '../store/blob-store.js';
import { leaseBlobs, trimCache, type TrimReport } from '../store/cache-trim.js';
import { failureError } from './failures.js';
import { type ListedImage, readImageList } from './image-list.js';
import { parseReference } from '../oci/reference.js';
import { openSourceAt, parseLocation, SOURCE_KINDS } from './locations.js';
import { parseRegistryName, qualifyName } from './repository-mapping.js';
import { openRegistries } from './resumable-source.js';
import type { RegistryAccess } from './registry-access.js';
import { loadBases } from '../delta/inputs.js';
import { addReferrers } from './referrers.js';
import type { ReferrerGroup } from '../referrers/requests.js';
import type { CopyPlan } from '../copy/plan.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import type { BundleBase } from '../transports/bundle/metadata.js';
import { readRepairReport, type RepairReport } from './repair.js';
import { checkPlatforms } from './platform-check.js';
import { convertPlanToOci, type OciConversion } from '../copy/convert-oci.js';
import { displayUrl, ForeignLayerSource, unusableUrls } from './foreign-source.js';
import { sizeExport } from './plan.js';
import { countingFirstPass, fetchConfigs, layoutRequest } from './bundle-layout.js';
import { checkBundleLimits, checkLowerBounds } from './bundle-limits.js';
import type { PrefixSupply } from './resumable-source.js';
import { prepareDirectory, prepareOutputFile, refuseInputAsOutput, requireSpace, takingBackMadeFolders } from '../fsys/preflight.js';
import { existingSidecar, parseVolumeName, volumeStem } from '../transports/bundle/volumes.js';
import { leaveOutMissing, type SkippedImage, withoutMissingFailures } from './skip-missing.js';

export interface ExportOptions {
  listFile?: string | undefined;
  references?: string[];
  /** `KIND:PATH` to read from a layout, dir tree or bundle instead of registries. */
  from?: string | undefined;
  /** With `from`: record images whose names have no registry as HOST/name (`--registry-name`). */
  registryName?: string | undefined;
  /** `--convert-oci`: store Docker schema 2 images with OCI media types (new manifest digests; copy/convert-oci.ts). */
  convertOci?: boolean | undefined;
  /** `--include-foreign`: carry foreign (non-distributable) layers' bytes, fetched from their URLs when the source lacks them. */
  includeForeign?: boolean | undefined;
  output: string;
  compression: 'none' | 'zstd';
  level?: number | undefined;
  platforms?: Platform[] | undefined;
  /**
   * `--cache DIR`: keep every blob fetched there for later exports (each byte then
   * written twice: bundle and cache). Without it, the cache folder (FERRY_CACHE, else
   * ~/.cache/ferry) is only read: blobs it holds are copied from it, nothing is added.
   */
  cacheDir?: string | undefined;
  /** The cache's size cap in bytes, or 'unlimited'; default: FERRY_CACHE_MAX, else DEFAULT_CACHE_MAX (app/cache-dir.ts). */
  cacheMax?: number | 'unlimited' | undefined;
  jobs: number;
  registry: RegistryAccess;
  /** Delta export: prior bundles, their .ferry.json metadata, or inventories of what the receiver holds (spec/delta.md). */
  since?: string[] | undefined;
  /** Also carry each image's signatures, attestations, SBOMs and OCI referrers (default true; `--no-referrers`). */
  referrers?: boolean | undefined;
  /** Cut the bundle into volumes of at most this many bytes (spec/bundle.md "Volumes"). */
  split?: number | undefined;
  /** A repair report of `ferry verify` (spec/repair.md): the bundle holds only the blobs it lists, as a delta against the damaged bundle. */
  repair?: string | undefined;
  /** Leave out, and report, images whose manifests the registry no longer has (E_NOT_FOUND) instead of failing (app/skip-missing.ts). */
  skipMissing?: boolean | undefined;
  /** Where `-o -` writes the bundle: the invocation's stdout. */
  stdout?: Writable | undefined;
  signal?: AbortSignal;
  observer?: CopyObserver;
}

export interface ExportResult {
  output: string;
  bundleId: string;
  images: number;
  blobs: number;
  storedBytes: number;
  referencedBytes: number;
  /** Bytes that crossed the network this run (the rest came from the cache, or from the work file: resumedBytes). */
  fetchedBytes: number;
  /**
   * Bytes of blobs an interrupted run had partly written that this run read
   * back from the work file instead of fetching them (it fetched only the
   * rest): the progress line counts them as moved, so the summary names them.
   */
  resumedBytes: number;
  seconds: number;
  /** Set for a delta: the bases it names and the blobs it leaves out. */
  delta?: { bases: { bundleId: string; metadataDigest: string }[]; omittedBlobs: number; omittedBytes: number };
  /**
   * Which stored image each carried signature, attestation, SBOM or referrer
   * belongs to (the bundle metadata does not record the link yet), and the
   * referrers that could not be carried (unsupported manifest kinds), with why.
   */
  referrers?: { images: ReferrerGroup[]; skipped: { reference: string; reason: string }[] };
  /** With split: the volume files, in order (their checksums are in STEM.sha256). */
  volumes?: { path: string; layers: number; sha256: string }[];
  /** Set for a repair bundle: the bundle it repairs and how many blobs it carries. */
  repair?: { bundleId: string; blobs: number };
  /** The blob cache after the export trimmed it to its cap (store/cache-trim.ts); absent when the run kept no cache. */
  cache?: ExportCacheReport;
  /** With --skip-missing: the images left out because they are gone upstream, with why. */
  skipped?: SkippedImage[];
  /** With --convert-oci: each image whose manifest was rewritten, source digest → stored digest. */
  converted?: OciConversion[];
  /** Foreign (non-distributable) layers the images reference: carried (--include-foreign) or descriptor only (spec/bundle.md §2.2). */
  foreign?: ForeignReport;
}

export interface ForeignReport {
  carried: boolean;
  layers: { digest: Digest; size: number; mediaType: string; urls: string[]; images: string[] }[];
}

export interface ExportCacheReport extends TrimReport {
  dir: string;
  /** null: no cap. */
  maxBytes: number | null;
  /** The trim failed; the bundle is complete all the same. */
  error?: string;
}

/**
 * Export = copy(images → bundle). Everything is resolved before any layer is
 * fetched, and a bundle is written only when every image made it: a bundle
 * that silently lacks an image is worse than none.
 */
export async function exportBundle(opts: ExportOptions): Promise<ExportResult> {
  // The output's and the cache's folders are made before the first byte, to know they can be written; a run
  // refused after that (a --from or -f that is not there, an image that is missing) takes away those still empty.
  const made = [resolve(opts.cacheDir ?? defaultCacheDir()), ...(opts.output === '-' ? [] : [dirname(resolve(opts.output))])];
  return takingBackMadeFolders(made, () => exportBundleChecked(opts));
}

async function exportBundleChecked(opts: ExportOptions): Promise<ExportResult> {
  const started = Date.now();
  // Flags first: a wrong value should not wait for bases, folders or registries.
  if (opts.from !== undefined) parseLocation(opts.from, '--from', SOURCE_KINDS);
  refuseLevelWithoutZstd(opts);
  if (opts.registryName !== undefined) {
    if (!opts.from) throw new FerryError('E_USAGE', '--registry-name names the registry of images read with --from; images pulled from a registry already carry theirs', { hint: 'drop --registry-name, or add --from KIND:PATH' });
    parseRegistryName(opts.registryName);
  }
  // Bases first: a wrong --since path should fail before any registry is contacted.
  if (opts.repair !== undefined && opts.since?.length) throw new FerryError('E_USAGE', '--repair and --since cannot be combined: a repair bundle is already a delta against the damaged bundle', { hint: 'drop --since' });
  const repair = opts.repair !== undefined ? await readRepairReport(opts.repair) : undefined;
  const since = opts.since && opts.since.length > 0 ? await loadBases(opts.since) : undefined;
  const cacheDir = resolve(opts.cacheDir ?? defaultCacheDir());
  // The cache is written only when asked for (--cache or FERRY_CACHE); otherwise only read, if it is there.
  const cacheWrite = opts.cacheDir !== undefined || Boolean(process.env['FERRY_CACHE']);
  const toStdout = opts.output === '-';
  // Where the run will write, checked before any registry is asked: the folder is made, a probe file written.
  if (toStdout && opts.split !== undefined) throw new FerryError('E_USAGE', '--split writes volume files: it cannot write to stdout', { hint: 'give -o NAME.tar or NAME.tar.zst' });
  if (!toStdout) {
    await refuseOverwritingInputs(opts);
    await prepareOutputFile(opts.output, '-o');
  }
  // A bundle for stdout is laid out in a work file in the cache folder first.
  if (cacheWrite || toStdout) await prepareDirectory(cacheDir, cacheWrite ? 'the blob cache (--cache)' : 'the cache folder (-o - writes its work file there)');
  const maxBytes = opts.cacheMax === 'unlimited' ? undefined : opts.cacheMax ?? cacheMaxBytes(undefined);
  const store = new BlobStore(cacheDir);
  let prefixes: PrefixSupply | undefined;
  const { source, requests, resumedBytes, whereOf } = await resolveSourceAndRequests(opts, () => prefixes);
  try {
    // With --skip-missing an image gone upstream is reported once, as left out, not first as a failure.
    const planObserver = opts.skipMissing && opts.observer ? withoutMissingFailures(opts.observer) : opts.observer;
    let plan = await planCopy(source, requests, { jobs: opts.jobs, ...(opts.platforms ? { platforms: opts.platforms } : {}), ...(opts.signal ? { signal: opts.signal } : {}), ...(planObserver ? { observer: planObserver } : {}) });
    const missing = opts.skipMissing ? leaveOutMissing(plan, requests, (origin) => whereOf.get(origin)) : undefined;
    if (missing) {
      plan = missing.plan;
      for (const m of missing.skipped) opts.observer?.warning?.(`${m.where ? `${m.where}: ` : ''}${m.image} left out (--skip-missing): ${m.reason}`);
    }
    if (plan.failures.length > 0) throw failureError('export', plan.failures.map((f) => ({ image: f.request.origin, error: f.error })), requests.length);
    checkPlatforms(plan, opts.platforms, (m) => opts.observer?.warning?.(m));
    const description = `bundle ${toStdout ? 'stream' : resolve(opts.output)}`;
    // Referrers only add manifests, so a head already too large is refused before a lookup per image
    // (minutes over a WAN at thousands of images). A conversion shortens manifests: no lower bound then.
    if (!opts.convertOci) {
      const omitted = repair ? (): boolean => true : since ? (d: Digest): boolean => since.held.has(d) : (): boolean => false;
      checkLowerBounds(plan, { split: opts.split, omitted, description });
    }
    let referrers: ExportResult['referrers'];
    if (opts.referrers !== false) ({ plan, referrers } = await addReferrers(source, plan, requests, opts));
    let conversions: OciConversion[] = [];
    if (opts.convertOci) ({ plan, conversions } = convertPlanToOci(plan, opts.observer));

    // From here on the run writes the cache: a concurrent export trimming it must keep these.
    const lease = cacheWrite ? await leaseBlobs(store, usedDigests(plan), opts.signal ? { signal: opts.signal } : {}) : undefined;
    try {
      const delta = repair ? repairDelta(repair, opts.repair!, plan) : since ? { bases: since.bases, omitted: new Set(since.held.keys()) } : undefined;
      // Foreign layers: their descriptors travel, their bytes only when asked for (a delta's base may already hold them).
      const foreignLayers = [...foreignLayersOf(plan).entries()].filter(([d]) => !delta?.omitted.has(d));
      if (opts.includeForeign) refuseUnreachableForeign(foreignLayers.map(([, f]) => f), opts.registry);
      const notCarried = new Set<Digest>(opts.includeForeign ? [] : foreignLayers.map(([d]) => d));
      plan = withoutBlobs(plan, notCarried);
      const foreign: ForeignReport | undefined = foreignLayers.length === 0 ? undefined : {
        carried: opts.includeForeign === true,
        layers: foreignLayers.map(([digest, f]) => ({ digest, size: f.descriptor.size, mediaType: f.descriptor.mediaType, urls: (f.descriptor.urls ?? []).map(urlText), images: f.images })),
      };
      // Every limit of the bundle (readers' caps, the cut), from the manifests: before the cache is even looked at.
      const early = checkBundleLimits(plan, { ...(delta ? { delta } : {}), foreign: notCarried, ...(opts.split !== undefined ? { split: opts.split } : {}), description });
      // Disks that cannot hold the result: known now, not after an hour of fetching.
      const sizes = await sizeExport(plan, store, delta?.omitted);
      // The tar is written once where it lies; a .tar.zst is that tar compressed beside it, so both exist for a moment.
      // Volumes each carry the head: their sum, and with zstd the largest compressed beside them at a time.
      const volumeBytes = opts.split === undefined ? 0 : early.files.reduce((n, f) => n + f.layout.size, 0) + (opts.compression === 'zstd' ? early.files.reduce((n, f) => Math.max(n, f.layout.size), 0) : 0);
      const bundleBytes = Math.max(volumeBytes, sizes.disk.bundleBytes * (opts.compression === 'zstd' || toStdout ? 2 : 1));
      await requireSpace([
        ...(cacheWrite ? [{ path: cacheDir, bytes: sizes.disk.cacheBytes, what: 'new cache entries' }] : []),
        toStdout ? { path: cacheDir, bytes: sizes.disk.bundleBytes, what: 'the work file of the bundle' }
          : { path: resolve(opts.output), bytes: bundleBytes, what: opts.split !== undefined ? 'the volumes' : opts.compression === 'zstd' ? 'the bundle (the tar, then its zstd)' : 'the bundle' },
      ]);
      const destination = new BundleDestination({
        output: toStdout ? '-' : resolve(opts.output),
        ...(toStdout ? { stream: stdoutOf(opts), workDir: cacheDir } : {}),
        compression: opts.compression,
        ...(opts.level !== undefined ? { level: opts.level } : {}),
        toolVersion: TOOL_VERSION,
        storeDir: cacheDir,
        cacheWrite,
        ...(opts.split !== undefined ? { split: opts.split } : {}),
        // Omitted blobs are reported present by the destination, so the engine never fetches them.
        ...(delta ? { delta } : {}),
        ...(notCarried.size > 0 ? { foreign: notCarried } : {}),
      });
      const fetchFrom = opts.includeForeign ? new ForeignLayerSource(source, opts.registry) : source;
      const copyOpts = { jobs: opts.jobs, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.observer ? { observer: opts.observer } : {}) };
      try {
        // Names become bundle paths: a bad one should fail now, not after every blob is fetched.
        for (const image of plan.images) destination.bundleRepository({ repository: image.request.targetRepository, origin: image.request.origin });
        // The configs first (small): with the manifests they fix the metadata, so every entry's offset.
        const omitted = (d: Digest): boolean => delta?.omitted.has(d) ?? false;
        const configs = await fetchConfigs(fetchFrom, destination.configSink(), plan, omitted, 'export', copyOpts);
        // Exact now (layOut refuses what readers or a volume set would); checkBundleLimits allowed for what the configs add, so this holds.
        destination.layOut(layoutRequest(plan));
        await destination.open(opts.signal ? { signal: opts.signal } : {});
        prefixes = destination;
        const counted = countingFirstPass(opts.observer, configs.moved);
        const report = await copyImages(fetchFrom, destination, plan, { ...copyOpts, ...(counted ? { observer: counted } : {}) });
        if (report.failures.length > 0) throw failureError('export', report.failures, requests.length);
        await destination.commit(opts.signal ? { signal: opts.signal } : {});
        const meta = destination.metadata!;
        // Only now: a failed export must not cost the cache what a rerun would reuse.
        const cache = cacheWrite ? await trimAfterExport(store, maxBytes, plan, opts.signal) : undefined;
        return {
          output: opts.output, bundleId: meta.bundleId, images: meta.totals.images, blobs: meta.totals.blobs,
          storedBytes: meta.totals.storedBytes, referencedBytes: meta.totals.referencedBytes, fetchedBytes: configs.blobs.bytesCopied + report.blobs.bytesCopied - resumedBytes(), resumedBytes: resumedBytes(),
          seconds: (Date.now() - started) / 1000,
          ...(meta.delta ? { delta: { bases: meta.delta.bases, omittedBlobs: meta.delta.omittedBlobs.length, omittedBytes: meta.delta.omittedBlobs.reduce((n, b) => n + b.size, 0) } } : {}),
          ...(referrers ? { referrers } : {}),
          ...(missing && missing.skipped.length > 0 ? { skipped: missing.skipped } : {}),
          ...(repair ? { repair: { bundleId: repair.bundleId, blobs: meta.blobs.filter((b) => b.kind === 'config' || b.kind === 'layer').length } } : {}),
          ...(destination.volumes ? { volumes: destination.volumes.map((v) => ({ path: v.path, layers: v.layers, sha256: v.sha256 })) } : {}),
          ...(cache ? { cache } : {}),
          ...(conversions.length > 0 ? { converted: conversions } : {}),
          ...(foreign ? { foreign } : {}),
        };
      } catch (e) {
        throw await withKeptWorkFiles(e, destination.keptWorkFiles);
      } finally {
        await destination.close();
        if (fetchFrom !== source) await fetchFrom.close();
      }
    } finally {
      await lease?.release();
    }
  } finally {
    await source.close();
  }
}

/**
 * A disk that filled up during the export: the work file stays beside the output
 * so the rerun continues from it, and it holds much of the space the user must
 * free. The generic advice ("nothing partial was left") would hide it; this names
 * it, what it occupies, and both ways out.
 */
async function withKeptWorkFiles(e: unknown, kept: string[]): Promise<unknown> {
  if (!isFerryError(e, 'E_NO_SPACE') || kept.length === 0) return e;
  const present = (await Promise.all(kept.map(async (path) => ({ path, st: await lstat(path).catch(() => undefined) })))).filter((f) => f.st?.isFile());
  if (present.length === 0) return e;
  // Allocated blocks, not the apparent size: the file is sparse where nothing arrived yet.
  const onDisk = present.reduce((n, f) => n + f.st!.blocks * 512, 0);
  const files = present.map((f) => f.path);
  const data = files.filter((f) => !f.endsWith('.journal'));
  return new FerryError('E_NO_SPACE', `${e.message}\nkept for the rerun to continue from: ${data.join(', ')} (${formatBytes(onDisk)} on disk, with ${data.length > 1 ? 'their journals' : 'its journal'})`, {
    hint: `free space on that file system (df -h shows how much), then run the same export again: it continues from the work file and does not fetch again what is in it; to give its space back instead, delete ${data.map((f) => `${basename(f)}*`).join(' ')} there`,
    details: { ...e.details, workFiles: files, workFileBytesOnDisk: onDisk },
    cause: e,
  });
}

function stdoutOf(opts: ExportOptions): Writable {
  if (!opts.stdout) throw new FerryError('E_INTERNAL', 'export -o - without a stdout stream to write to');
  return opts.stdout;
}

/** Every blob and manifest the plan names: what this run may look up, fetch or read in the cache. */
function usedDigests(plan: CopyPlan): Set<Digest> {
  const out = new Set<Digest>();
  for (const image of plan.images) {
    for (const b of image.blobs) out.add(b.digest);
    for (const m of image.manifests) out.add(m.digest);
  }
  return out;
}

/**
 * Trims the cache to its cap, keeping what this run used. The bundle is
 * already complete, so a trim that fails is reported, not fatal; an interrupt
 * still stops the command.
 */
async function trimAfterExport(store: BlobStore, maxBytes: number | undefined, plan: CopyPlan, signal: AbortSignal | undefined): Promise<ExportCacheReport> {
  const base = { dir: store.root, maxBytes: maxBytes ?? null };
  try {
    return { ...base, ...(await trimCache(store, { maxBytes, keep: usedDigests(plan), ...(signal ? { signal } : {}) })) };
  } catch (e) {
    if (signal?.aborted) throw e;
    return { ...base, bytes: 0, blobs: 0, evictedBlobs: 0, evictedBytes: 0, prunedFiles: 0, prunedBytes: 0, keptInUseBytes: 0, error: (e as Error).message };
  }
}

/**
 * The files an export reads (`--from bundle:` with its set's volumes, `-f`,
 * `--since`, `--repair`) must not be among those it writes: `export --from
 * bundle:b.tar --platform linux/amd64 -o b.tar` replaced the one copy of the
 * full bundle, and `-o b.tar.ferry.json` put a bundle over its sidecar, both
 * with exit 0. With --split, a volume of the input's own set is refused too.
 */
async function refuseOverwritingInputs(opts: ExportOptions): Promise<void> {
  const inputs: string[] = [];
  const from = opts.from !== undefined ? parseLocation(opts.from, '--from', SOURCE_KINDS) : undefined;
  if (from?.kind === 'bundle') {
    inputs.push(from.location);
    if (from.location.endsWith('.sha256')) for (const v of await existingSidecar(from.location)) inputs.push(v.path);
  }
  if (opts.listFile !== undefined) inputs.push(opts.listFile);
  if (opts.repair !== undefined) inputs.push(opts.repair);
  for (const s of opts.since ?? []) inputs.push(s);
  if (inputs.length === 0) return;
  const output = resolve(opts.output);
  if (opts.split === undefined) {
    for (const out of [output, `${output}.ferry.json`]) await refuseInputAsOutput(out, inputs, '-o');
    return;
  }
  const stem = volumeStem(output);
  for (const out of [`${stem}.sha256`, `${stem}.ferry.json`]) await refuseInputAsOutput(out, inputs, '-o');
  for (const input of inputs) {
    const full = resolve(input);
    if (parseVolumeName(full)?.stem === stem) {
      throw new FerryError('E_USAGE', `-o ${opts.output} --split writes volumes named ${basename(stem)}.NNN.tar, and ${input}, which this run reads, is one: writing them would destroy the input`, {
        hint: 'name another file to write; nothing was written', details: { path: output, input: full },
      });
    }
  }
}

/**
 * A repair bundle is a delta whose base is the damaged bundle and whose
 * omitted set is every config and layer except the listed ones: manifests are
 * always stored, so it imports on top of what the good volumes delivered.
 */
function repairDelta(report: RepairReport, where: string, plan: CopyPlan): { bases: BundleBase[]; omitted: ReadonlySet<Digest> } {
  const listed = new Set<Digest>(report.blobs.map((b) => b.digest));
  const planned = new Set<Digest>(plan.images.flatMap((i) => i.blobs.map((b) => b.digest)));
  const strays = report.blobs.filter((b) => !planned.has(b.digest));
  if (strays.length > 0) {
    throw new FerryError('E_NOT_FOUND', `--repair ${where}: ${strays.length} of the ${report.blobs.length} listed blobs are not part of these images (${strays.slice(0, 3).map((b) => b.digest).join(', ')}${strays.length > 3 ? ', …' : ''}): the images now resolve to other content than bundle ${report.bundleId}`, {
      hint: 'export with the same image list (pinned by digest) or --from bundle:ORIGINAL as the damaged bundle; else send a whole new bundle',
      details: { file: where, bundleId: report.bundleId, digests: strays.map((b) => b.digest) },
    });
  }
  return { bases: [{ bundleId: report.bundleId, metadataDigest: report.metadataDigest }], omitted: new Set([...planned].filter((d) => !listed.has(d))) };
}

async function resolveSourceAndRequests(opts: ExportOptions, prefixes: () => PrefixSupply | undefined): Promise<{ source: ImageSource; requests: ImageRequest[]; resumedBytes: () => number; whereOf: Map<string, string> }> {
  const listed: ListedImage[] = [];
  // One at a time: a spread of 150,000 lines would overflow the call stack.
  if (opts.listFile) for (const l of await readImageList(opts.listFile)) listed.push(l);
  (opts.references ?? []).forEach((r, i) => listed.push({ reference: parseReference(r, `argument ${i + 1}`), where: `argument ${i + 1}` }));

  const host = opts.registryName === undefined ? undefined : parseRegistryName(opts.registryName);
  if (opts.from) {
    const source = await openSourceAt(parseLocation(opts.from, '--from', SOURCE_KINDS), { access: opts.registry }, opts.signal);
    try {
      if (!source.listImages) throw new FerryError('E_USAGE', `--from ${opts.from}: this source cannot list its images`);
      const held = await source.listImages(opts.signal ? { signal: opts.signal } : {});
      const requests = held.map((h) => {
        // A name the place recorded without a registry stays without one, unless --registry-name gives it one.
        const name = host === undefined ? h.repository : qualifyName(h.repository, host);
        const r: ImageRequest = {
          sourceRepository: h.repository, sourceReference: h.tag ?? h.digest, targetRepository: name,
          origin: h.origin !== undefined && name === h.repository ? h.origin : `${name}${h.tag ? `:${h.tag}` : `@${h.digest}`}`,
        };
        if (h.tag) r.targetTag = h.tag;
        return r;
      });
      refuseNameClashes(requests, held.map((h) => h.digest), opts.from);
      if (listed.length === 0) {
        if (requests.length === 0) throw new FerryError('E_NOT_FOUND', `--from ${opts.from}: no images found`, { hint: 'check the path and that it holds tagged images' });
        return { source, requests, resumedBytes: () => 0, whereOf: new Map() };
      }
      const { wanted, whereOf } = selectListed(listed, held, requests, host);
      return { source, requests: wanted, resumedBytes: () => 0, whereOf };
    } catch (e) {
      await source.close();
      throw e;
    }
  }

  if (listed.length === 0) throw new FerryError('E_USAGE', 'nothing to export', { hint: 'give an image list with -f images.list, image references as arguments, or --from KIND:PATH' });
  const requests = listed.map(({ reference, platforms }) => {
    const name = fullName(reference);
    const r: ImageRequest = { sourceRepository: name, sourceReference: reference.digest ?? reference.tag!, targetRepository: name, origin: formatReference(reference) };
    if (reference.tag !== undefined) r.targetTag = reference.tag;
    if (platforms) r.platforms = platforms;
    return r;
  });
  // Registry fetches resume from what a killed run wrote into the bundle's work file (continued by this run).
  const registries = openRegistries(opts.registry, prefixes);
  return { source: registries.source, requests, resumedBytes: registries.resumedBytes, whereOf: new Map(listed.map((l) => [formatReference(l.reference), l.where])) };
}

/**
 * With a list, `--from` takes exactly the listed images: `app:1.0` that tag,
 * `app@sha256:…` that manifest (a bare `app` is `app:latest`, as everywhere).
 * A line the place does not hold becomes a request the source answers
 * "not found", so it fails the export like a vanished registry image does
 * (or is left out and reported with --skip-missing): never silently dropped.
 */
function selectListed(listed: readonly ListedImage[], held: readonly SourceImage[], requests: readonly ImageRequest[], host: string | undefined): { wanted: ImageRequest[]; whereOf: Map<string, string> } {
  const wanted: ImageRequest[] = [];
  const whereOf = new Map<string, string>();
  const taken = new Set<string>();
  const take = (r: ImageRequest, where: string): void => {
    const key = `${r.sourceRepository}\n${r.sourceReference}\n${r.targetRepository}\n${r.targetTag ?? ''}`;
    if (taken.has(key)) return;
    taken.add(key);
    wanted.push(r);
    whereOf.set(r.origin, where);
  };
  // The place's images by each name they answer to (as held, and as recorded): a scan per listed line was quadratic.
  const byName = new Map<string, number[]>();
  held.forEach((h, i) => {
    for (const name of new Set([h.repository, requests[i]!.targetRepository])) {
      const list = byName.get(name);
      if (list) list.push(i);
      else byName.set(name, [i]);
    }
  });
  for (const l of listed) {
    const sameName = [...new Set(listedNames(l.reference).flatMap((n) => byName.get(n) ?? []))].sort((a, b) => a - b);
    const pinned = l.reference.digest;
    const found = sameName.filter((i) => (pinned !== undefined ? held[i]!.digest === pinned : held[i]!.tag === l.reference.tag));
    const platforms = l.platforms ? { platforms: l.platforms } : {};
    if (pinned !== undefined && found.length > 0) {
      // One manifest, however many tags the place gives it: recorded under the listed tag, or by digest.
      const i = found.find((j) => l.reference.tag === undefined || held[j]!.tag === l.reference.tag) ?? found[0]!;
      const base = requests[i]!;
      const r: ImageRequest = { sourceRepository: base.sourceRepository, sourceReference: pinned, targetRepository: base.targetRepository, origin: originAt(base.targetRepository, l.reference), ...platforms };
      if (l.reference.tag !== undefined) r.targetTag = l.reference.tag;
      take(r, l.where);
    } else if (found.length > 0) {
      for (const i of found) take({ ...requests[i]!, ...platforms }, l.where);
    } else {
      const repository = sameName.length > 0 ? held[sameName[0]!]!.repository : l.reference.repository;
      const name = host === undefined ? repository : qualifyName(repository, host);
      const r: ImageRequest = { sourceRepository: repository, sourceReference: pinned ?? l.reference.tag!, targetRepository: name, origin: originAt(name, l.reference), ...platforms };
      if (l.reference.tag !== undefined) r.targetTag = l.reference.tag;
      take(r, l.where);
    }
  }
  return { wanted, whereOf };
}

/** A listed image as the place names it (`team/app:1.0`, not `docker.io/team/app:1.0`): what it records and reports. */
function originAt(name: string, ref: Reference): string {
  return `${name}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/**
 * The names a listed reference may match in a place without registries:
 * `python` is parsed as `docker.io/library/python`, and a layout may hold it
 * under any of `docker.io/library/python`, `library/python` or `python`.
 */
function listedNames(ref: Reference): string[] {
  const names = [fullName(ref), ref.repository];
  if (ref.registry === DOCKER_HUB && ref.repository.startsWith('library/')) names.push(ref.repository.slice('library/'.length));
  return names;
}

/** A foreign layer's URL as reported: redacted like any remote text (no user info, no query). */
function urlText(text: string): string {
  try {
    return displayUrl(new URL(text));
  } catch {
    return '(not a URL)';
  }
}

/**
 * Two images a place holds under different names may be recorded under one
 * (`python:1` and `HOST/python:1` with --registry-name HOST): refused before
 * the first byte, listing each, rather than after every blob is fetched.
 */
function refuseNameClashes(requests: ImageRequest[], digests: Digest[], from: string): void {
  const byName = new Map<string, { origin: string; digest: Digest }[]>();
  requests.forEach((r, i) => {
    const key = r.targetTag !== undefined ? `${r.targetRepository}:${r.targetTag}` : `${r.targetRepository}@${digests[i]!}`;
    const list = byName.get(key) ?? [];
    if (!list.some((x) => x.digest === digests[i])) list.push({ origin: `${r.sourceRepository}${r.targetTag !== undefined ? `:${r.targetTag}` : ''}`, digest: digests[i]! });
    byName.set(key, list);
  });
  const clashes = [...byName].filter(([, list]) => list.length > 1);
  if (clashes.length === 0) return;
  throw new FerryError('E_USAGE', `--from ${from}: ${clashes.length} name${clashes.length === 1 ? '' : 's'} would be recorded for more than one image:\n${clashes.map(([name, list]) => `  ${name} ← ${list.map((x) => `${x.origin} (${x.digest})`).join(', ')}`).join('\n')}`, {
    hint: 'drop --registry-name, or export those images separately', details: { clashes: clashes.map(([name, list]) => ({ name, images: list })) },
  });
}

/** --include-foreign: a layer none of whose URLs the user allows (plain http to a host not named) is known before the first byte. */
function refuseUnreachableForeign(layers: { descriptor: Descriptor; images: string[] }[], access: RegistryAccess): void {
  const stuck = layers.map((f) => ({ f, why: unusableUrls(f.descriptor, access) })).filter((x) => x.why !== undefined);
  if (stuck.length === 0) return;
  throw new FerryError('E_USAGE', `--include-foreign: ${stuck.length} foreign layer${stuck.length === 1 ? '' : 's'} cannot be fetched under the rules given:\n${stuck.map(({ f, why }) => `  ${f.descriptor.digest} (${f.images.join(', ')}): ${why}`).join('\n')}`, {
    hint: 'name the hosts of http:// URLs with --plain-http HOST if you accept unencrypted transfer (the bytes are still verified), or export without --include-foreign',
    details: { layers: stuck.map(({ f, why }) => ({ digest: f.descriptor.digest, images: f.images, why })) },
  });
}
