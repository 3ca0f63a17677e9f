import { createHash } from 'node:crypto';
import { type FileHandle, open, readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { writeFileAtomic } from '../../fsys/atomic.js';
import type { Digest } from '../../oci/digest.js';
import { type BundleBlob, type BundleMetadata, type BundlePart, blobEntryName, METADATA_MAX_BYTES, parseMetadata, partEntryName } from './metadata.js';
import { RangeStream } from './range-reader.js';
import { readAt } from '../../fsys/files.js';
import { BLOCK, padding } from './tar.js';

/**
 * Random access to an uncompressed bundle file (spec/serve.md §2): where each
 * blob entry's bytes lie, found from the tar headers alone — one positioned
 * 512-byte read per entry, hopping over the data — and kept beside the bundle
 * as `STEM.ferry-index.json` so the next start reads no header at all. The
 * kept index is never trusted for bytes: it is used only when it names this
 * bundle id, file size and mtime and lists exactly the entries the metadata
 * declares, and each entry's header is read again before its first use.
 */

export const INDEX_FORMAT = 'ferry-entry-index';
export const INDEX_VERSION = 1;
/** A kept index lists one small record per entry: a 10,000-blob bundle's is about 1.5 MB. */
const INDEX_MAX_BYTES = 64 * 1024 * 1024;
const ZSTD_MAGIC = 0xfd2fb528;

/** One blob (or layer part) entry: its content's place in the file. */
export interface IndexedEntry {
  name: string;
  /** Where the content starts (after the 512-byte header). */
  offset: number;
  size: number;
  /** The stored blob it is, or the part of a cut layer. */
  blob: BundleBlob;
  part?: BundlePart;
}

/** What an entry is expected to be, in file order, from the metadata alone. */
interface Expected {
  name: string;
  type: 'file' | 'directory';
  size?: number;
  blob?: BundleBlob;
  part?: BundlePart;
}

export interface EntryIndexOptions {
  /** Where to keep the index when the bundle's folder cannot be written (e.g. `~/.cache/ferry`). */
  cacheDir?: string;
}

/** How the index came to be, for the startup report. */
export interface IndexOrigin {
  /** `kept`: read from a kept index; `built`: from the headers (first start, or the kept one was stale). */
  how: 'kept' | 'built';
  /** Why a kept index was not used, when one existed. */
  stale?: string | undefined;
  /** Where the index is kept now; undefined when neither place could be written. */
  file?: string | undefined;
}

/**
 * An open bundle file and the index of its entries. Holds the file open for
 * its whole life: every read goes through this one descriptor, so nothing the
 * bundle's folder later gains or loses (a swapped-in symlink) is ever opened.
 */
export class BundleFile {
  private readonly checkedHeaders = new Set<string>();

  private constructor(
    readonly path: string,
    private readonly handle: FileHandle,
    readonly size: number,
    readonly mtimeMs: number,
    readonly metadata: BundleMetadata,
    /** Blob and part entries by entry name. */
    readonly entries: ReadonlyMap<string, IndexedEntry>,
    readonly origin: IndexOrigin,
  ) {
    if (origin.how === 'built') for (const name of entries.keys()) this.checkedHeaders.add(name);
  }

  /**
   * Opens `path`, reads its ferry.json, and indexes its entries (kept index or headers).
   * Refuses a zstd bundle: a compressed stream cannot be read at an offset.
   */
  static async open(path: string, opts: EntryIndexOptions = {}): Promise<BundleFile> {
    const where = path;
    let handle: FileHandle;
    try {
      handle = await open(path, 'r');
    } catch (e) {
      throw fileError(e, where);
    }
    try {
      const st = await handle.stat();
      if (!st.isFile()) throw new FerryError('E_USAGE', `${where} is not a regular file`, { hint: 'give the bundle file itself', details: { file: where } });
      const head = await readAt(handle, 0, Math.min(BLOCK, st.size));
      if (head.length >= 4 && head.readUInt32LE(0) === ZSTD_MAGIC) {
        throw new FerryError('E_USAGE', `${where} is a zstd-compressed bundle, which cannot be read at random offsets`, {
          hint: `serve the uncompressed bundle: decompress it once with \`zstd -d ${basename(where)}\` (or export with --compression none) and serve the .tar`,
          details: { file: where },
        });
      }
      const metaHeader = decodeHeader(head, where, 0, st.size);
      if (metaHeader.name !== 'ferry.json' || metaHeader.type !== 'file') {
        throw invalid(where, `the first entry is ${JSON.stringify(metaHeader.name.slice(0, 200))}, not ferry.json`, 'this is not a ferry bundle (a plain OCI archive or docker save tar?); ferry serves only bundles it wrote');
      }
      if (metaHeader.size > METADATA_MAX_BYTES) throw invalid(where, `ferry.json is ${metaHeader.size} bytes, more than the ${METADATA_MAX_BYTES} allowed`);
      if (BLOCK + metaHeader.size > st.size) throw truncated(where, 'ferry.json');
      const metadata = parseMetadata(await readAt(handle, BLOCK, metaHeader.size), where);
      const expected = expectedEntries(metadata);
      const first = BLOCK + metaHeader.size + padding(metaHeader.size);
      const places = indexPlaces(path, metadata, opts.cacheDir);
      const kept = await readKeptIndex(places, metadata, st.size, st.mtimeMs, expected);
      let entries: Map<string, IndexedEntry>;
      let origin: IndexOrigin;
      if (kept.entries) {
        entries = kept.entries;
        origin = { how: 'kept', file: kept.file };
      } else {
        entries = await scanHeaders(handle, where, st.size, first, expected);
        const file = await keepIndex(places, metadata, path, st.size, st.mtimeMs, [...entries.values()]);
        origin = { how: 'built', ...(kept.stale ? { stale: kept.stale } : {}), ...(file ? { file } : {}) };
      }
      return new BundleFile(path, handle, st.size, st.mtimeMs, metadata, entries, origin);
    } catch (e) {
      await handle.close().catch(() => undefined);
      throw fileError(e, where);
    }
  }

  /** The entry holding `digest` whole, if this file holds it. */
  wholeEntry(digest: Digest): IndexedEntry | undefined {
    return this.entries.get(blobEntryName(digest));
  }

  /** Every part entry this file holds. */
  partEntries(): IndexedEntry[] {
    return [...this.entries.values()].filter((e) => e.part !== undefined);
  }

  /**
   * Before an entry's first use: its header, read again, is still the one the
   * index describes, and the file is the one indexed (same size and mtime). A
   * bundle edited or replaced while being served fails here instead of
   * serving other bytes under a verified name.
   */
  async checkEntry(entry: IndexedEntry): Promise<void> {
    const st = await this.handle.stat();
    if (st.size !== this.size || st.mtimeMs !== this.mtimeMs) {
      throw new FerryError('E_BUNDLE_INVALID', `${this.path} changed while being served (size or modification time differs from when it was opened)`, {
        hint: 'a bundle must not be modified while it is served; restart `ferry serve` on the intended file', details: { file: this.path },
      });
    }
    if (this.checkedHeaders.has(entry.name)) return;
    const h = decodeHeader(await readAt(this.handle, entry.offset - BLOCK, BLOCK), this.path, entry.offset - BLOCK, this.size);
    if (h.name !== entry.name || h.type !== 'file' || h.size !== entry.size) {
      throw invalid(this.path, `the kept index places ${entry.name} at byte ${entry.offset - BLOCK}, where the header says ${JSON.stringify(h.name.slice(0, 200))} (${h.size} bytes)`,
        'the index beside the bundle does not belong to it; delete STEM.ferry-index.json and start again');
    }
    this.checkedHeaders.add(entry.name);
  }

  /** Bytes [start, end] (inclusive) of an entry's content; unverified. */
  read(entry: IndexedEntry, start: number, end: number): Readable {
    if (start < 0 || end >= entry.size || start > end) throw new FerryError('E_INTERNAL', `${this.path}: range ${start}-${end} outside ${entry.name} (${entry.size} bytes)`);
    return new RangeStream(this.handle, entry.offset + start, entry.offset + end + 1, { chunk: CHUNK });
  }

  /** The whole content of a small entry (a manifest, config or metadata-sized blob). */
  async readWhole(entry: IndexedEntry): Promise<Buffer> {
    await this.checkEntry(entry);
    return readAt(this.handle, entry.offset, entry.size);
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/** serve answers many clients at once: smaller reads than a copy's keep each response's buffer small. */
const CHUNK = 256 * 1024;

// ------------------------------------------------------------ tar headers

interface Header {
  name: string;
  type: 'file' | 'directory' | 'other';
  size: number;
}

/**
 * One ustar header, decoded as spec/bundle.md §2.1 writes it: name without
 * prefix, octal or base-256 size, checksum, `ustar` magic. Anything else is
 * what a bundle never holds.
 */
function decodeHeader(b: Buffer, where: string, at: number, fileSize: number): Header {
  if (b.length < BLOCK) throw truncated(where, `the header at byte ${at}`);
  if (b.every((x) => x === 0)) throw invalid(where, `an end-of-archive block at byte ${at}, where an entry was due`);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  const stored = parseInt(b.subarray(148, 156).toString('latin1').replace(/[\0 ]+$/, '').trim(), 8);
  if (stored !== sum) {
    throw new FerryError('E_BUNDLE_CORRUPT', `${where}: the tar header at byte ${at} has a wrong checksum (the file is damaged or not a tar)`, {
      hint: 'the bundle is damaged; copy it again from the exporting side', details: { file: where, offset: at },
    });
  }
  if (b.subarray(257, 262).toString('latin1') !== 'ustar') throw invalid(where, `the tar header at byte ${at} is not POSIX ustar`);
  const nul = b.indexOf(0, 0);
  const name = b.subarray(0, nul < 0 || nul > 100 ? 100 : nul).toString('utf8');
  if (b[345] !== 0) throw invalid(where, `the tar header at byte ${at} uses a name prefix, which bundles never do`);
  const flag = String.fromCharCode(b[156]!);
  const type = flag === '0' || flag === '\0' ? 'file' : flag === '5' ? 'directory' : 'other';
  const size = decodeSize(b.subarray(124, 136), where, at);
  if (type === 'file' && at + BLOCK + size > fileSize) throw truncated(where, JSON.stringify(name.slice(0, 200)));
  return { name, type, size };
}

function decodeSize(field: Buffer, where: string, at: number): number {
  if (field[0] === 0x80) {
    let n = 0;
    for (let i = 1; i < field.length; i++) n = n * 256 + field[i]!;
    if (!Number.isSafeInteger(n)) throw invalid(where, `the tar header at byte ${at} declares a size beyond 2^53 bytes`);
    return n;
  }
  const text = field.toString('latin1').replace(/[\0 ]+$/, '').trim();
  if (!/^[0-7]*$/.test(text)) throw invalid(where, `the tar header at byte ${at} has an invalid size field`);
  return text === '' ? 0 : parseInt(text, 8);
}

// ------------------------------------------------------------ what the file must hold

/**
 * The entries after ferry.json in file order, as the reader expects them
 * (spec/bundle.md §2, §9.3): layout files, the two directories, the
 * manifests and configs, then layers and parts merged by stored position.
 */
function expectedEntries(meta: BundleMetadata): Expected[] {
  const held = meta.volume ? new Set<string>(meta.volume.blobs) : undefined;
  const stored = held ? meta.blobs.filter((b) => held.has(b.digest)) : meta.blobs;
  const pos = new Map(meta.blobs.map((b, i) => [b.digest as string, i]));
  const byDigest = new Map(meta.blobs.map((b) => [b.digest as string, b]));
  const head = stored.filter((b) => b.kind !== 'layer').map((blob) => ({ name: blobEntryName(blob.digest), type: 'file' as const, size: blob.size, blob }));
  const tail = [
    ...stored.filter((b) => b.kind === 'layer').map((blob) => ({ name: blobEntryName(blob.digest), type: 'file' as const, size: blob.size, blob })),
    ...(meta.volume?.parts ?? []).map((part) => ({ name: partEntryName(part.digest, part.index), type: 'file' as const, size: part.size, blob: byDigest.get(part.digest)!, part })),
  ].sort((a, b) => pos.get(a.blob.digest)! - pos.get(b.blob.digest)!);
  return [
    { name: 'oci-layout', type: 'file' }, { name: 'index.json', type: 'file' },
    { name: 'blobs/', type: 'directory' }, { name: 'blobs/sha256/', type: 'directory' },
    ...head, ...tail,
  ];
}

/**
 * Reads every header from `first` on, each exactly where the previous entry's
 * padded content ended, and checks it is the entry expected there; then the
 * end-of-archive marker and nothing but zeros to the end of the file.
 */
async function scanHeaders(handle: FileHandle, where: string, fileSize: number, first: number, expected: Expected[]): Promise<Map<string, IndexedEntry>> {
  const out = new Map<string, IndexedEntry>();
  let pos = first;
  for (const exp of expected) {
    if (pos + BLOCK > fileSize) throw truncated(where, exp.name, exp.blob);
    const h = decodeHeader(await readAt(handle, pos, BLOCK), where, pos, fileSize);
    if (h.name !== exp.name || h.type !== exp.type) {
      throw invalid(where, `${JSON.stringify(h.name.slice(0, 200))} (${h.type}) at byte ${pos}, where ${exp.name} was expected`, undefined, { entry: h.name.slice(0, 200), expected: exp.name });
    }
    const size = h.type === 'directory' ? 0 : h.size;
    if (exp.size !== undefined && size !== exp.size) {
      throw new FerryError('E_SIZE_MISMATCH', `${where}: entry ${exp.name} has ${size} bytes, the metadata declares ${exp.size}`, {
        hint: 'the bundle is damaged or was altered; copy it again', details: { file: where, ...(exp.blob ? { digest: exp.blob.digest } : {}) },
      });
    }
    if (exp.blob) out.set(exp.name, { name: exp.name, offset: pos + BLOCK, size, blob: exp.blob, ...(exp.part ? { part: exp.part } : {}) });
    pos += BLOCK + size + padding(size);
  }
  if (pos + 2 * BLOCK > fileSize) throw truncated(where, 'the end-of-archive marker');
  // Trailing zeros are allowed (spec/bundle.md §7.6); anything else after the last entry is not.
  for (let at = pos; at < fileSize; at += 1 << 20) {
    const chunk = await readAt(handle, at, Math.min(1 << 20, fileSize - at));
    if (chunk.some((x) => x !== 0)) throw invalid(where, `data follows the end-of-archive marker (after byte ${pos})`);
  }
  return out;
}

// ------------------------------------------------------------ the kept index

/** Beside the bundle (`rel.tar` → `rel.ferry-index.json`), and the cache fallback for read-only folders. */
function indexPlaces(path: string, meta: BundleMetadata, cacheDir: string | undefined): string[] {
  const abs = resolve(path);
  const stem = basename(abs).replace(/\.tar$/, '');
  const places = [join(dirname(abs), `${stem}.ferry-index.json`)];
  if (cacheDir) {
    const key = createHash('sha256').update(`${abs}\0${meta.bundleId}\0${meta.volume?.index ?? ''}`).digest('hex').slice(0, 32);
    places.push(join(cacheDir, 'serve-index', `${key}.json`));
  }
  return places;
}

interface KeptIndex {
  format: string;
  version: number;
  bundle: string;
  bundleId: string;
  volume: number | null;
  size: number;
  mtimeMs: number;
  entries: [name: string, offset: number][];
}

/**
 * The first kept index that describes this very file: same bundle id and
 * volume, size and mtime, and exactly the expected entries in order with
 * offsets that are possible (after one another, inside the file). Anything
 * else is stale, and the reason is reported.
 */
async function readKeptIndex(places: string[], meta: BundleMetadata, size: number, mtimeMs: number, expected: Expected[]): Promise<{ entries?: Map<string, IndexedEntry>; file?: string; stale?: string }> {
  let stale: string | undefined;
  for (const file of places) {
    let text: string;
    try {
      const bytes = await readFile(file);
      if (bytes.length > INDEX_MAX_BYTES) {
        stale ??= `${file} is larger than any index`;
        continue;
      }
      text = bytes.toString('utf8');
    } catch {
      continue;
    }
    const why = (reason: string) => {
      stale ??= `${file}: ${reason}`;
    };
    let doc: KeptIndex;
    try {
      doc = JSON.parse(text) as KeptIndex;
    } catch {
      why('not JSON');
      continue;
    }
    if (doc?.format !== INDEX_FORMAT || doc.version !== INDEX_VERSION || !Array.isArray(doc.entries)) { why('not a ferry entry index of this version'); continue; }
    if (doc.bundleId !== meta.bundleId || doc.volume !== (meta.volume?.index ?? null)) { why('made for another bundle'); continue; }
    if (doc.size !== size || doc.mtimeMs !== mtimeMs) { why('the bundle file changed since it was made (size or modification time)'); continue; }
    const blobs = expected.filter((e) => e.blob);
    if (doc.entries.length !== blobs.length) { why('lists other entries than the metadata declares'); continue; }
    const entries = new Map<string, IndexedEntry>();
    let last = 0;
    let ok = true;
    for (const [i, exp] of blobs.entries()) {
      const rec = doc.entries[i];
      const offset = Array.isArray(rec) ? rec[1] : undefined;
      if (!Array.isArray(rec) || rec[0] !== exp.name || typeof offset !== 'number' || !Number.isSafeInteger(offset) || offset < last + BLOCK || offset % BLOCK !== 0 || offset + exp.size! > size) {
        ok = false;
        break;
      }
      entries.set(exp.name, { name: exp.name, offset, size: exp.size!, blob: exp.blob!, ...(exp.part ? { part: exp.part } : {}) });
      last = offset + exp.size! + padding(exp.size!);
    }
    if (!ok) { why('its entries do not match the metadata'); continue; }
    return { entries, file };
  }
  return stale ? { stale } : {};
}

/** Writes the index beside the bundle, else in the cache; returns where, or undefined when neither could be written. */
async function keepIndex(places: string[], meta: BundleMetadata, path: string, size: number, mtimeMs: number, entries: IndexedEntry[]): Promise<string | undefined> {
  const doc: KeptIndex = {
    format: INDEX_FORMAT, version: INDEX_VERSION, bundle: basename(path), bundleId: meta.bundleId, volume: meta.volume?.index ?? null,
    size, mtimeMs, entries: entries.map((e) => [e.name, e.offset]),
  };
  const text = `${JSON.stringify(doc)}\n`;
  for (const file of places) {
    try {
      await writeFileAtomic(file, text);
      return file;
    } catch {
      // A read-only medium or folder: try the next place.
    }
  }
  return undefined;
}

// ------------------------------------------------------------ helpers

function invalid(where: string, why: string, hint?: string, details: Record<string, unknown> = {}): FerryError {
  return new FerryError('E_BUNDLE_INVALID', `${where}: ${why}`, {
    hint: hint ?? 'this is not an intact ferry bundle (damaged, hand-made or tampered with); do not use it', details: { file: where, ...details },
  });
}

function truncated(where: string, what: string, blob?: BundleBlob): FerryError {
  return new FerryError('E_BUNDLE_TRUNCATED', `${where}: the bundle ends before ${blob ? `blob ${blob.digest}` : what}`, {
    hint: 'the file is incomplete (interrupted copy or full disk); copy it again and compare its size with the exporting side',
    details: { file: where, entry: what, ...(blob ? { digest: blob.digest } : {}) },
  });
}

function fileError(e: unknown, where: string): unknown {
  if (e instanceof FerryError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return new FerryError('E_NOT_FOUND', `${where}: no such file`, { hint: 'check the bundle path', details: { file: where }, cause: e });
  if (err?.code && err.syscall) return new FerryError('E_IO', `${where}: ${err.message}`, { cause: e, details: { file: where } });
  return e;
}
