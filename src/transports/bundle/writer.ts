import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { type FileHandle, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { addAbortSignal, PassThrough, pipeline as pipelineCb, Readable, Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asFerryError, FerryError } from '../../errors.js';
import { tempPathFor, writeFileAtomic } from '../../fsys/atomic.js';
import { syncDir } from '../../fsys/durable.js';
import { FILE_MODE, naming } from '../../fsys/files.js';
import { sweepStaleTemps } from '../../fsys/stale-temps.js';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import { validateQualifiedName } from '../../oci/reference.js';
import type { Descriptor, Manifest } from '../../oci/manifest.js';
import { BLOB_IO_CHUNK, BlobStore, type PartialPrefix } from '../../store/blob-store.js';
import { drain } from '../../stream/drain.js';
import { VerifyStream } from '../../stream/verify.js';
import { compressStream } from '../../stream/zstd.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import {
  type ArchiveEntry, type BundlePlan, checkMetadataLimits, type ConfigInfo, configsToRead, isImageConfig, type LaidBlob, type LayoutRequest, metadataOf,
  mtimeOf, OCI_LAYOUT, planBundle, readConfigInfo, tarHeader, walkImages, withPartDigests,
} from './layout.js';
import { type BundleBase, type BundleMetadata, type FormatVersion, imageRefName, serialiseMetadata } from './metadata.js';
import { BLOCK, padding } from './tar.js';
import { existingSidecar, parseVolumeName, type VolumeFile, volumeName, volumeStem } from './volumes.js';
import { type Candidate, findCandidates, type Progress, removeWorkFile, sweepResumeFiles, WorkFile } from './work-file.js';

export { ociIndex } from './layout.js';

/** A zstd level asks for compression: on a plain tar it would be ignored, silently. Checked before any work. */
export function refuseLevelWithoutZstd(opts: { output: string; compression?: 'none' | 'zstd' | undefined; level?: number | undefined }): void {
  if (opts.level === undefined || opts.compression === 'zstd') return;
  throw new FerryError('E_USAGE', `--level ${opts.level}: the bundle is not compressed (${opts.output === '-' ? 'stdout' : opts.output} is a plain tar)`, { hint: 'name the output B.tar.zst (or add --compression zstd), or drop --level' });
}

export interface BundleWriterOptions {
  /** The bundle file; `-` with `stream` set writes there instead. */
  output: string;
  /** Write the archive here (e.g. stdout) instead of to `output`; no sidecar metadata is written then. */
  stream?: Writable;
  compression?: 'none' | 'zstd';
  level?: number;
  /** Bundle time when SOURCE_DATE_EPOCH is not set (see spec/bundle.md "created"). */
  created?: Date;
  toolVersion: string;
  /**
   * A blob cache (a BlobStore root). Blobs it holds are copied from it instead of
   * fetched (each hashed on the way); with `cacheWrite` every blob fetched is also
   * kept there for later exports (each byte written twice). A writer driven without
   * `layOut` (blobs before the layout is known) spools every blob here: required then.
   */
  storeDir?: string;
  /** Keep fetched blobs (and manifests) in the cache at `storeDir`. */
  cacheWrite?: boolean;
  /** Where the work file of a bundle written to `stream` lives (default: `storeDir`, else the output's folder). */
  workDir?: string;
  /** Delta export: blobs the receiver already has from these bases are left out. */
  delta?: { bases: BundleBase[]; omitted: ReadonlySet<Digest> };
  /** Foreign (non-distributable) layers whose bytes are not carried: listed as the metadata's `foreignBlobs` (spec/bundle.md §2.2). */
  foreign?: ReadonlySet<Digest>;
  concurrentBlobs?: number;
  /** Cut the bundle into volumes of at most this many (uncompressed tar) bytes: spec/bundle.md "Volumes". */
  split?: number;
  /** Default: the version this ferry writes; 1 writes what earlier ferry wrote (tests of old bundles). */
  formatVersion?: FormatVersion;
}

/** One stretch of a blob's bytes in one file: the whole blob, or a part of a cut layer (manifests and configs once per volume). */
interface Segment {
  file: number;
  entry: ArchiveEntry;
  /** Where this stretch starts in the blob. */
  from: number;
  size: number;
}

interface Placement {
  blob: LaidBlob;
  /** Each copy of the blob in order of its bytes; a head blob of a split bundle has one whole copy per volume. */
  copies: Segment[][];
}

/** Positioned writes are gathered up to this size: one syscall per MiB, not per network chunk. */
const WRITE_CHUNK = 1 << 20;
/** How often the journal catches up with what was written (a killed run loses at most this much of its work). */
const CHECKPOINT_MS = 1000;

/**
 * The ferry bundle as an ImageDestination, written once per byte. The layout
 * is planned first (layout.ts): from the manifests and the image configs —
 * fetched first into a small spool through the engine (`configSink`) — every
 * entry's name, size and offset is known, so `open` creates each file at its
 * full size and the engine's putBlob writes each blob at its place as it
 * arrives, concurrently, verified in flight by the engine's verifier. commit()
 * writes the head (ferry.json, index.json…), fsyncs and renames. A killed export
 * continues into the same file (work-file.ts).
 *
 * zstd cannot be written at offsets: a `.tar.zst` is the plain work file
 * compressed in a second pass (each byte written twice: the tar, then its zstd).
 * The same for `stream` (stdout): the work file is streamed out and removed.
 *
 * Driven without `layOut` (blobs before the layout is known), the writer spools
 * every blob in its store and lays the file out at commit (each byte written twice).
 */
