import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asFerryError, FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import type { Descriptor, Manifest } from '../../oci/manifest.js';
import { VerifyStream } from '../../stream/verify.js';
import type { OpOptions, SequentialSource, SourceImage } from '../types.js';
import type { BundleBlob, BundleMetadata } from './metadata.js';
import { BundleSource } from './reader.js';
import { parseSidecar } from './volumes.js';

/** What a reader was given of a split bundle, for reports. */
export interface VolumeSetInfo {
  count: number;
  /** 1-based numbers and files of the volumes read. */
  given: { volume: number; file: string }[];
  /** Volumes neither given nor (with a sidecar) found; `file` is the expected name when known. */
  missing: { volume: number; file?: string }[];
  /** Volumes given whose file does not match the sidecar's checksum. */
  damaged: { volume: number; file: string }[];
  /** The set came from a `.sha256` list: every listed volume was asked for. */
  fromSidecar: boolean;
}

interface Member {
  index: number;
  file: string;
  layers: BundleBlob[];
  /** Set when the file cannot be used at all (checksum mismatch). */
  unusable?: FerryError;
}

/**
 * Opens what a reader command was given: one bundle, one or several volumes of
 * a split bundle, or the split bundle's `.sha256` list. A plain bundle is read
 * as always; volumes become one VolumeSetSource.
 */
export async function openBundleInput(inputs: readonly string[]): Promise<BundleSource | VolumeSetSource> {
  const [first] = inputs;
  if (first === undefined) throw new FerryError('E_USAGE', 'no bundle given', { hint: 'name a bundle file, its volumes, or their .sha256 list' });
  if (inputs.length === 1 && (first === '-' || !first.endsWith('.sha256'))) {
    if (first === '-') return BundleSource.open(first);
    const meta = await BundleSource.peekMetadata(first);
    if (!meta.volume) return BundleSource.open(first);
  }
  return VolumeSetSource.open(inputs);
}

/**
 * A split bundle read as one SequentialSource: the head (metadata, manifests,
 * configs) from the first usable volume, then each volume's layers in volume
 * order. A missing, damaged or unreadable volume fails only the layers it
 * holds, so the images that do not need them still import; the errors name
 * the volume and its file.
 */
export class VolumeSetSource implements SequentialSource {
  readonly sequential = true as const;
  readonly description: string;
  readonly omittedBlobs: ReadonlySet<Digest>;
  /** Layers that cannot be had, with why. */
  private readonly failed = new Map<Digest, FerryError>();
  private readonly open = new Set<BundleSource>();
  private started = false;

  private constructor(
    private readonly head: BundleSource,
    private readonly headIndex: number,
    private readonly members: Member[],
    readonly info: VolumeSetInfo,
    readonly where: string,
  ) {
    this.description = `bundle ${where}`;
    this.omittedBlobs = head.omittedBlobs;
    this.open.add(head);
    this.noteMissing();
  }

