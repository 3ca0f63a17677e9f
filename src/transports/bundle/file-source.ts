import { readSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { FerryError, isFerryError } from '../../errors.js';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import type { Descriptor, Manifest } from '../../oci/manifest.js';
import type { FileRange } from '../../stream/verify.js';
import type { OpOptions, SequentialBlob } from '../types.js';
import {
  asBundleError, BundleHead, type ExpectedEntry, firstEntryError, HEAD_MAX_BYTES, metadataCut, type TailEntry,
} from './bundle-head.js';
import type { BundleInput } from './input.js';
import { type BundleBlob, type BundlePart, METADATA_MAX_BYTES } from './metadata.js';
import { RangeStream } from './range-reader.js';
import { readAt } from '../../fsys/files.js';
import { BLOCK, padding } from './tar.js';

/**
 * An uncompressed bundle file read at random (spec/bundle.md §7 applied to a
 * file instead of a stream). open() walks the tar headers — one 512-byte
 * header per entry, hopping over the data, small entries read together —
 * and checks every entry is where the metadata says, in the order it says,
 * exactly as the reader of a stream does (reader.ts); it reads and verifies
 * the layout files and every manifest, and checks the graph. Configs and
 * layers are then read on demand, each as a range of the file, any number at
 * once: the copy engine's parallel path runs, and nothing but manifests is
 * held in memory. Every byte handed out is unverified: the engine's verifier
 * checks it.
 *
 * A file cut short is known from its size before anything is read: the
 * entries whose content lies wholly inside the file are there, the others
 * fail alone (getBlob answers with the error naming each), and `cutShort`
 * says the file is not whole even when it lost nothing but its end.
 */
export class FileBundleSource extends BundleHead implements BundleInput {
  readonly sequential = false as const;
  /** The bytes of a file do not change between two reads of it: a mismatch is not worth another. */
  readonly immutable = true as const;
  /**
   * Where each blob's content lies in the file, by its place in `known` (NaN:
   * not in the file); its size is the metadata's, which its header matched.
   * An array, not an object per blob in a map (~7 MB at 100,000 blobs).
   */
  private readonly offsets: Float64Array;
  /** Where each part of a layer cut across volumes lies, as `digest#index`. */
  private readonly partsAt = new Map<string, { offset: number; size: number }>();
  /** The file was cut after its head (or only its end is missing), with what it lost. */
  private cut: FerryError | undefined;
  private closed = false;

  private constructor(
    private readonly handle: FileHandle,
    private readonly fileSize: number,
    where: string,
    metaBytes: Buffer,
  ) {
    super(where, metaBytes, false);
    this.offsets = new Float64Array(this.known.length).fill(NaN);
  }

  protected get received(): number {
    return this.fileSize;
  }

  static async open(path: string, opts: { headMaxBytes?: number } = {}): Promise<FileBundleSource> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw asBundleError(e, path);
    }
    try {
      const size = (await handle.stat()).size;
      const first = await readAt(handle, 0, Math.min(BLOCK, size));
      if (first.length < BLOCK) throw metadataCut(path, size, false);
      const h = decodeHeader(first, path, 0);
      if (h === null) throw metadataCut(path, size, false);
      const refused = firstEntryError(path, h.name, h.type, h.size, METADATA_MAX_BYTES);
      if (refused) throw refused;
      if (BLOCK + h.size > size) throw metadataCut(path, size, false);
      const src = new FileBundleSource(handle, size, path, await readAt(handle, BLOCK, h.size));
      await src.readHead(BLOCK + h.size + padding(h.size), opts.headMaxBytes ?? HEAD_MAX_BYTES);
      return src;
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw asBundleError(e, path);
    }
  }

  /**
   * The whole walk: head entries checked (and the layout files and manifests
   * read) in order, the tail's headers located, then the graph, then what the
   * tail lacks. Errors come in the order a reader of the stream meets them:
   * the head's, the graph's, then the tail's.
   */
  private async readHead(firstEntry: number, maxBytes: number): Promise<void> {
    // Only manifests stay in memory: configs are read when they are asked for, like layers.
    this.checkHeadSizes(maxBytes, false);
    const win = new Window(this.handle, this.fileSize);
    let pos: number;
    try {
      pos = await this.walkHead(win, firstEntry);
    } catch (e) {
      throw isFerryError(e, 'E_BUNDLE_TRUNCATED') ? this.headCut(e) : e;
    }
    const tail = await this.walkTail(win, pos);
    this.checkGraph();
    if (tail.fatal) throw tail.fatal();
    for (const { due, found } of tail.missing) this.lostBlobs.set(due.blob.digest, this.missing(due, found));
    if (tail.cutFrom !== undefined) this.cut = this.tailCut(tail.cutFrom, tail.cutError!());
    // The names met only tell a duplicate from an unknown entry during the walk: 40,000 strings at 10,000 images.
    this.seenNames.clear();
  }

  /** The blob's entry content starts at `offset` (its header matched the metadata's size). */
  private locate(blob: BundleBlob, offset: number): void {
    this.offsets[this.blobIndex.get(blob.digest)!] = offset;
  }

  /** Where the file holds a blob whole, or undefined. */
  private located(digest: Digest): { offset: number; size: number } | undefined {
    const i = this.blobIndex.get(digest);
    const offset = i === undefined ? NaN : this.offsets[i]!;
    return Number.isNaN(offset) ? undefined : { offset, size: this.known[i!]!.size };
  }

  /** A head entry counts as arrived when its content lies wholly inside the file. */
  protected override headArrived(blob: { digest: Digest }): boolean {
    return this.small.has(blob.digest) || this.located(blob.digest) !== undefined;
  }

  /** Layout files, directories, manifests and configs, each exactly where the one before ended; returns where the tail starts. */
  private async walkHead(win: Window, from: number): Promise<number> {
    let pos = from;
    for (const exp of this.headEntries()) {
      const h = await this.header(win, pos, exp);
      const size = h.type === 'directory' ? 0 : h.size;
      const problem = this.entryProblem(exp, h.name, h.type, size);
      if (problem) throw problem();
      const at = pos + BLOCK;
      if (at + size > this.fileSize) throw this.truncated(`entry ${exp.name}`, exp.blob);
      if (exp.name === 'oci-layout' || exp.name === 'index.json') {
        await this.expectExactly(win, exp.name, at, size, this.exactEntry(exp.name));
        if (exp.name === 'index.json') this.releaseIndex();
      } else if (exp.blob?.kind === 'config') this.locate(exp.blob, at);
      else if (exp.blob) {
        const bytes = await win.bytes(at, size);
        const actual = sha256Digest(bytes);
        // A manifest or index is needed to know what anything needs: a damaged one makes the bundle unreadable.
        if (actual !== exp.blob.digest) throw this.damagedHeadBlob(exp.blob, actual);
        // Parsed now and its bytes not kept (20,000 manifests were ~25 MB): they are read again, and checked again, when asked for.
        // One that does not parse keeps its bytes, so that checkGraph fails on it where it would have.
        try {
          this.parseHeadManifest(exp.blob, bytes);
        } catch {
          this.small.set(exp.blob.digest, Buffer.from(bytes));
        }
        this.locate(exp.blob, at);
      }
      pos = at + size + padding(size);
    }
    return pos;
  }

  /**
   * The layers (and parts) after the head, located by their headers; what the
   * reader of a stream would have failed on is returned to be thrown after the
   * graph check (the order it meets them in), what it would have skipped is
   * listed. Where a layer is due and a later declared one comes instead, only
   * the due one is missing (spec/bundle.md §7 rule 2).
   */
  private async walkTail(win: Window, from: number): Promise<TailWalk> {
    const missing: { due: TailEntry; found: string }[] = [];
    const position = new Map(this.tail.map((t, i) => [t.name, i]));
    // How far to read at each header: on through the small entries that follow (their headers come in the same read), not into a big one.
    const ahead: number[] = new Array<number>(this.tail.length + 1);
    ahead[this.tail.length] = 2 * BLOCK;
    for (let i = this.tail.length - 1; i >= 0; i--) {
      const size = this.tail[i]!.part?.size ?? this.tail[i]!.blob.size;
      ahead[i] = size <= SMALL_ENTRY ? Math.min(WINDOW, BLOCK + size + padding(size) + ahead[i + 1]!) : BLOCK;
    }
    let pos = from;
    let next: { h: Header; at: number } | undefined;
    for (let i = 0; i < this.tail.length; i++) {
      const due = this.tail[i]!;
      const exp: ExpectedEntry = { name: due.name, type: 'file', blob: due.blob, ...(due.part ? { part: due.part } : {}) };
      let found: { h: Header; at: number } | undefined = next;
      next = undefined;
      if (!found) {
        try {
          found = { h: await this.header(win, pos, exp, ahead[i]), at: pos };
        } catch (e) {
          if (isFerryError(e, 'E_BUNDLE_TRUNCATED')) return { missing, cutFrom: i, cutError: () => this.truncated(`entry ${exp.name}`, due.blob, due.part) };
          return { missing, fatal: () => e as FerryError };
        }
      }
      const { h, at } = found;
      if (h.name !== exp.name && h.type === 'file' && (position.get(h.name) ?? -1) > i && !this.seenNames.has(h.name)) {
        missing.push({ due, found: h.name });
        next = found;
        continue;
      }
      const problem = this.entryProblem(exp, h.name, h.type, h.size);
      if (problem) return { missing, fatal: problem };
      const start = at + BLOCK;
      // Content not wholly in the file: this entry and every later one did not arrive (a cut in the padding loses nothing).
      if (start + h.size > this.fileSize) return { missing, cutFrom: i, cutError: () => this.truncated(`entry ${exp.name}`, due.blob, due.part) };
      if (due.part) this.partsAt.set(partKey(due.part), { offset: start, size: h.size });
      else this.locate(due.blob, start);
      pos = start + h.size + padding(h.size);
    }
    return this.checkEnd(win, pos, missing);
  }

  /** After the last declared entry: no further entry, then at least the two zero blocks of the end-of-archive marker and only zeros. */
  private async checkEnd(win: Window, pos: number, missing: { due: TailEntry; found: string }[]): Promise<TailWalk> {
    const end = () => this.truncated('the end-of-archive marker');
    if (pos + BLOCK <= this.fileSize) {
      const block = await win.bytes(pos, BLOCK);
      let extra: Header | null = null;
      try {
        extra = decodeHeader(block, this.where, pos);
      } catch {
        // Not a header: whatever it is, it is data after the last entry (below).
      }
      if (extra) {
        const shown = JSON.stringify(extra.name.slice(0, 200));
        const known = this.seenNames.has(extra.name);
        return { missing, fatal: () => this.invalid(known ? `entry ${shown} appears twice` : `unexpected entry ${shown} after the last declared blob`, { entry: extra.name }) };
      }
    }
    // Trailing zeros are allowed (spec/bundle.md §7.6), anything else is not.
    for (let at = pos; at < this.fileSize; at += 1 << 20) {
      const chunk = await readAt(this.handle, at, Math.min(1 << 20, this.fileSize - at));
      if (chunk.some((x) => x !== 0)) return { missing, fatal: () => this.invalid('data follows the end-of-archive marker') };
    }
    if (this.fileSize - pos < 2 * BLOCK) return { missing, cutFrom: this.tail.length, cutError: end };
    return { missing };
  }

  /** The header at `pos`, where `exp` is due: the file must have it, and it must be an entry a bundle can hold. */
  private async header(win: Window, pos: number, exp: ExpectedEntry, ahead = WINDOW): Promise<Header> {
    if (pos + BLOCK > this.fileSize) throw this.truncated(`entry ${exp.name}`, exp.blob, exp.part);
    // Small entries are read together: the next headers and contents, up to a window.
    const h = decodeHeader(await win.bytes(pos, BLOCK, ahead), this.where, pos);
    if (h === null) throw this.invalid(`an end-of-archive block at byte ${pos}, where ${exp.name} was due`, { entry: exp.name });
    return h;
  }

  /** An entry that must be exactly `want`: its size first (nothing of a longer one is read), then its bytes. */
  private async expectExactly(win: Window, name: string, at: number, size: number, { want, why }: { want: Buffer; why: string }): Promise<void> {
    const shown = JSON.stringify(name);
    if (size !== want.length) throw this.invalid(`${why}: entry ${shown} is ${size} bytes, the metadata implies ${want.length}`, { entry: name, size, expected: want.length });
    for (let done = 0; done < size; done += WINDOW) {
      const chunk = await win.bytes(at + done, Math.min(WINDOW, size - done));
      if (chunk.compare(want, done, done + chunk.length) !== 0) throw this.invalid(`${why}: entry ${shown} differs from it${this.indexEntryAt(want, done, chunk)}`, { entry: name });
    }
  }

  // ------------------------------------------------------------ reading

  /** A manifest whose bytes are read from the file when asked for, and checked against its digest each time. */
  protected override storedManifest(blob: BundleBlob): Manifest {
    const at = this.located(blob.digest);
    return at ? new StoredManifest(this, blob, at.offset) : super.storedManifest(blob);
  }

  /**
   * The bytes of a manifest the head checked, read again: a positioned read of
   * a few KiB, synchronous because a Manifest's bytes are a plain property.
   * Checked against the digest again, since the file may have changed since.
   */
  manifestBytes(blob: BundleBlob, offset: number): Buffer {
    const size = blob.size;
    if (this.closed) throw new FerryError('E_INTERNAL', `${this.where}: manifest ${blob.digest} asked for after the bundle was closed`, { details: { file: this.where, digest: blob.digest } });
    const bytes = Buffer.allocUnsafe(size);
    for (let done = 0; done < size;) {
      let n: number;
      try {
        n = readSync(this.handle.fd, bytes, done, size - done, offset + done);
      } catch (e) {
        throw asBundleError(e, this.where);
      }
      if (n === 0) throw this.changed(offset + done, offset + size);
      done += n;
    }
    const actual = sha256Digest(bytes);
    if (actual !== blob.digest) {
      throw new FerryError('E_DIGEST_MISMATCH', `${this.place}: manifest ${blob.digest} read again hashes to ${actual}: the file changed after it was checked`, {
        hint: 'do not modify or replace the bundle while ferry reads it; run the command again', details: { file: this.where, digest: blob.digest, actual },
      });
    }
    return bytes;
  }

  async getBlob(_repository: string, desc: Descriptor): Promise<Readable> {
    const why = this.unavailable(desc);
    if (why) throw why;
    const at = this.located(desc.digest);
    if (at) return this.range(at.offset, at.size);
    const bytes = this.small.get(desc.digest);
    if (bytes) return Readable.from([bytes], { objectMode: false });
    throw new FerryError('E_BLOB_MISSING', `${this.where}: blob ${desc.digest} is not in the bundle`, {
      hint: 'the bundle does not hold this blob; check the image with `ferry inspect`', details: { file: this.where, digest: desc.digest },
    });
  }

  /** Where a config or layer lies in this file, to be verified in place; undefined when the file cannot give it. */
  blobFile(desc: Descriptor): FileRange | undefined {
    if (this.unavailable(desc)) return undefined;
    const at = this.located(desc.digest);
    return at ? { fd: this.handle.fd, offset: at.offset, size: at.size, short: (pos) => this.changed(pos, at.offset + at.size) } : undefined;
  }

  /** The bytes of one part of a layer cut across volumes, when this file holds it whole. */
  partStream(part: BundlePart): Readable | undefined {
    const at = this.partsAt.get(partKey(part));
    return at ? this.range(at.offset, at.size) : undefined;
  }

  /** Whether the part's entry is in this file, whole. */
  hasPart(part: BundlePart): boolean {
    return this.partsAt.has(partKey(part));
  }

  /** The layer and part entries of this file in file order, as the stream reader lists them. */
  get tailEntries(): readonly TailEntry[] {
    return this.tail;
  }

  private range(offset: number, size: number): Readable {
    return new RangeStream(this.handle, offset, offset + size, { short: (at) => this.changed(at, offset + size) });
  }

  /** The file ends before an entry that was whole when it was opened. */
  private changed(at: number, end: number): FerryError {
    return new FerryError('E_BUNDLE_TRUNCATED', `${this.where} ends at byte ${at}, inside an entry that ended at ${end} when it was opened: the file changed while it was read`, {
      hint: 'do not modify or replace the bundle while ferry reads it; run the command again', details: { file: this.where, offset: at },
    });
  }

  /** Set when the file was cut short (E_BUNDLE_TRUNCATED): what it lost fails alone; this says the file is not whole. */
  override get cutShort(): FerryError | undefined {
    return this.cut;
  }

  /** The layers in stored order, for a consumer that reads front to back (a repair or base read with a stream); the cut last. */
  async *blobs(opts: OpOptions = {}): AsyncGenerator<SequentialBlob> {
    for (const t of this.tail) {
      opts.signal?.throwIfAborted();
      if (t.part || this.lostBlobs.has(t.blob.digest)) continue;
      const descriptor = { digest: t.blob.digest, size: t.blob.size, mediaType: t.blob.mediaType };
      yield { descriptor, stream: await this.getBlob('', descriptor), where: this.place };
    }
    if (this.cut) throw this.cut;
  }

  async checkRest(): Promise<void> {}

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.handle.close().catch(() => undefined);
  }
}