export class BundleDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  readonly store: BlobStore | undefined;
  private committed: BundleMetadata | undefined;
  private committedVolumes: VolumeFile[] | undefined;

  // Spool mode (no layOut): what the engine handed over, laid out at commit.
  private readonly manifests = new Map<Digest, Manifest>();
  private readonly images = new Map<string, ImageRecord & { repository: string }>();
  private readonly writtenThisRun = new Set<Digest>();
  private readonly checkedCache = new Set<Digest>();
  private storeReady: Promise<void> | undefined;

  // Laid-out mode.
  private stage: ConfigStage | undefined;
  private candidatesFound: Promise<Candidate[]> | undefined;
  private plan: BundlePlan | undefined;
  private request: LayoutRequest | undefined;
  private imageKeys = new Set<string>();
  private files: WorkFile[] = [];
  private readonly places = new Map<Digest, Placement>();
  /** Blobs whose every copy is in the files (this run, or journaled by the run it continues). */
  private readonly done = new Set<Digest>();
  /** Cut layers: each part's digest, hashed as the bytes went by. */
  private readonly partDigests = new Map<Digest, Digest[]>();
  /** From the run this one continues: how many first bytes of a blob it had written. */
  private readonly prefixes = new Map<Digest, number>();
  /** Blobs arriving now: how many of their first bytes are written (journaled as progress); 0 resets a bad prefix. */
  private readonly progress = new Map<Digest, number>();
  /** Blobs arriving now: writes out what each has received (a checkpoint does, before it journals). */
  private readonly flushers = new Map<Digest, () => Promise<void>>();
  /** Each image with the blobs it needs, for messages. */
  private users: { name: string; blobs: ReadonlySet<Digest> }[] = [];
  private timer: NodeJS.Timeout | undefined;
  private spooled = false;

  constructor(private readonly opts: BundleWriterOptions) {
    this.description = `bundle ${opts.stream ? 'stream' : opts.output}`;
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 8, globalBlobs: true };
    this.store = opts.storeDir === undefined ? undefined : new BlobStore(opts.storeDir);
  }

  /** The metadata written by commit(). */
  get metadata(): BundleMetadata | undefined {
    return this.committed;
  }

  /** With `split`: the volume files commit() wrote, in index order. */
  get volumes(): VolumeFile[] | undefined {
    return this.committedVolumes;
  }

  /**
   * The work files a failed or interrupted run leaves for the next one to continue
   * (with their journals): none once committed, none in spool mode (its files go at close).
   */
  get keptWorkFiles(): string[] {
    if (this.committed || this.spooled) return [];
    return this.files.flatMap((f) => [f.path, f.journalPath]);
  }

  /** The layout, once laid out. */
  get layout(): BundlePlan | undefined {
    return this.plan;
  }

  private isOmitted(d: Digest): boolean {
    return this.opts.delta?.omitted.has(d) ?? false;
  }

  private isForeign(d: Digest): boolean {
    return !this.isOmitted(d) && (this.opts.foreign?.has(d) ?? false);
  }

  private get workDir(): string {
    if (this.opts.stream) return resolve(this.opts.workDir ?? this.opts.storeDir ?? '.');
    return dirname(resolve(this.opts.output));
  }

  /** The final names of the files, in volume order (before the layout: the unsplit name, or the first volume's stem). */
  private finalPath(index: number, count: number): string {
    if (this.opts.stream) return join(this.workDir, 'stdout.tar');
    if (this.opts.split === undefined) return resolve(this.opts.output);
    return volumeName(volumeStem(resolve(this.opts.output)), index, count, this.opts.compression === 'zstd');
  }

  private candidates(): Promise<Candidate[]> {
    this.candidatesFound ??= (async () => {
      const dir = this.workDir;
      if (this.opts.stream) return findCandidates(dir, 'stdout.tar');
      if (this.opts.split === undefined) return findCandidates(dir, basename(resolve(this.opts.output)));
      // Any volume of an earlier attempt: its count is the layout's, known only later.
      const stem = basename(volumeStem(resolve(this.opts.output)));
      const { readdir } = await import('node:fs/promises');
      const names = new Set<string>();
      for (const n of await readdir(dir).catch(() => [] as string[])) {
        const m = /^\.ferry-resume-(.+\.\d{3,}\.tar(?:\.zst)?)\.\d+-[0-9a-f]{8}\.[0-9a-f]{8}$/.exec(n);
        if (m && m[1]!.startsWith(`${stem}.`)) names.add(m[1]!);
      }
      return (await Promise.all([...names].map((n) => findCandidates(dir, n)))).flat();
    })();
    return this.candidatesFound;
  }

  // ------------------------------------------------------------ the configs, first

  /**
   * The destination of the first pass: the images' stored configs, which the
   * metadata (platforms, bundle time) and so the layout depend on. Configs an
   * interrupted run already wrote, or the cache holds, are taken from there
   * (hashed on the way); the rest comes through the engine.
   */
  configSink(): ImageDestination {
    this.stage ??= new ConfigStage(this.description, tempPathFor(join(this.workDir, `${basename(this.finalPath(0, 1))}.configs`)), () => this.candidates(), this.store, this.opts.cacheWrite === true);
    return this.stage;
  }

  // ------------------------------------------------------------ layout

  /**
   * Plans every file of the bundle from the images and their manifests: the
   * metadata, the stored order, each entry's offset. Nothing is written; a bundle
   * readers would refuse (metadata over its limits) fails here, before any layer.
   */
  layOut(request: LayoutRequest, configInfos?: ReadonlyMap<Digest, ConfigInfo>): BundlePlan {
    if (this.plan) throw new FerryError('E_INTERNAL', `${this.description}: laid out twice`);
    const content = walkImages(request, { isOmitted: (d) => this.isOmitted(d), isForeign: (d) => this.isForeign(d), description: this.description });
    const infos = configInfos ?? this.stage?.infos;
    const meta = metadataOf(content, (d) => infos?.get(d), {
      toolVersion: this.opts.toolVersion, ...(this.opts.created ? { created: this.opts.created } : {}), ...(this.opts.delta ? { delta: { bases: this.opts.delta.bases } } : {}),
      ...(this.opts.formatVersion ? { formatVersion: this.opts.formatVersion } : {}),
    });
    const plan = planBundle(meta, content.stored, this.opts.split === undefined ? undefined : { maxBytes: this.opts.split, description: this.description });
    checkMetadataLimits(plan, this.description);
    this.plan = plan;
    this.request = request;
    this.users = content.images.map((i) => ({ name: i.record.origin ?? i.name, blobs: i.blobs }));
    for (const img of request.images) this.imageKeys.add(imageKey(img.repository, img.tag, img.manifest.digest));
    for (const b of plan.stored) this.places.set(b.digest, { blob: b, copies: [] });
    for (const f of plan.files) {
      for (const entry of f.layout.entries) {
        if (!entry.blob) continue;
        const place = this.places.get(entry.blob.digest)!;
        const seg: Segment = { file: f.index, entry, from: entry.part?.offset ?? 0, size: entry.size };
        if (entry.part && place.copies.length > 0) place.copies[0]!.push(seg);
        else place.copies.push([seg]);
      }
    }
    for (const [d, sizes] of plan.cuts) this.partDigests.set(d, new Array<Digest>(sizes.length));
    return plan;
  }

  /** An identity of the layout: a work file is continued only by a run that lays out the same bytes. */
  private layoutId(): string {
    const plan = this.plan!;
    return sha256Digest(JSON.stringify(plan.files.map((f) => [f.layout.size, sha256Digest(serialiseMetadata(f.meta))]))).slice(7);
  }

  /**
   * Creates the files (or continues an interrupted run's, when it laid out the
   * same bytes) and writes what is already known: every manifest and config.
   */
  async open(opts: OpOptions = {}): Promise<void> {
    const plan = this.plan;
    if (!plan || this.files.length > 0) throw new FerryError('E_INTERNAL', `${this.description}: open() needs one layOut() first`);
    const dir = this.workDir;
    const count = plan.files.length;
    try {
      // A killed export leaves temps and work files beside the output: the next run removes what no run will continue.
      await sweepStaleTemps(dir);
      await sweepResumeFiles(dir);
      const id = this.layoutId();
      const candidates = await this.candidates();
      for (const f of plan.files) {
        const finalPath = this.finalPath(f.index, count);
        const mine = candidates.find((c) => c.state.layoutId === id && c.state.fileIndex === f.index && c.state.fileSize === f.layout.size);
        const adopted = mine ? await WorkFile.adopt(mine, dir, finalPath, basename(finalPath)) : undefined;
        this.files.push(adopted ?? await WorkFile.create(dir, finalPath, basename(finalPath), f.layout.size, id, f.index));
      }
      // Files of other layouts (the images changed since) will never be continued; adopted ones are gone from these paths.
      for (const c of candidates) await removeWorkFile(c.path);
      this.resume();
      for (const [digest, place] of this.places) {
        opts.signal?.throwIfAborted();
        if (this.done.has(digest)) continue;
        if (place.blob.kind === 'index' || place.blob.kind === 'manifest') {
          const m = this.request!.manifests.get(digest) ?? this.request!.images.find((i) => i.manifest.digest === digest)?.manifest;
          if (!m) throw new FerryError('E_INTERNAL', `${this.description}: manifest ${digest} is laid out but not given`);
          await this.writeWhole(place, m.bytes);
        } else if (place.blob.kind === 'config' && this.stage) {
          await this.writeWhole(place, await this.stage.bytes(place.blob));
        }
      }
      await this.stage?.discard();
      this.timer = setInterval(() => void this.checkpoint().catch(() => undefined), CHECKPOINT_MS);
      this.timer.unref();
    } catch (e) {
      throw naming(e, dir);
    }
  }

  /** What the journals of continued files say: blobs already whole, prefixes of blobs that were arriving. */
  private resume(): void {
    const byFile = this.files.map((f) => f.resumed);
    for (const [digest, place] of this.places) {
      const hex = digest.slice(7);
      const whole = place.copies.every((segs) => segs.every((s) => {
        const e = byFile[s.file]?.done.get(s.entry.offset + BLOCK);
        return e !== undefined && e.hex === hex && e.size === s.size && (s.entry.part === undefined || e.partHex !== undefined);
      }));
      if (whole && place.copies.length > 0) {
        this.done.add(digest);
        const parts = this.partDigests.get(digest);
        if (parts) for (const s of place.copies[0]!) parts[s.entry.part!.index] = `sha256:${byFile[s.file]!.done.get(s.entry.offset + BLOCK)!.partHex!}` as Digest;
        continue;
      }
      const only = place.copies.length === 1 && place.copies[0]!.length === 1 ? place.copies[0]![0]! : undefined;
      const p = only ? byFile[only.file]?.progress.get(only.entry.offset + BLOCK) : undefined;
      if (p && p.hex === hex && p.bytes > 0 && p.bytes <= place.blob.size) this.prefixes.set(digest, p.bytes);
    }
  }

  /** A blob held in memory (a manifest, a config) into every copy of it. */
  private async writeWhole(place: Placement, bytes: Buffer): Promise<void> {
    for (const segs of place.copies) {
      for (const s of segs) {
        const w = this.files[s.file]!;
        await w.write(Buffer.concat([tarHeader(s.entry.name, 'file', s.size, mtimeOf(this.plan!.meta)), bytes.subarray(s.from, s.from + s.size), Buffer.alloc(padding(s.size))]), s.entry.offset);
        w.noteDone({ offset: s.entry.offset + BLOCK, hex: place.blob.digest.slice(7), size: s.size });
      }
    }
    this.done.add(place.blob.digest);
  }

  /** Journals what is written now (see WorkFile.checkpoint). */
  private async checkpoint(): Promise<void> {
    await Promise.all([...this.flushers.values()].map((f) => f().catch(() => undefined)));
    await Promise.all(this.files.map((f, i) => f.checkpoint([...this.progressIn(i)])));
  }

  private *progressIn(file: number): Iterable<Progress> {
    for (const [digest, written] of this.progress) {
      const place = this.places.get(digest);
      // Only blobs in one piece resume part-way; a layer cut over volumes starts over.
      const only = place?.copies.length === 1 && place.copies[0]!.length === 1 ? place.copies[0]![0]! : undefined;
      if (only?.file === file) yield { offset: only.entry.offset + BLOCK, hex: digest.slice(7), bytes: written };
    }
  }

  /**
   * The first bytes of a blob an interrupted run had written (a ResumingSource
   * replays them and asks the registry for the rest); the engine's verifier
   * hashes them with the rest, so nothing is trusted because it is on our disk.
   */
  async openPrefix(digest: Digest): Promise<PartialPrefix | undefined> {
    const bytes = this.prefixes.get(digest);
    const place = this.places.get(digest);
    if (bytes === undefined || !place || this.done.has(digest)) return undefined;
    const s = place.copies[0]![0]!;
    const w = this.files[s.file]!;
    const start = s.entry.offset + BLOCK;
    return { size: bytes, read: (length) => w.readStream(start, start + length), close: async () => undefined };
  }

  // ------------------------------------------------------------ ImageDestination

  private ready(): Promise<void> {
    this.storeReady ??= this.store ? this.store.init() : Promise.resolve();
    return this.storeReady;
  }

  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    if (this.isOmitted(desc.digest) || this.isForeign(desc.digest) || this.writtenThisRun.has(desc.digest)) return true;
    if (!this.plan) return this.spoolHas(desc);
    const place = this.places.get(desc.digest);
    if (!place) throw new FerryError('E_INTERNAL', `${this.description}: blob ${desc.digest} is not laid out`, { details: { digest: desc.digest } });
    if (this.done.has(desc.digest)) return true;
    // A cached copy goes into place instead of a fetch: read and hashed (a cache outlives the run that filled it).
    if (!this.store || !(await this.store.has(desc))) return false;
    try {
      const src = await this.store.createReadStream(desc.digest);
      await this.writeStream(place, pipelineCb(src, new VerifyStream(desc, `${this.description}: cache ${this.store.root}`), () => undefined), {}, false);
      if (this.opts.cacheWrite) await this.store.touch(desc.digest);
      return true;
    } catch (e) {
      if (asFerryError(e).code === 'E_ABORTED') throw e;
      this.progress.set(desc.digest, 0);
      // A damaged entry: fetched instead (and replaced, when this run keeps the cache).
      if (this.opts.cacheWrite) await rm(this.store.path(desc.digest), { force: true });
      return false;
    }
  }

  private async spoolHas(desc: Descriptor): Promise<boolean> {
    if (this.checkedCache.has(desc.digest)) return true;
    const store = this.spool();
    await this.ready();
    // A cache entry from an earlier run is hashed now; a bad one is removed so the engine fetches it again.
    const ok = await store.verify(desc);
    if (ok) this.checkedCache.add(desc.digest);
    return ok;
  }

  private spool(): BlobStore {
    if (!this.store) throw new FerryError('E_INTERNAL', `${this.description}: blobs arrive before the layout and no spool directory was given`);
    return this.store;
  }

  async putBlob(_repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    if (this.isOmitted(desc.digest) || (this.plan && this.isForeign(desc.digest))) {
      // The receiver has it from a base bundle; still read it to the end so the engine's verification completes.
      await drain(data, { signal: opts.signal });
      return;
    }
    if (!this.plan) {
      await this.ready();
      await this.spool().put(desc, data, opts.signal ? { signal: opts.signal } : {});
      this.writtenThisRun.add(desc.digest);
      return;
    }
    const place = this.places.get(desc.digest);
    if (!place) throw new FerryError('E_INTERNAL', `${this.description}: blob ${desc.digest} is not laid out`, { details: { digest: desc.digest } });
    try {
      await this.writeStream(place, data, opts, this.opts.cacheWrite === true && this.store !== undefined);
    } catch (e) {
      // Wrong bytes (as opposed to too few) must not be continued from, by a retry or a later run.
      if (isBadContent(e)) {
        this.prefixes.delete(desc.digest);
        this.progress.set(desc.digest, 0);
      }
      throw naming(e, this.opts.output);
    }
  }

  /**
   * Streams a blob into every copy of it, each byte at its offset, headers and
   * padding around it; cut layers' parts are hashed on the way (their digests
   * go into every volume's metadata). Optionally into the cache as well.
   */
  private async writeStream(place: Placement, data: Readable, opts: OpOptions, toCache: boolean): Promise<void> {
    const { blob } = place;
    const mtime = mtimeOf(this.plan!.meta);
    this.progress.set(blob.digest, 0);
    let cache: { stream: PassThrough; done: Promise<void> } | undefined;
    if (toCache) {
      await this.ready();
      const stream = new PassThrough({ highWaterMark: BLOB_IO_CHUNK });
      // The blob's failure is passed on with destroy(e): the cache's put sees it through its pipeline, and may not be listening yet.
      stream.on('error', () => undefined);
      cache = { stream, done: this.store!.put(blob, stream, opts.signal ? { signal: opts.signal } : {}) };
      cache.done.catch(() => undefined);
    }
    const segs = place.copies[0]!;
    const hashes: (Hash | undefined)[] = segs.map((s) => (s.entry.part ? createHash('sha256') : undefined));
    const out = new PositionedWriter(this.files, segs, hashes, (n) => {
      if (this.progress.has(blob.digest)) this.progress.set(blob.digest, n);
    });
    // A checkpoint writes out what arrived so far first: a stalled blob's progress is all it received.
    this.flushers.set(blob.digest, () => out.flush());
    // An interrupt ends a blob that is waiting for bytes, not only one that is receiving them.
    if (opts.signal) addAbortSignal(opts.signal, data);
    try {
      for (const s of segs) await this.files[s.file]!.write(tarHeader(s.entry.name, 'file', s.size, mtime), s.entry.offset);
      for await (const chunk of data as AsyncIterable<Buffer>) {
        opts.signal?.throwIfAborted();
        if (cache && !cache.stream.write(chunk)) await waitDrain(cache.stream, cache.done);
        if (!out.push(chunk)) throw new FerryError('E_SIZE_MISMATCH', `${this.description}: blob ${blob.digest} is longer than its ${blob.size} bytes`, { details: { digest: blob.digest, expectedSize: blob.size, seen: blob.size + 1 } });
        if (out.pendingBytes >= WRITE_CHUNK) await out.flush();
      }
      await out.flush();
      if (out.written !== blob.size) {
        throw new FerryError('E_SIZE_MISMATCH', `${this.description}: blob ${blob.digest} has ${out.written} bytes, expected ${blob.size}`, { details: { digest: blob.digest, expectedSize: blob.size, seen: out.written } });
      }
      if (cache) {
        cache.stream.end();
        await cache.done;
      }
    } catch (e) {
      data.destroy();
      cache?.stream.destroy(e as Error);
      await cache?.done.catch(() => undefined);
      // What did arrive is in place: a later run may continue from it (unless the caller finds the bytes wrong).
      await out.flush().catch(() => undefined);
      throw e;
    } finally {
      this.flushers.delete(blob.digest);
    }
    // The same bytes into the other copies (a head blob of a split bundle): from the first, already written.
    const first = segs[0]!;
    for (const other of place.copies.slice(1)) {
      for (const s of other) {
        const bytes = await this.files[first.file]!.read(first.entry.offset + BLOCK + s.from, s.size);
        await this.files[s.file]!.write(Buffer.concat([tarHeader(s.entry.name, 'file', s.size, mtime), bytes]), s.entry.offset);
      }
    }
    const parts = this.partDigests.get(blob.digest);
    segs.forEach((s, i) => {
      const partHex = hashes[i]?.digest('hex');
      if (parts && partHex) parts[s.entry.part!.index] = `sha256:${partHex}` as Digest;
    });
    for (const [k, copy] of place.copies.entries()) {
      for (const [i, s] of copy.entries()) {
        const w = this.files[s.file]!;
        if (padding(s.size) > 0) await w.write(Buffer.alloc(padding(s.size)), s.entry.offset + BLOCK + s.size);
        w.noteDone({ offset: s.entry.offset + BLOCK, hex: blob.digest.slice(7), size: s.size, ...(k === 0 && hashes[i] ? { partHex: parts![s.entry.part!.index]!.slice(7) } : {}) });
      }
    }
    this.done.add(blob.digest);
    this.prefixes.delete(blob.digest);
    this.progress.delete(blob.digest);
  }

  // A Manifest is built from its bytes (oci/manifest.ts manifestFromBytes/manifestWithDigest): its digest is not re-hashed here.
  async putManifest(_repository: string, manifest: Manifest): Promise<void> {
    if (this.plan) {
      // Laid out and written at open(): this one must be the same.
      if (!this.done.has(manifest.digest)) throw new FerryError('E_INTERNAL', `${this.description}: manifest ${manifest.digest} was not laid out`, { details: { digest: manifest.digest } });
      if (this.opts.cacheWrite && this.store) {
        await this.ready();
        await this.store.putBytes(manifest.digest, manifest.bytes);
      }
      return;
    }
    await this.ready();
    this.manifests.set(manifest.digest, manifest);
    await this.spool().putBytes(manifest.digest, manifest.bytes);
  }

  async putImage(image: ImageRecord): Promise<void> {
    const repository = this.bundleRepository(image);
    if (this.plan) {
      if (!this.imageKeys.has(imageKey(repository, image.tag, image.manifest.digest))) {
        throw new FerryError('E_INTERNAL', `${this.description}: ${imageRefName({ repository, tag: image.tag, digest: image.manifest.digest })} was not laid out`);
      }
      return;
    }
    const key = image.tag !== undefined ? `${repository}:${image.tag}` : `${repository}@${image.manifest.digest}`;
    const prev = this.images.get(key);
    if (prev && prev.manifest.digest !== image.manifest.digest) {
      throw new FerryError('E_USAGE', `${this.description}: ${key} was given twice, as ${prev.manifest.digest} and ${image.manifest.digest}`, {
        hint: 'a bundle holds one image per repository:tag; list each tag once', details: { image: key },
      });
    }
    this.images.set(key, { ...image, repository });
  }

  /**
   * The name the bundle records, as given: registry-qualified for images
   * pulled from a registry, bare for images from a place without one (no
   * registry is guessed: `team/app` from a layout is not `docker.io/team/app`).
   * Public so an export can refuse a bad name before it fetches anything.
   */
  bundleRepository(image: Pick<ImageRecord, 'repository' | 'origin'>): string {
    return validateQualifiedName(image.repository, `${this.description}: image ${image.origin ?? image.repository}`);
  }

  // ------------------------------------------------------------ commit

  async commit(opts: OpOptions = {}): Promise<void> {
    try {
      if (!this.plan) {
        this.spooled = true;
        await this.layOutSpooled(opts);
      }
      const plan = this.plan!;
      const missing = plan.stored.filter((b) => !this.done.has(b.digest));
      if (missing.length > 0) {
        const b = missing[0]!;
        const images = this.users.filter((u) => u.blobs.has(b.digest)).map((u) => u.name);
        throw new FerryError('E_BLOB_MISSING', `${this.description}: blob ${b.digest} (${b.kind}) was never written${missing.length > 1 ? ` (and ${missing.length - 1} more)` : ''}`, {
          hint: 'the copy did not complete; run the export again', details: { digest: b.digest, images },
        });
      }
      await this.hashResumedParts(opts);
      this.stopCheckpoints();
      const whole = withPartDigests(plan.meta, this.partDigests);
      const mtime = mtimeOf(plan.meta);
      for (const f of plan.files) {
        opts.signal?.throwIfAborted();
        const metaBytes = serialiseMetadata(withPartDigests(f.meta, this.partDigests));
        if (metaBytes.length !== f.metaBytes) throw new FerryError('E_INTERNAL', `${this.description}: ferry.json of file ${f.index} is ${metaBytes.length} bytes, laid out as ${f.metaBytes}`);
        const head = Buffer.concat([
          tarHeader('ferry.json', 'file', metaBytes.length, mtime), metaBytes, Buffer.alloc(padding(metaBytes.length)),
          tarHeader('oci-layout', 'file', OCI_LAYOUT.length, mtime), OCI_LAYOUT, Buffer.alloc(padding(OCI_LAYOUT.length)),
          tarHeader('index.json', 'file', plan.indexJson.length, mtime), plan.indexJson, Buffer.alloc(padding(plan.indexJson.length)),
          tarHeader('blobs/', 'directory', 0, mtime), tarHeader('blobs/sha256/', 'directory', 0, mtime),
        ]);
        const laidOut = f.layout.entries[4]!.offset + BLOCK;
        if (head.length !== laidOut) throw new FerryError('E_INTERNAL', `${this.description}: head of file ${f.index} is ${head.length} bytes, laid out as ${laidOut}`);
        const w = this.files[f.index]!;
        await w.write(head, 0);
        await w.write(Buffer.alloc(2 * BLOCK), f.layout.size - 2 * BLOCK);
        await w.sync();
      }
      this.committedVolumes = await this.deliver(opts);
      const wholeBytes = serialiseMetadata(whole);
      if (!this.opts.stream && this.opts.split === undefined) await writeFileAtomic(`${resolve(this.opts.output)}.ferry.json`, wholeBytes);
      if (this.committedVolumes) {
        const stem = volumeStem(resolve(this.opts.output));
        const before = (await existingSidecar(`${stem}.sha256`)).map((e) => basename(e.path));
        await writeFileAtomic(`${stem}.ferry.json`, wholeBytes);
        // Last, so a sidecar exists only for a complete set.
        await writeFileAtomic(`${stem}.sha256`, this.committedVolumes.map((v) => `${v.sha256}  ${basename(v.path)}\n`).join(''));
        await removeReplacedVolumes(stem, before, this.committedVolumes.map((v) => basename(v.path)));
      }
      this.committed = whole;
    } catch (e) {
      if (this.spooled) await this.discardFiles();
      throw e;
    }
  }

  /**
   * A cut layer this run did not write (the run it continues did) has no part
   * digests in memory: its parts are read back and hashed, the whole layer
   * checked against its digest.
   */
  private async hashResumedParts(opts: OpOptions): Promise<void> {
    for (const [digest, parts] of this.partDigests) {
      if (parts.every((p) => p !== undefined) && parts.length > 0) continue;
      const place = this.places.get(digest)!;
      const whole = createHash('sha256');
      const out: Digest[] = [];
      for (const s of place.copies[0]!) {
        opts.signal?.throwIfAborted();
        const h = createHash('sha256');
        const start = s.entry.offset + BLOCK;
        for await (const c of this.files[s.file]!.readStream(start, start + s.size) as AsyncIterable<Buffer>) {
          h.update(c);
          whole.update(c);
        }
        out.push(`sha256:${h.digest('hex')}` as Digest);
      }
      if (`sha256:${whole.digest('hex')}` !== digest) {
        throw new FerryError('E_DIGEST_MISMATCH', `${this.description}: layer ${digest}, written by the interrupted run this one continues, no longer hashes to its digest`, {
          hint: 'the work file was altered; run the export again (it writes the layer anew)', details: { digest },
        });
      }
      this.partDigests.set(digest, out);
    }
  }

  /** The finished files to where they belong: renamed, compressed, or streamed. */
  private async deliver(opts: OpOptions): Promise<VolumeFile[] | undefined> {
    const plan = this.plan!;
    const signalOpt = opts.signal ? { signal: opts.signal } : {};
    const zstd = this.opts.compression === 'zstd';
    const compress = (): Transform[] => (zstd ? [compressStream(this.opts.level === undefined ? {} : { level: this.opts.level })] : []);
    if (this.opts.stream) {
      const w = this.files[0]!;
      // The caller owns the stream (stdout: other output, the summary, may follow): it is not ended here.
      await (pipeline as (...s: unknown[]) => Promise<void>)(w.readStream(0, w.size), ...compress(), this.opts.stream, { ...signalOpt, end: false });
      await this.discardFiles();
      return undefined;
    }
    const out: VolumeFile[] = [];
    const dirs = new Set<string>();
    for (const f of plan.files) {
      const w = this.files[f.index]!;
      const hash = createHash('sha256');
      if (!zstd) {
        // The sidecar's checksum of a volume: read back (a read, not a second write).
        if (this.opts.split !== undefined) for await (const c of w.readStream(0, w.size) as AsyncIterable<Buffer>) hash.update(c);
        await w.publish();
      } else {
        const tmp = tempPathFor(w.finalPath);
        try {
          const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
          try {
            await fh.chmod(FILE_MODE);
            const tap = new Transform({ transform(chunk: Buffer, _e, cb) { hash.update(chunk); cb(null, chunk); } });
            // The compressed file's bytes on disk (`flush`: fsync as the stream closes) before the rename makes it look complete.
            await (pipeline as (...s: unknown[]) => Promise<void>)(w.readStream(0, w.size), ...compress(), tap, fh.createWriteStream({ highWaterMark: 1 << 20, flush: true }), signalOpt);
          } finally {
            await fh.close();
          }
          await rename(tmp, w.finalPath);
        } catch (e) {
          await rm(tmp, { force: true });
          throw naming(e, w.finalPath);
        }
        await w.discard();
      }
      dirs.add(dirname(w.finalPath));
      out.push({ index: f.index, path: w.finalPath, tarBytes: f.layout.size, layers: f.layers, parts: f.parts, sha256: hash.digest('hex') });
    }
    for (const d of dirs) await syncDir(d);
    return this.opts.split === undefined ? undefined : out;
  }

  /**
   * Spool mode: the engine gave every blob before any layout; lay the bundle out
   * now from what it gave, and copy each blob from the spool to its place.
   */
  private async layOutSpooled(opts: OpOptions): Promise<void> {
    await this.ready();
    const records = [...this.images.values()];
    const request: LayoutRequest = {
      images: records.map((r) => ({ repository: r.repository, manifest: r.manifest, ...(r.tag !== undefined ? { tag: r.tag } : {}), ...(r.origin !== undefined ? { origin: r.origin } : {}), ...(r.sourceDigest !== undefined ? { sourceDigest: r.sourceDigest } : {}) })),
      manifests: this.manifests,
    };
    const content = walkImages(request, { isOmitted: (d) => this.isOmitted(d), isForeign: (d) => this.isForeign(d), description: this.description });
    const store = this.spool();
    for (const b of content.stored) {
      if (b.kind === 'index' || b.kind === 'manifest') continue;
      if (!this.writtenThisRun.has(b.digest) && !(await store.has(b))) {
        const images = content.images.filter((i) => i.blobs.has(b.digest)).map((i) => i.name);
        throw new FerryError('E_BLOB_MISSING', `${this.description}: blob ${b.digest} (${b.kind}) was never written`, {
          hint: 'the copy did not complete; run the export again', details: { digest: b.digest, images },
        });
      }
    }
    const infos = new Map<Digest, ConfigInfo>();
    for (const b of configsToRead(content)) infos.set(b.digest, await this.readSpooledConfig(b));
    this.layOut(request, infos);
    // No work file of an earlier run is continued: the spool is what a rerun reuses.
    this.candidatesFound = Promise.resolve([]);
    await this.open(opts);
    for (const [digest, place] of this.places) {
      if (this.done.has(digest)) continue;
      opts.signal?.throwIfAborted();
      const src = await store.createReadStream(digest);
      const where = `${this.description}: store ${store.root}`;
      // Blobs from an earlier run's cache are hashed again: a stale or damaged cache must not poison a bundle.
      // This run's own were verified on the way in; the writer checks their size.
      const body = this.writtenThisRun.has(digest) ? src : pipelineCb(src, new VerifyStream(place.blob, where), () => undefined) as unknown as Readable;
      await this.writeStream(place, body, opts, false);
    }
  }

  private async readSpooledConfig(blob: LaidBlob): Promise<ConfigInfo> {
    const src = await this.spool().createReadStream(blob.digest);
    const chunks: Buffer[] = [];
    const verify = new VerifyStream(blob, `${this.description} config`);
    for await (const c of pipelineCb(src, verify, () => undefined) as AsyncIterable<Buffer>) chunks.push(c);
    return readConfigInfo(Buffer.concat(chunks));
  }

  private stopCheckpoints(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private async discardFiles(): Promise<void> {
    for (const f of this.files) await f.discard();
  }

  async close(): Promise<void> {
    this.stopCheckpoints();
    await this.stage?.discard();
    if (this.committed) return;
    if (this.spooled) {
      await this.discardFiles();
      return;
    }
    // Interrupted or failed: what is written is journaled, so a rerun continues from it.
    await this.checkpoint().catch(() => undefined);
    for (const f of this.files) await f.close();
  }
}