  static async open(inputs: readonly string[]): Promise<VolumeSetSource> {
    // File name → checksum expected by a sidecar, and the sidecar's own order (index order, as export writes it).
    const expected = new Map<string, string>();
    const listed: string[] = [];
    const files: string[] = [];
    let sidecar: string | undefined;
    for (const input of inputs) {
      if (input === '-') throw new FerryError('E_USAGE', 'volumes of a split bundle are read from files, not stdin', { hint: 'give the volume files or their .sha256 list' });
      if (input.endsWith('.sha256')) {
        const text = await readFile(input, 'utf8').catch((e: unknown) => { throw asIoError(e, input); });
        for (const e of parseSidecar(text, input)) {
          const p = resolve(e.path);
          expected.set(p, e.sha256);
          listed.push(p);
        }
        sidecar = input;
      } else {
        files.push(resolve(input));
      }
    }
    for (const p of listed) {
      if (!files.includes(p) && (await stat(p).then((s) => s.isFile(), () => false))) files.push(p);
    }

    const members = new Map<number, Member & { meta: BundleMetadata }>();
    let ref: BundleMetadata | undefined;
    for (const file of files) {
      const meta = await BundleSource.peekMetadata(file);
      const vol = meta.volume;
      if (!vol) {
        throw new FerryError('E_USAGE', `${file} is a whole bundle, not a volume of a split one`, { hint: 'give a whole bundle alone; give volumes only together with volumes of the same bundle', details: { file } });
      }
      if (ref && (meta.bundleId !== ref.bundleId || vol.count !== ref.volume!.count)) {
        throw new FerryError('E_USAGE', `${file} is volume ${vol.index + 1} of ${vol.count} of bundle ${meta.bundleId}, not of ${ref.bundleId} (${ref.volume!.count} volumes) like the others`, {
          hint: 'give the volumes of one bundle only', details: { file, bundleId: meta.bundleId },
        });
      }
      ref ??= meta;
      const dup = members.get(vol.index);
      if (dup) {
        throw new FerryError('E_USAGE', `volume ${vol.index + 1} of ${vol.count} was given twice: ${dup.file} and ${file}`, { hint: 'give each volume once', details: { files: [dup.file, file] } });
      }
      const held = new Set<string>(vol.blobs);
      members.set(vol.index, { index: vol.index, file, meta, layers: meta.blobs.filter((b) => b.kind === 'layer' && held.has(b.digest)) });
    }
    if (!ref) {
      throw new FerryError('E_NOT_FOUND', `${sidecar ?? 'the volume list'}: none of the listed volumes is there`, {
        hint: 'copy the volume files next to their .sha256 list', details: { files: listed },
      });
    }
    const count = ref.volume!.count;

    // A sidecar is the sender's word on each file: check it before reading (a damaged volume fails its own layers only).
    const damaged: VolumeSetInfo['damaged'] = [];
    for (const m of members.values()) {
      const want = expected.get(m.file);
      if (want === undefined) continue;
      const have = await sha256File(m.file);
      if (have !== want) {
        damaged.push({ volume: m.index + 1, file: m.file });
        m.unusable = new FerryError('E_DIGEST_MISMATCH', `volume ${m.index + 1} of ${count} (${basename(m.file)}) does not match its sha256 in ${basename(sidecar!)}: the file is damaged`, {
          hint: 'copy this volume again from the exporting side', details: { file: m.file, volume: m.index + 1, expected: want, actual: have },
        });
      }
    }

    const missing: VolumeSetInfo['missing'] = [];
    const known = [...members.values()][0]!;
    for (let i = 0; i < count; i++) {
      if (members.has(i)) continue;
      const fromList = listed.length === count ? listed[i] : undefined;
      const guess = fromList ?? guessName(known.file, known.index, i, count);
      missing.push({ volume: i + 1, ...(guess !== undefined ? { file: guess } : {}) });
    }

    const ordered = [...members.values()].sort((a, b) => a.index - b.index);
    const headMember = ordered.find((m) => !m.unusable);
    if (!headMember) throw damaged.length ? ordered[0]!.unusable! : new FerryError('E_INTERNAL', 'no volume to read');
    const head = await BundleSource.open(headMember.file);
    const info: VolumeSetInfo = {
      count, given: ordered.map((m) => ({ volume: m.index + 1, file: m.file })), missing, damaged, fromSidecar: sidecar !== undefined,
    };
    const stem = basename(headMember.file).replace(/\.\d{3,}\.tar(\.zst)?$/, '');
    return new VolumeSetSource(head, headMember.index, ordered, info, `${join(dirname(headMember.file), stem)}.* (${ordered.length} of ${count} volumes)`);
  }

  get metadata(): BundleMetadata {
    return this.head.metadata;
  }

  get compressed(): boolean {
    return this.head.compressed;
  }

  get metadataDigest(): Digest {
    return this.head.metadataDigest;
  }

  /** Layers no given volume holds: the share of the volumes that were not given. */
  get absentLayers(): Set<Digest> {
    const held = new Set(this.members.flatMap((m) => m.layers.map((l) => l.digest)));
    return new Set(this.metadata.blobs.filter((b) => b.kind === 'layer' && !held.has(b.digest)).map((b) => b.digest));
  }

  /** Layers that could not be had (missing, damaged or unreadable volumes), with why; complete once blobs() has run. */
  get unreadableLayers(): ReadonlyMap<Digest, FerryError> {
    return this.failed;
  }

  imagesNeeding(digest: Digest): string[] {
    return this.head.imagesNeeding(digest);
  }

  /**
   * Volumes hold consecutive runs of the stored layers, so a layer no given
   * volume holds lies in the gap between the given volumes around it: those
   * volumes are the missing ones.
   */
  private noteMissing(): void {
    const given = this.members;
    const layers = this.metadata.blobs.filter((b) => b.kind === 'layer');
    const pos = new Map(layers.map((b, i) => [b.digest as string, i]));
    const lastPos = (m: Member): number => Math.max(-1, ...m.layers.map((l) => pos.get(l.digest)!));
    const absent = this.absentLayers;
    for (const [i, l] of layers.entries()) {
      if (!absent.has(l.digest)) continue;
      const before = given.filter((m) => m.layers.length > 0 && lastPos(m) < i).map((m) => m.index);
      const after = given.filter((m) => m.layers.length > 0 && lastPos(m) > i).map((m) => m.index);
      const from = before.length ? Math.max(...before) + 1 : 0;
      const to = after.length ? Math.min(...after) - 1 : this.info.count - 1;
      const gap = this.info.missing.filter((v) => v.volume - 1 >= from && v.volume - 1 <= to);
      const names = gap.map((v) => v.file !== undefined ? basename(v.file) : `volume ${v.volume}`);
      const which = gap.length === 1
        ? `volume ${gap[0]!.volume} of ${this.info.count}${gap[0]!.file !== undefined ? ` (${basename(gap[0]!.file)})` : ''} is missing`
        : `one of volumes ${gap.map((v) => v.volume).join(', ')} of ${this.info.count} (${names.join(', ')}) is missing`;
      const needers = this.imagesNeeding(l.digest);
      this.failed.set(l.digest, new FerryError('E_BLOB_MISSING', `${which}: it holds layer ${l.digest}${needers.length ? `, needed by ${needers.slice(0, 5).join(', ')}${needers.length > 5 ? ', …' : ''}` : ''}`, {
        hint: 'copy the missing volume next to the others and run again; images that do not need it are not affected',
        details: { volumes: gap.map((v) => v.volume), files: gap.map((v) => v.file), digest: l.digest, images: needers },
      }));
    }
  }

