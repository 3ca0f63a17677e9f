import { constants, createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { pipeline as pipelineCb, type Readable, type Transform, type Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../../errors.js';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, parseManifest } from '../../oci/manifest.js';
import { isIndexMediaType, isManifestMediaType, MT } from '../../oci/media-types.js';
import { formatPlatform, type Platform } from '../../oci/platform.js';
import { parseReference } from '../../oci/reference.js';
import { BlobStore } from '../../store/blob-store.js';
import { tempPathFor, writeFileAtomic } from '../../fsys/atomic.js';
import { syncDir } from '../../fsys/durable.js';
import { naming } from '../../fsys/files.js';
import { sweepStaleTemps } from '../../fsys/stale-temps.js';
import { compressStream } from '../../stream/zstd.js';
import { VerifyStream } from '../../stream/verify.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import {
  type BlobKind, type BundleBase, type BundleBlob, type BundleImage, type BundleMetadata, blobEntryName, buildMetadata, compareImages,
  createdSeconds, formatCreated, imageRefName, partEntryName, serialiseMetadata, validateBundleName,
} from './metadata.js';
import { TarWriter } from './tar.js';
import { hashRanges, type VolumeEntry, type VolumeFile, writeVolumes } from './volumes.js';

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
  /** The spool / cache directory (a BlobStore root). */
  storeDir: string;
  /** Delta export: blobs the receiver already has from these bases are left out. */
  delta?: { bases: BundleBase[]; omitted: ReadonlySet<Digest> };
  /** Foreign (non-distributable) layers whose bytes are not carried: listed as the metadata's `foreignBlobs` (spec/bundle.md §2.2). */
  foreign?: ReadonlySet<Digest>;
  concurrentBlobs?: number;
  /** Cut the bundle into volumes of at most this many (uncompressed tar) bytes: spec/bundle.md "Volumes". */
  split?: number;
}

interface PlannedBlob extends BundleBlob {
  omitted: boolean;
  /** A foreign layer whose bytes are not carried. */
  foreign: boolean;
}

/** Configs are JSON documents; one larger than this is not read for platform/created (it is still carried). */
const CONFIG_READ_MAX = 16 * 1024 * 1024;

/**
 * The ferry bundle as an ImageDestination. Blobs are spooled into a local
 * content-addressed store while they arrive (concurrently, in any order);
 * commit() then writes the one tar in the deterministic order the format
 * fixes, streaming each blob back from the store.
 */