/**
 * A blob's bytes into its stretches of the files, each at its offset. What
 * arrives is gathered (up to WRITE_CHUNK: one syscall per MiB, not per network
 * chunk) and written on flush(); flushes run one after another, so a
 * checkpoint's flush and the stream's own never interleave.
 */
class PositionedWriter {
  written = 0;
  pendingBytes = 0;
  private seg = 0;
  private inSeg = 0;
  private groups: { file: number; position: number; bufs: Buffer[]; bytes: number }[] = [];
  private chain: Promise<void> = Promise.resolve();

  constructor(
    private readonly files: WorkFile[],
    private readonly segs: Segment[],
    private readonly hashes: (Hash | undefined)[],
    private readonly onWritten: (written: number) => void,
  ) {}

  /** Takes a chunk (hashing each part's bytes on the way); false when it runs past the blob's end. */
  push(chunk: Buffer): boolean {
    while (chunk.length > 0) {
      const s = this.segs[this.seg];
      if (!s) return false;
      const take = Math.min(s.size - this.inSeg, chunk.length);
      const piece = chunk.subarray(0, take);
      this.hashes[this.seg]?.update(piece);
      const position = s.entry.offset + BLOCK + this.inSeg;
      const last = this.groups[this.groups.length - 1];
      if (last && last.file === s.file && last.position + last.bytes === position) {
        last.bufs.push(piece);
        last.bytes += take;
      } else {
        this.groups.push({ file: s.file, position, bufs: [piece], bytes: take });
      }
      this.pendingBytes += take;
      this.inSeg += take;
      chunk = chunk.subarray(take);
      if (this.inSeg === s.size) {
        this.seg++;
        this.inSeg = 0;
      }
    }
    return true;
  }