  getManifest(repository: string, reference: string): Promise<Manifest> {
    return this.head.getManifest(repository, reference);
  }

  async getBlob(repository: string, desc: Descriptor): Promise<Readable> {
    const failed = this.failed.get(desc.digest);
    if (failed) throw failed;
    const blob = this.metadata.blobs.find((b) => b.digest === desc.digest);
    if (blob?.kind === 'layer') {
      throw new FerryError('E_INTERNAL', `${this.where}: layer ${desc.digest} can only be read in order through blobs()`, { details: { digest: desc.digest } });
    }
    return this.head.getBlob(repository, desc);
  }

  listImages(): Promise<SourceImage[]> {
    return this.head.listImages();
  }

  /** Each given volume's layers in volume order, each checked against its digest under the volume's name. */
  async *blobs(opts: OpOptions = {}): AsyncGenerator<{ descriptor: Descriptor; stream: Readable }> {
    if (this.started) throw new FerryError('E_INTERNAL', `${this.where}: blobs() can be read only once`);
    this.started = true;
    const count = this.info.count;
    for (const m of this.members) {
      opts.signal?.throwIfAborted();
      const label = `volume ${m.index + 1} of ${count} (${basename(m.file)})`;
      const yielded = new Set<Digest>();
      const failOne = (l: BundleBlob, e: unknown): void => {
        const base = asFerryError(e);
        const needers = this.imagesNeeding(l.digest);
        this.failed.set(l.digest, new FerryError(base.code, `${label}: layer ${l.digest}${needers.length ? ` (needed by ${needers.slice(0, 5).join(', ')})` : ''} cannot be read: ${base.message}`, {
          hint: base.hint ?? 'copy this volume again from the exporting side', cause: base, details: { file: m.file, volume: m.index + 1, digest: l.digest, images: needers },
        }));
      };
      const failRest = (e: unknown): void => {
        for (const l of m.layers) if (!yielded.has(l.digest) && !this.failed.has(l.digest)) failOne(l, e);
      };
      if (m.unusable) {
        failRest(m.unusable);
        continue;
      }
      let src: BundleSource | undefined;
      try {
        src = m.index === this.headIndex ? this.head : await BundleSource.open(m.file);
        this.open.add(src);
        if (src.metadata.bundleId !== this.metadata.bundleId) throw new FerryError('E_BUNDLE_INVALID', `${m.file} changed while it was read`, { hint: 'do not modify volumes while ferry reads them' });
        for await (const { descriptor, stream } of src.blobs(opts)) {
          yielded.add(descriptor.digest);
          const verify = new VerifyStream(descriptor, label);
          verify.on('error', () => {});
          stream.on('error', (e) => verify.destroy(e));
          yield { descriptor, stream: stream.pipe(verify) };
        }
        // Layers the volume's reader skipped (a missing entry) carry its own error.
        for (const l of m.layers) {
          if (yielded.has(l.digest)) continue;
          const why = await src.getBlob('', l).then((s) => { s.destroy(); return undefined; }, (e: unknown) => e);
          if (why !== undefined) failOne(l, why);
        }
      } catch (e) {
        const err = asFerryError(e);
        if (err.code === 'E_ABORTED' || opts.signal?.aborted) throw e;
        failRest(err);
      } finally {
        if (src && src !== this.head) {
          this.open.delete(src);
          await src.close();
        }
      }
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.open].map((s) => s.close()));
    this.open.clear();
  }
}

/** The name volume `index` would have, from a given volume's name, when that follows export's naming. */
function guessName(file: string, fileIndex: number, index: number, count: number): string | undefined {
  const m = /^(.*)\.(\d{3,})(\.tar(?:\.zst)?)$/.exec(file);
  if (!m || Number(m[2]) !== fileIndex) return undefined;
  const width = Math.max(3, String(count - 1).length);
  return `${m[1]}.${String(index).padStart(width, '0')}${m[3]}`;
}

async function sha256File(file: string): Promise<string> {
  const hash = createHash('sha256');
  await pipeline(createReadStream(file, { highWaterMark: 1 << 20 }), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) hash.update(c);
  }).catch((e: unknown) => { throw asIoError(e, file); });
  return hash.digest('hex');
}

function asIoError(e: unknown, file: string): FerryError {
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return new FerryError('E_NOT_FOUND', `${file}: no such file`, { hint: 'check the path', details: { file }, cause: e });
  return asFerryError(e, 'E_IO');
}