/** A manifest of a bundle file: its bytes are read again when asked for (a class: an object literal with a getter cost ~400 bytes each). */
class StoredManifest implements Manifest {
  constructor(private readonly file: FileBundleSource, private readonly blob: BundleBlob, private readonly offset: number) {}

  get digest(): Digest {
    return this.blob.digest;
  }

  get mediaType(): string {
    return this.blob.mediaType;
  }

  get bytes(): Buffer {
    return this.file.manifestBytes(this.blob, this.offset);
  }
}

/** What walking the tail found: entries missing from the middle, where a cut starts, or what makes the file unreadable. */
interface TailWalk {
  missing: { due: TailEntry; found: string }[];
  cutFrom?: number;
  cutError?: () => FerryError;
  fatal?: () => FerryError;
}

const ZSTD_MAGIC = 0xfd2fb528;

/**
 * Whether `path` can be read at random: a regular file (not a pipe, a device
 * or `/dev/stdin`) that is not zstd-compressed (spec/bundle.md §1: the first
 * four bytes decide). Anything else, and a file that cannot be opened, is left
 * to the reader of streams, which says what is wrong with it.
 */
export async function randomAccessible(path: string): Promise<boolean> {
  let handle: FileHandle | undefined;
  try {
    handle = await open(path, 'r');
    if (!(await handle.stat()).isFile()) return false;
    const magic = await readAt(handle, 0, 4);
    return magic.length < 4 || magic.readUInt32LE(0) !== ZSTD_MAGIC;
  } catch {
    return false;
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

function partKey(part: BundlePart): string {
  return `${part.digest}#${part.index}`;
}

/** Reads beyond what is asked, up to this, so the headers and contents of small entries come in one read. */
const WINDOW = 1 << 20;
/** Entries up to this size are read with the headers around them; a larger one is hopped over. */
const SMALL_ENTRY = 64 * 1024;

/** The last bytes read, kept to answer the next small read from memory. */
class Window {
  private buf: Buffer = Buffer.alloc(0);
  private at = 0;

  constructor(private readonly handle: FileHandle, private readonly size: number) {}

  /** Bytes [at, at + length), read together with up to `ahead` bytes from `at` when not already held. */
  async bytes(at: number, length: number, ahead = length): Promise<Buffer> {
    if (at >= this.at && at + length <= this.at + this.buf.length) return this.buf.subarray(at - this.at, at - this.at + length);
    const read = await readAt(this.handle, at, Math.min(Math.max(length, ahead), this.size - at));
    this.buf = read;
    this.at = at;
    return read.subarray(0, Math.min(length, read.length));
  }
}

interface Header {
  name: string;
  /** `file` and `directory` are what a bundle holds; anything else is named for the message. */
  type: string;
  size: number;
}

const TYPE_NAMES: Record<string, string> = {
  '1': 'a hard link', '2': 'a symbolic link', '3': 'a character device', '4': 'a block device', '6': 'a FIFO', '7': 'a contiguous file',
};

/**
 * One tar header as the stream reader's tar-stream decodes it (name with its
 * ustar prefix, octal or base-256 size, checksum, ustar or GNU magic), refusing
 * what a bundle never holds as tar.ts does; null for a zero block.
 */
function decodeHeader(b: Buffer, where: string, at: number): Header | null {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  if (sum === 8 * 0x20) return null;
  const stored = parseInt(b.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim(), 8);
  if (stored !== sum) throw corrupt(where, at, 'a tar header checksum does not match (the file is damaged or not a tar)');
  if (b.subarray(257, 262).toString('latin1') !== 'ustar') throw corrupt(where, at, 'a tar header is not POSIX ustar');
  const str = (from: number, len: number): string => {
    const field = b.subarray(from, from + len);
    const nul = field.indexOf(0);
    return field.subarray(0, nul < 0 ? len : nul).toString('utf8');
  };
  const prefix = str(345, 155);
  let name = str(0, 100);
  if (prefix) name = `${prefix}/${name}`;
  const flag = String.fromCharCode(b[156]!);
  const size = decodeSize(b.subarray(124, 136), where, at);
  if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
    const what = flag === 'x' || flag === 'g' ? 'a pax extended header' : 'a GNU long-name header';
    throw new FerryError('E_BUNDLE_INVALID', `${where}: the entry at byte ${at} is preceded by ${what}, which bundles never contain`, {
      hint: 'this is not a bundle written by ferry (or it was tampered with); do not use it', details: { file: where, offset: at },
    });
  }
  if (flag === '0' || flag === '\0') return { name, type: name.endsWith('/') ? 'directory' : 'file', size };
  if (flag === '5') return { name, type: 'directory', size: 0 };
  throw new FerryError('E_BUNDLE_INVALID', `${where}: entry ${JSON.stringify(name.slice(0, 200))} is ${TYPE_NAMES[flag] ?? 'of an unknown tar entry type'}; a bundle holds only regular files and two directories`, {
    hint: 'this is not a bundle written by ferry (or it was tampered with); do not use it', details: { file: where, entry: name.slice(0, 200) },
  });
}

function decodeSize(field: Buffer, where: string, at: number): number {
  if (field[0] === 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    if (!Number.isSafeInteger(n)) throw corrupt(where, at, 'a tar header declares a size beyond 2^53 bytes');
    return n;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]*$/.test(text)) throw corrupt(where, at, 'a tar header has an invalid size field');
  return text === '' ? 0 : parseInt(text, 8);
}

function corrupt(where: string, at: number, why: string): FerryError {
  return new FerryError('E_BUNDLE_CORRUPT', `${where}: ${why} (at byte ${at})`, {
    hint: 'the bundle is damaged or not a ferry bundle; copy it again from the exporting side', details: { file: where, offset: at },
  });
}