  flush(): Promise<void> {
    const run = async (): Promise<void> => {
      const groups = this.groups;
      this.groups = [];
      this.pendingBytes = 0;
      for (const g of groups) {
        // IOV_MAX is 1024: a group is at most WRITE_CHUNK of network chunks, far fewer.
        if (g.bufs.length === 1 || g.bufs.length > 512) await this.files[g.file]!.write(g.bufs.length === 1 ? g.bufs[0]! : Buffer.concat(g.bufs, g.bytes), g.position);
        else await this.files[g.file]!.writev(g.bufs, g.position);
        this.written += g.bytes;
        this.onWritten(this.written);
      }
    };
    this.chain = this.chain.then(run);
    return this.chain;
  }
}

/** Wrong bytes (as opposed to too few): a prefix that produced them must not be continued. */
function isBadContent(e: unknown): boolean {
  const err = asFerryError(e);
  if (err.code === 'E_DIGEST_MISMATCH') return true;
  if (err.code !== 'E_SIZE_MISMATCH') return false;
  const { seen, expectedSize } = err.details as { seen?: unknown; expectedSize?: unknown };
  return typeof seen === 'number' && typeof expectedSize === 'number' && seen > expectedSize;
}

function imageKey(repository: string, tag: string | undefined, digest: Digest): string {
  return `${repository}\u0000${tag ?? ''}\u0000${digest}`;
}