export class BundleDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  readonly store: BlobStore;
  private readonly manifests = new Map<Digest, Manifest>();
  private readonly images = new Map<string, ImageRecord & { repository: string }>();
  /** Blobs whose bytes this run streamed into the store through a verified stream. */
  private readonly writtenThisRun = new Set<Digest>();
  /** Cache entries from earlier runs already hashed by hasBlob (commit hashes them again while writing). */
  private readonly checkedCache = new Set<Digest>();
  private storeReady: Promise<void> | undefined;
  private committed: BundleMetadata | undefined;
  private committedVolumes: VolumeFile[] | undefined;

  constructor(private readonly opts: BundleWriterOptions) {
    this.description = `bundle ${opts.stream ? 'stream' : opts.output}`;
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 8, globalBlobs: true };
    this.store = new BlobStore(opts.storeDir);
  }

  /** The metadata written by commit(). */
  get metadata(): BundleMetadata | undefined {
    return this.committed;
  }

  /** With `split`: the volume files commit() wrote, in index order. */
  get volumes(): VolumeFile[] | undefined {
    return this.committedVolumes;
  }

  private ready(): Promise<void> {
    this.storeReady ??= this.store.init();
    return this.storeReady;
  }

  private isOmitted(d: Digest): boolean {
    return this.opts.delta?.omitted.has(d) ?? false;
  }

  private isForeign(d: Digest): boolean {
    return !this.isOmitted(d) && (this.opts.foreign?.has(d) ?? false);
  }

  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    if (this.isOmitted(desc.digest) || this.isForeign(desc.digest) || this.writtenThisRun.has(desc.digest)) return true;
    if (this.checkedCache.has(desc.digest)) return true;
    await this.ready();
    // A cache entry from an earlier run is hashed now; a bad one is removed so the engine fetches it again.
    const ok = await this.store.verify(desc);
    if (ok) this.checkedCache.add(desc.digest);
    return ok;
  }

  async putBlob(_repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    if (this.isOmitted(desc.digest)) {
      // The receiver has it from a base bundle; still read it to the end so the engine's verification completes.
      await pipeline(data, async function* (src: AsyncIterable<Buffer>) { for await (const _ of src) { /* discard */ } }, opts.signal ? { signal: opts.signal } : {});
      return;
    }
    await this.ready();
    await this.store.put(desc, data, opts.signal ? { signal: opts.signal } : {});
    this.writtenThisRun.add(desc.digest);
  }

  async putManifest(_repository: string, manifest: Manifest): Promise<void> {
    const actual = sha256Digest(manifest.bytes);
    if (actual !== manifest.digest) {
      throw new FerryError('E_DIGEST_MISMATCH', `${this.description}: manifest ${manifest.digest} hashes to ${actual}`, {
        hint: 'the manifest bytes were altered; fetch the image again', details: { digest: manifest.digest, actual },
      });
    }
    await this.ready();
    this.manifests.set(manifest.digest, manifest);
    await this.store.putBytes(manifest.digest, manifest.bytes);
  }

  async putImage(image: ImageRecord): Promise<void> {
    const repository = this.bundleRepository(image);
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
    return validateBundleName(image.repository, `${this.description}: image ${image.origin ?? image.repository}`);
  }

  // ------------------------------------------------------------ commit

  async commit(opts: OpOptions = {}): Promise<void> {
    await this.ready();
    const { meta, stored } = await this.plan();
    this.committed = meta;
    const metaBytes = serialiseMetadata(meta);
    if (this.opts.split !== undefined) {
      this.committedVolumes = await writeVolumes({
        output: this.opts.output, maxBytes: this.opts.split, meta, stored, compressed: this.opts.compression === 'zstd', description: this.description,
        indexJsonBytes: ociIndex(meta).length,
        hashParts: (blob, sizes) => this.hashParts(blob, sizes),
        writeOne: (file, volMeta, entries, tap) => this.writeArchiveFile(file, volMeta, serialiseMetadata(volMeta), entries, opts, tap),
      });
      return;
    }
    const signalOpt = opts.signal ? { signal: opts.signal } : {};
    const tar = new TarWriter(createdSeconds(meta.created));
    const stages: NodeJS.ReadWriteStream[] = this.opts.compression === 'zstd' ? [compressStream(this.opts.level === undefined ? {} : { level: this.opts.level })] : [];
    // Entries go in one at a time while the archive streams out; each waits for the output to take its bytes.
    const produce = (): Promise<void> => this.writeEntries(tar, meta, metaBytes, stored.map((blob) => ({ blob })), opts).then(
      () => tar.finalize(),
      (e: unknown) => {
        tar.destroy(e as Error);
        throw e;
      },
    );
    const emit = async (out: Writable, end = true): Promise<void> => {
      if (stages[0]) await pipeline(tar.stream, stages[0], out, { ...signalOpt, end });
      else await pipeline(tar.stream, out, { ...signalOpt, end });
    };

    if (this.opts.stream) {
      const out = this.opts.stream;
      // The caller owns the stream (stdout: other output, the summary, may follow): it is not ended here.
      await settle(produce(), emit(out, false));
      return;
    }
    await this.writeArchiveFile(this.opts.output, meta, metaBytes, stored.map((blob) => ({ blob })), opts);
    await writeFileAtomic(`${this.opts.output}.ferry.json`, metaBytes);
  }

  /** One bundle file (temp name + rename); `tap` sees the file's bytes as they are written (the volume checksums). */
  private async writeArchiveFile(output: string, meta: BundleMetadata, metaBytes: Buffer, entries: VolumeEntry<PlannedBlob>[], opts: OpOptions, tap?: Transform): Promise<void> {
    const signalOpt = opts.signal ? { signal: opts.signal } : {};
    const tar = new TarWriter(createdSeconds(meta.created));
    const stages: NodeJS.ReadWriteStream[] = this.opts.compression === 'zstd' ? [compressStream(this.opts.level === undefined ? {} : { level: this.opts.level })] : [];
    if (tap) stages.push(tap);
    const produce = (): Promise<void> => this.writeEntries(tar, meta, metaBytes, entries, opts).then(
      () => tar.finalize(),
      (e: unknown) => {
        tar.destroy(e as Error);
        throw e;
      },
    );
    // A killed export leaves a bundle-sized temp beside the output: the next run removes it (never a live run's).
    await sweepStaleTemps(dirname(resolve(output)));
    const tmp = tempPathFor(output);
    try {
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o644);
      try {
        await fh.chmod(0o644);
        // The bundle's bytes on disk before the rename makes it look complete (`flush`: fsync as the stream closes the handle), the rename before we say so.
        const out = fh.createWriteStream({ highWaterMark: 1 << 20, flush: true });
        await settle(produce(), (pipeline as (...s: unknown[]) => Promise<void>)(tar.stream, ...stages, out, signalOpt));
      } finally {
        await fh.close();
      }
      await rename(tmp, output);
      await syncDir(dirname(resolve(output)));
    } catch (e) {
      await rm(tmp, { force: true });
      throw naming(e, output);
    }
  }

  async close(): Promise<void> {
    // Nothing held open: temp files are removed by commit's own error path, and the store is a cache meant to outlive the run.
  }

  /** Walks the images in sorted order and lays out the stored blobs: manifests (children first), configs, layers. */
  private async plan(): Promise<{ meta: BundleMetadata; stored: PlannedBlob[] }> {
    const records = [...this.images.values()].sort((a, b) => compareImages(
      { repository: a.repository, tag: a.tag, digest: a.manifest.digest },
      { repository: b.repository, tag: b.tag, digest: b.manifest.digest },
    ));
    const groups: Record<'manifests' | 'configs' | 'layers', PlannedBlob[]> = { manifests: [], configs: [], layers: [] };
    const seen = new Map<Digest, PlannedBlob>();
    const configInfo = new Map<Digest, ConfigInfo>();
    const images: BundleImage[] = [];
    const needs = new Map<string, Set<Digest>>();

    const note = (desc: Descriptor, kind: BlobKind, where: string): PlannedBlob => {
      const have = seen.get(desc.digest);
      if (have) {
        if (have.size !== desc.size) {
          throw new FerryError('E_MANIFEST_INVALID', `${where}: ${desc.digest} is referenced with size ${desc.size} here and ${have.size} elsewhere`, {
            hint: 'one of the manifests is wrong; re-push the image', details: { digest: desc.digest },
          });
        }
        return have;
      }
      const omitted = (kind === 'config' || kind === 'layer') && this.isOmitted(desc.digest);
      const foreign = kind === 'layer' && this.isForeign(desc.digest);
      const p: PlannedBlob = { digest: desc.digest, size: desc.size, mediaType: desc.mediaType, kind, omitted, foreign };
      seen.set(desc.digest, p);
      (kind === 'index' || kind === 'manifest' ? groups.manifests : kind === 'config' ? groups.configs : groups.layers).push(p);
      return p;
    };

    for (const rec of records) {
      const name = imageRefName({ repository: rec.repository, tag: rec.tag, digest: rec.manifest.digest });
      const inImage = new Map<Digest, number>();
      const platforms: string[] = [];
      const configs: Digest[] = [];
      const walk = (desc: Descriptor, depth: number): void => {
        if (depth > 4) throw new FerryError('E_MANIFEST_INVALID', `${name}: indexes nest deeper than 4 levels`, { hint: 'this image structure is not supported', details: { image: name } });
        const m = this.manifests.get(desc.digest);
        if (!m) {
          throw new FerryError('E_BLOB_MISSING', `${this.description}: ${name} needs manifest ${desc.digest}, which was never written`, {
            hint: 'the copy did not complete; run the export again', details: { image: name, digest: desc.digest },
          });
        }
        if (depth > 0 && desc.size !== m.bytes.length) {
          throw new FerryError('E_MANIFEST_INVALID', `${name}: index entry ${desc.digest} declares ${desc.size} bytes, the manifest has ${m.bytes.length}`, {
            hint: 'the index is inconsistent; re-push the image', details: { image: name, digest: desc.digest },
          });
        }
        const parsed = parseManifest(m.bytes, m.mediaType, `${name} manifest ${desc.digest}`);
        if (parsed.kind === 'index') {
          for (const child of parsed.manifests) {
            if (!isManifestMediaType(child.mediaType)) {
              throw new FerryError('E_UNSUPPORTED_MEDIA_TYPE', `${name}: index entry ${child.digest} has media type ${child.mediaType}`, {
                hint: 'ferry carries indexes of image manifests and indexes', details: { image: name, digest: child.digest },
              });
            }
            walk(child, depth + 1);
            if (depth === 0 && child.platform && child.platform.os !== 'unknown') {
              const p = formatPlatform(child.platform);
              if (!platforms.includes(p)) platforms.push(p);
            }
          }
        } else {
          if (parsed.config) {
            inImage.set(parsed.config.digest, note(parsed.config, 'config', name).size);
            if (depth === 0) configs.push(parsed.config.digest);
            else if (!configs.includes(parsed.config.digest)) configs.push(parsed.config.digest);
          }
          for (const l of parsed.layers) inImage.set(l.digest, note(l, 'layer', name).size);
        }
        inImage.set(desc.digest, note({ ...desc, mediaType: m.mediaType, size: m.bytes.length }, isIndexMediaType(m.mediaType) ? 'index' : 'manifest', name).size);
      };
      walk({ digest: rec.manifest.digest, mediaType: rec.manifest.mediaType, size: rec.manifest.bytes.length }, 0);
      needs.set(name, new Set(inImage.keys()));

      for (const c of configs) {
        if (!configInfo.has(c)) configInfo.set(c, await this.readConfigInfo(seen.get(c)!, name));
      }
      if (!isIndexMediaType(rec.manifest.mediaType)) {
        const info = configInfo.get(configs[0]!);
        if (info?.platform) platforms.push(formatPlatform(info.platform));
      }
      const img: BundleImage = {
        origin: rec.origin ?? name,
        repository: rec.repository,
        digest: rec.manifest.digest,
        mediaType: rec.manifest.mediaType,
        platforms,
        size: [...inImage.values()].reduce((n, s) => n + s, 0),
      };
      parseReference(img.origin, `${name} origin`);
      if (rec.tag !== undefined) img.tag = rec.tag;
      if (rec.sourceDigest !== undefined) img.sourceDigest = rec.sourceDigest;
      images.push(img);
    }

    const all = [...groups.manifests, ...groups.configs, ...groups.layers];
    const stored = all.filter((b) => !b.omitted && !b.foreign);
    for (const b of stored) {
      if (b.kind === 'index' || b.kind === 'manifest') continue;
      if (!this.writtenThisRun.has(b.digest) && !(await this.store.has(b))) {
        throw new FerryError('E_BLOB_MISSING', `${this.description}: blob ${b.digest} (${b.kind}) was never written`, {
          hint: 'the copy did not complete; run the export again', details: { digest: b.digest, images: [...needs].filter(([, ds]) => ds.has(b.digest)).map(([n]) => n) },
        });
      }
    }
    const meta = buildMetadata({
      created: this.chooseCreated([...configInfo.values()]),
      toolVersion: this.opts.toolVersion,
      images,
      blobs: stored,
      ...(this.opts.delta ? { delta: { bases: this.opts.delta.bases, omittedBlobs: all.filter((b) => b.omitted) } } : {}),
      foreignBlobs: all.filter((b) => b.foreign),
    });
    return { meta, stored };
  }

  /**
   * SOURCE_DATE_EPOCH (reproducible-builds convention) wins, then the explicit
   * option, then the newest image config's `created`: a content time, so the
   * same images give the same bytes by default.
   */
  private chooseCreated(configs: ConfigInfo[]): string {
    const env = process.env['SOURCE_DATE_EPOCH'];
    if (env !== undefined && env !== '') {
      if (!/^\d{1,12}$/.test(env)) throw new FerryError('E_USAGE', `SOURCE_DATE_EPOCH=${JSON.stringify(env.slice(0, 40))} is not a number of seconds`, { hint: 'set it to a Unix time, e.g. SOURCE_DATE_EPOCH=$(git log -1 --format=%ct)' });
      return formatCreated(new Date(Number(env) * 1000));
    }
    if (this.opts.created) return formatCreated(this.opts.created);
    let newest = 0;
    for (const c of configs) if (c.created !== undefined && c.created > newest) newest = c.created;
    return formatCreated(new Date(newest));
  }

  private async readConfigInfo(blob: PlannedBlob, image: string): Promise<ConfigInfo> {
    // Configs of non-image artifacts (helm charts, signatures) carry no platform or time.
    if (blob.omitted || blob.size > CONFIG_READ_MAX || (blob.mediaType !== MT.ociConfig && blob.mediaType !== MT.dockerConfig)) return {};
    const src = await this.store.createReadStream(blob.digest);
    const chunks: Buffer[] = [];
    const verify = new VerifyStream(blob, `${image} config`);
    for await (const c of pipelineCb(src, verify, () => { /* errors surface through the iterator */ }) as AsyncIterable<Buffer>) chunks.push(c);
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, unknown>;
    } catch {
      return {};
    }
    const info: ConfigInfo = {};
    if (typeof doc.os === 'string' && typeof doc.architecture === 'string' && doc.os !== '' && doc.architecture !== '') {
      const p: Platform = { os: doc.os, architecture: doc.architecture };
      if (typeof doc.variant === 'string' && doc.variant !== '') p.variant = doc.variant;
      if (/^[a-z0-9._-]+\/[a-z0-9._-]+(?:\/[a-z0-9._-]+)?$/.test(formatPlatform(p))) info.platform = p;
    }
    if (typeof doc.created === 'string') {
      const t = Date.parse(doc.created);
      if (!Number.isNaN(t) && t > 0) info.created = t;
    }
    return info;
  }

  /**
   * A cut layer's part digests, from one pass over the stored blob, hashed
   * whole as well: a damaged cache entry must not get digests of its own.
   */
  private async hashParts(b: PlannedBlob, sizes: number[]): Promise<Digest[]> {
    const where = `${this.description}: store ${this.store.root}`;
    const src = await this.store.createReadStream(b.digest);
    return hashRanges(pipelineCb(src, new VerifyStream(b, where), () => { /* errors surface through the iterator */ }) as AsyncIterable<Buffer>, sizes);
  }

  /** The archive's entries in the order spec/bundle.md fixes. Blobs (and parts of cut layers) stream from the store. */
  private async writeEntries(tar: TarWriter, meta: BundleMetadata, metaBytes: Buffer, entries: VolumeEntry<PlannedBlob>[], opts: OpOptions): Promise<void> {
    await tar.file('ferry.json', metaBytes);
    await tar.file('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
    await tar.file('index.json', ociIndex(meta));
    await tar.directory('blobs/');
    await tar.directory('blobs/sha256/');
    for (const { blob: b, part } of entries) {
      opts.signal?.throwIfAborted();
      if (part) {
        // Checked against the digest hashParts recorded: the volume holds exactly what its metadata says, whatever happened to the store since.
        const src = createReadStream(this.store.path(b.digest), { start: part.offset, end: part.offset + part.size - 1, highWaterMark: 1 << 20 });
        const where = `${this.description}: store ${this.store.root}: part ${part.index + 1} of ${part.count} of ${b.digest}`;
        const body = pipelineCb(src, new VerifyStream({ digest: part.partDigest, size: part.size }, where), () => { /* errors surface through the iterator */ });
        await tar.fileFrom(partEntryName(b.digest, part.index), part.size, body as AsyncIterable<Buffer>);
        continue;
      }
      const name = blobEntryName(b.digest);
      const m = this.manifests.get(b.digest);
      if (m) {
        await tar.file(name, m.bytes);
        continue;
      }
      const src = await this.store.createReadStream(b.digest);
      const where = `${this.description}: store ${this.store.root}`;
      // Blobs from an earlier run's cache are hashed again: a stale or damaged cache must not poison a bundle.
      const body: AsyncIterable<Buffer> = this.writtenThisRun.has(b.digest)
        ? sizeChecked(src, b, where)
        : (pipelineCb(src, new VerifyStream(b, where), () => { /* errors surface through the iterator */ }) as AsyncIterable<Buffer>);
      await tar.fileFrom(name, b.size, body);
    }
  }
}