function waitDrain(stream: PassThrough, failed: Promise<void>): Promise<void> {
  return Promise.race([new Promise<void>((r) => stream.once('drain', r)), failed.then(() => undefined)]);
}

/**
 * The first pass of an export: the stored configs, into a scratch file beside
 * the bundle (they are small; the metadata needs what they say before the
 * layout, and so before any file can be written at its offsets). Configs are
 * then copied into place by open(): a few KiB each written twice.
 */
class ConfigStage implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities = { concurrentBlobs: 8, globalBlobs: true };
  readonly infos = new Map<Digest, ConfigInfo>();
  private readonly held = new Map<Digest, { offset: number; size: number }>();
  private fh: Promise<FileHandle> | undefined;
  private byHex: Promise<Map<string, { path: string; offset: number; size: number }>> | undefined;
  private end = 0;
  private discarded = false;

  constructor(
    description: string,
    private readonly path: string,
    private readonly candidates: () => Promise<Candidate[]>,
    private readonly store: BlobStore | undefined,
    /** Keep fetched configs in the cache too (a run with --cache). */
    private readonly cacheWrite: boolean,
  ) {
    this.description = `${description} (configs)`;
  }

  private handle(): Promise<FileHandle> {
    this.fh ??= open(this.path, constants.O_RDWR | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
    return this.fh;
  }

  /** What interrupted runs wrote whole, by hex digest: the first place each blob is found. */
  private written(): Promise<Map<string, { path: string; offset: number; size: number }>> {
    this.byHex ??= this.candidates().then((list) => {
      const out = new Map<string, { path: string; offset: number; size: number }>();
      for (const c of list) for (const e of c.state.done.values()) if (e.partHex === undefined && !out.has(e.hex)) out.set(e.hex, { path: c.path, offset: e.offset, size: e.size });
      return out;
    });
    return this.byHex;
  }

  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    if (this.held.has(desc.digest)) return true;
    const there = (await this.written()).get(desc.digest.slice(7));
    if (there && there.size === desc.size) {
      const bytes = await readVerified(there.path, there.offset, desc, `${this.description}: ${there.path}`).catch(() => undefined);
      if (bytes) {
        await this.take(desc, bytes);
        return true;
      }
    }
    if (this.store && (await this.store.has(desc))) {
      const bytes = await readVerified(this.store.path(desc.digest), 0, desc, `${this.description}: cache ${this.store.root}`).catch(() => undefined);
      if (bytes) {
        if (this.cacheWrite) await this.store.touch(desc.digest);
        await this.take(desc, bytes);
        return true;
      }
      if (this.cacheWrite) await rm(this.store.path(desc.digest), { force: true });
    }
    return false;
  }

  async putBlob(_repository: string, desc: Descriptor, data: Readable): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of data as AsyncIterable<Buffer>) chunks.push(c);
    const bytes = Buffer.concat(chunks);
    await this.take(desc, bytes);
    if (this.cacheWrite && this.store) {
      await this.store.init();
      await this.store.putBytes(desc.digest, bytes);
    }
  }

  private async take(desc: Descriptor, bytes: Buffer): Promise<void> {
    if (this.held.has(desc.digest)) return;
    const fh = await this.handle();
    const offset = this.end;
    this.end += bytes.length;
    this.held.set(desc.digest, { offset, size: bytes.length });
    let done = 0;
    while (done < bytes.length) done += (await fh.write(bytes, done, bytes.length - done, offset + done)).bytesWritten;
    if (isImageConfig(desc)) this.infos.set(desc.digest, readConfigInfo(bytes));
  }

  /** A config's bytes, back from the scratch file. */
  async bytes(blob: LaidBlob): Promise<Buffer> {
    const at = this.held.get(blob.digest);
    if (!at) throw new FerryError('E_BLOB_MISSING', `${this.description}: config ${blob.digest} was never fetched`, { hint: 'the copy did not complete; run the export again', details: { digest: blob.digest } });
    const fh = await this.handle();
    const buf = Buffer.allocUnsafe(at.size);
    let done = 0;
    while (done < at.size) {
      const { bytesRead } = await fh.read(buf, done, at.size - done, at.offset + done);
      if (bytesRead === 0) throw new FerryError('E_IO', `${this.path}: ends before config ${blob.digest}`);
      done += bytesRead;
    }
    // Ours, written this run from verified bytes: its size is what the framing needs.
    return buf;
  }

  async putManifest(): Promise<void> {}
  async putImage(): Promise<void> {}
  async commit(): Promise<void> {}
  async close(): Promise<void> {}

  async discard(): Promise<void> {
    if (this.discarded) return;
    this.discarded = true;
    const fh = this.fh;
    this.fh = undefined;
    if (fh) {
      await (await fh.catch(() => undefined))?.close().catch(() => undefined);
      await rm(this.path, { force: true });
    }
  }
}

/** `desc.size` bytes of `path` from `offset`, through the one verifier. */
async function readVerified(path: string, offset: number, desc: Pick<Descriptor, 'digest' | 'size'>, where: string): Promise<Buffer> {
  const fh = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const src = fh.createReadStream({ start: offset, end: offset + desc.size - 1, autoClose: false });
    const chunks: Buffer[] = [];
    if (desc.size > 0) for await (const c of pipelineCb(src, new VerifyStream(desc, where), () => undefined) as AsyncIterable<Buffer>) chunks.push(c);
    else for await (const c of pipelineCb(Readable.from([]), new VerifyStream(desc, where), () => undefined) as AsyncIterable<Buffer>) chunks.push(c);
    return Buffer.concat(chunks);
  } finally {
    await fh.close();
  }
}

/**
 * A set written over an earlier one of the same stem replaces its list: the
 * earlier volumes the new list does not name (4 volumes, now 2) would stay
 * beside it, and `ferry import 'rel.*.tar'` — or a copy of `rel.*` to the
 * site — would meet volumes of two bundles. Only volumes of this stem, in its
 * folder, that the replaced list named are removed.
 */
async function removeReplacedVolumes(stem: string, before: readonly string[], now: readonly string[]): Promise<void> {
  const kept = new Set(now);
  const dir = dirname(stem);
  let removed = false;
  for (const name of before) {
    if (kept.has(name) || parseVolumeName(join(dir, name))?.stem !== stem) continue;
    await rm(join(dir, name), { force: true });
    removed = true;
  }
  if (removed) await syncDir(dir);
}