/**
 * Waits for both the entry producer and the output pipeline. The producer's
 * own errors (a blob failing verification) say more than the output's
 * consequent "destroyed"; an output error (disk full) says more than the
 * producer's consequent one.
 */
async function settle(produce: Promise<void>, output: Promise<void>): Promise<void> {
  const [p, o] = await Promise.allSettled([produce, output]);
  if (p.status === 'rejected' && p.reason instanceof FerryError) throw p.reason;
  if (o.status === 'rejected') throw o.reason;
  if (p.status === 'rejected') throw p.reason;
}

interface ConfigInfo {
  platform?: Platform;
  /** ms since epoch */
  created?: number;
}

/** Blobs this run wrote were verified on the way in; only the tar framing needs the exact size. */
async function* sizeChecked(src: Readable, b: BundleBlob, where: string): AsyncGenerator<Buffer> {
  let seen = 0;
  for await (const chunk of src as AsyncIterable<Buffer>) {
    seen += chunk.length;
    if (seen > b.size) break;
    yield chunk;
  }
  if (seen !== b.size) {
    src.destroy();
    throw new FerryError('E_SIZE_MISMATCH', `${where}: blob ${b.digest} changed on disk during the run (${seen === b.size + 1 ? 'longer' : seen} vs ${b.size} bytes)`, {
      hint: 'something else modified the spool directory; run the export again', details: { digest: b.digest },
    });
  }
}

/** index.json: one descriptor per image, in metadata order, named so `oci-archive:FILE:<name>` finds it. */
export function ociIndex(meta: BundleMetadata): Buffer {
  const blobSize = new Map(meta.blobs.map((b) => [b.digest, b.size]));
  const doc = {
    schemaVersion: 2,
    mediaType: MT.ociIndex,
    manifests: meta.images.map((i) => ({
      mediaType: i.mediaType,
      digest: i.digest,
      size: blobSize.get(i.digest) ?? 0,
      annotations: { 'org.opencontainers.image.ref.name': imageRefName(i) },
    })),
  };
  return Buffer.from(JSON.stringify(doc), 'utf8');
}
