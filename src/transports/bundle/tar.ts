import { Readable, Transform, type TransformCallback } from 'node:stream';
import tar from 'tar-stream';
import { FerryError } from '../../errors.js';
import { writable } from '../../stream/drain.js';

/**
 * The bundle's tar framing on top of tar-stream. tar-stream encodes and
 * decodes the headers; this module adds what a bundle needs beyond a plain
 * tar: header fields fixed so equal content gives equal bytes (writer), and a
 * reader that refuses everything a bundle never contains — links, devices,
 * extension headers, gaps between entries, data after the end — instead of
 * interpreting it (spec/bundle.md §2.1, §7).
 */

export const BLOCK = 512;

type Sink = ReturnType<tar.Pack['entry']>;
type Source = tar.Extract extends AsyncIterable<infer S> ? S : never;

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

// ---------------------------------------------------------------- writing

/** tar-stream writes mtime as `seconds | 0`: a later time would wrap around, so it is refused. */
const MTIME_MAX = 0x7fffffff;

/**
 * Writes entries through tar-stream's pack with every header field fixed by
 * spec/bundle.md §2.1. `stream` is the archive as a Node stream; entries are
 * added one at a time (each call resolves when its bytes are in the archive,
 * so back-pressure from `stream` reaches the blob being read).
 */
export class TarWriter {
  private readonly pack = tar.pack();
  readonly stream: Readable;

  constructor(private readonly mtime: number) {
    if (!Number.isInteger(mtime) || mtime < 0 || mtime > MTIME_MAX) {
      throw new FerryError('E_USAGE', `bundle time ${mtime} s is outside 1970-01-01 … 2038-01-19, which bundle tar headers cannot hold`, {
        hint: 'set SOURCE_DATE_EPOCH (or the created time) to a time in that range',
      });
    }
    this.stream = Readable.from(this.pack, { objectMode: false, highWaterMark: 1 << 20 });
  }

  private header(name: string, type: 'file' | 'directory', size: number): tar.Header {
    return {
      name, type, size,
      mode: type === 'directory' ? 0o755 : 0o644,
      uid: 0, gid: 0, uname: '', gname: '', linkname: '', devmajor: 0, devminor: 0,
      mtime: new Date(this.mtime * 1000),
    };
  }

  /** A small entry held in memory (metadata, layout files, manifests). */
  file(name: string, bytes: Buffer): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pack.entry(this.header(name, 'file', bytes.length), bytes, (err) => (err ? reject(err) : resolve()));
    });
  }

  directory(name: string): Promise<void> {
    return new Promise((resolve, reject) => {
      this.pack.entry(this.header(name, 'directory', 0), (err) => (err ? reject(err) : resolve())).end(undefined);
    });
  }

  /** A blob streamed into the archive; `body` must yield exactly `size` bytes. */
  async fileFrom(name: string, size: number, body: AsyncIterable<Buffer>): Promise<void> {
    let sink!: Sink;
    const done = new Promise<void>((resolve, reject) => {
      sink = this.pack.entry(this.header(name, 'file', size), (err) => (err ? reject(err) : resolve()));
    });
    done.catch(() => undefined); // awaited below; this only keeps an early failure from being unhandled
    sink.on('error', () => undefined); // the entry callback above reports it
    try {
      for await (const chunk of body) {
        if (!sink.write(chunk)) await writable(sink);
        // The archive failed (output error, abort): `done` carries why.
        if (sink.destroying) break;
      }
      if (!sink.destroying) sink.end(undefined);
    } catch (e) {
      sink.destroy(e as Error);
      throw e;
    }
    await done;
  }

  /** Writes the end-of-archive marker; `stream` ends after it. */
  finalize(): void {
    this.pack.finalize();
  }

  /** Fails the archive: `stream` errors with `err`. */
  destroy(err: Error): void {
    this.pack.destroy(err);
  }
}

// ---------------------------------------------------------------- reading

export interface TarEntry {
  name: string;
  type: 'file' | 'directory';
  size: number;
  body: EntryStream;
}

/**
 * What the reader says when the archive ends too early: the caller knows which
 * entry was due. `cause` is the input's own error when the input ended by failing
 * with a truncation (a zstd stream that stops inside a frame).
 */
export type Truncated = (cause?: FerryError) => FerryError;

const TYPE_NAMES: Record<string, string> = {
  link: 'a hard link', symlink: 'a symbolic link', 'character-device': 'a character device', 'block-device': 'a block device',
  fifo: 'a FIFO', 'contiguous-file': 'a contiguous file',
};

/**
 * Entries of a tar read front to back through tar-stream's extract, with the
 * checks a bundle needs on top: only regular files and directories; each
 * header exactly where the previous entry ended (so no pax or GNU extension
 * header, global header or stray end-of-archive block hides between
 * entries); and at the end, at least the two zero blocks of the
 * end-of-archive marker and nothing but zeros after them.
 */
export class TarReader {
  private readonly extract = tar.extract();
  private readonly entries: AsyncIterator<Source>;
  private readonly tap = new ByteTap();
  private readonly feeding: Promise<void>;
  /** Where the next header must start: the end of the previous entry. */
  private pos = 0;
  private current: EntryStream | undefined;
  /**
   * How the input ended, when it failed (I/O, a cut or corrupt zstd stream). The
   * bytes that came before the failure are still read in order: a cut input
   * hands over every whole entry it carried, and only then does the archive end.
   */
  private inputError: FerryError | Error | undefined;

  constructor(input: Readable, private readonly where: string) {
    this.entries = this.extract[Symbol.asyncIterator]();
    this.feeding = new Promise<void>((resolve) => {
      input.on('error', (e) => {
        this.inputError ??= e;
        input.unpipe(this.tap);
        this.tap.end();
      });
      input.pipe(this.tap);
      this.tap.on('error', (e) => this.extract.destroy(e));
      this.tap.on('data', (c: Buffer) => {
        if (!this.extract.write(c)) this.tap.pause();
      });
      this.extract.on('drain', () => this.tap.resume());
      this.tap.on('end', () => {
        this.extract.end(undefined);
        resolve();
      });
      this.extract.on('close', () => resolve());
    });
  }

  /**
   * The next entry, or null at the end of the archive. The previous entry's
   * body must have been finished (read or drained) first.
   */
  async next(truncated: Truncated): Promise<TarEntry | null> {
    if (this.current) await this.current.finish();
    this.current = undefined;
    let r: IteratorResult<Source>;
    try {
      r = await this.entries.next();
    } catch (e) {
      // A cut inside a header block is the same as a cut before it.
      if (isEndOfData(e)) return this.ended(truncated);
      throw this.tarError(e, truncated);
    }
    if (r.done) return this.ended(truncated);
    const src = r.value;
    const h = src.header;
    const shown = JSON.stringify(h.name.slice(0, 200));
    if (h.type !== 'file' && h.type !== 'directory') {
      throw new FerryError('E_BUNDLE_INVALID', `${this.where}: entry ${shown} is ${TYPE_NAMES[h.type as string] ?? 'of an unknown tar entry type'}; a bundle holds only regular files and two directories`, {
        hint: 'this is not a bundle written by ferry (or it was tampered with); do not use it',
        details: { file: this.where, entry: h.name.slice(0, 200) },
      });
    }
    if (src.offset !== this.pos) {
      const what = h.pax ? 'a pax extended header' : `${src.offset - this.pos} bytes of extension headers or zero blocks`;
      throw new FerryError('E_BUNDLE_INVALID', `${this.where}: entry ${shown} is preceded by ${what}, which bundles never contain`, {
        hint: 'this is not a bundle written by ferry (or it was tampered with); do not use it',
        details: { file: this.where, entry: h.name.slice(0, 200) },
      });
    }
    // tar-stream does not skip a directory's data; neither does a bundle have any.
    const size = h.type === 'directory' ? 0 : h.size;
    this.pos = src.offset + BLOCK + size + padding(size);
    this.current = new EntryStream(src, (e) => this.tarError(e, truncated));
    return { name: h.name, type: h.type, size, body: this.current };
  }

  /** The archive data ended: that is the end of the entries, unless the input failed for another reason than a cut. */
  private ended(truncated: Truncated): null {
    const failed = this.inputError;
    if (failed && !isTruncation(failed)) throw this.tarError(failed, truncated);
    return null;
  }

  /** Bytes of archive received so far (after decompression): where the data ends, once it has. */
  get received(): number {
    return this.tap.total;
  }

  /**
   * After next() returned null: the archive must have ended with the
   * end-of-archive marker, followed by nothing but zeros.
   */
  async checkEnd(truncated: Truncated): Promise<void> {
    await this.feeding;
    const failed = this.inputError;
    if (failed) throw isTruncation(failed) ? truncated(failed) : this.tarError(failed, truncated);
    if (this.tap.total - this.pos < 2 * BLOCK) throw truncated();
    if (this.tap.lastNonZeroEnd > this.pos) {
      throw new FerryError('E_BUNDLE_INVALID', `${this.where}: data follows the end-of-archive marker`, {
        hint: 'this is not an intact ferry bundle (damaged, hand-made or tampered with); do not use it', details: { file: this.where },
      });
    }
  }

  async close(): Promise<void> {
    this.extract.destroy();
    this.tap.destroy();
    await this.entries.return?.().catch(() => undefined);
  }

  /**
   * tar-stream's errors (plain Errors identified by message) as FerryErrors
   * naming the bundle. The end of the data is the input's own failure when
   * there was one: a cut zstd stream is a truncation, corrupt data is not.
   */
  private tarError(e: unknown, truncated: Truncated): Error {
    if (isEndOfData(e) && this.inputError) e = this.inputError;
    if (isTruncation(e)) return truncated(e);
    return tarError(e, this.where, truncated);
  }
}

function isTruncation(e: unknown): e is FerryError {
  return e instanceof FerryError && e.code === 'E_BUNDLE_TRUNCATED';
}

/**
 * One entry's body as a Node stream, pulled from tar-stream's entry on
 * demand. Destroying it does not touch the archive (destroying tar-stream's
 * entry would end the whole extraction); finish() drains what is left so
 * the archive can move on to the next entry.
 */
export class EntryStream extends Readable {
  /** Every byte of the entry's content arrived (whether or not the consumer read it). */
  complete = false;
  private wanted = false;
  private discarding = false;
  private failure: Error | undefined;
  private readonly ended: Promise<void>;

  constructor(private readonly src: Source, fail: (e: unknown) => Error) {
    super({ highWaterMark: 1 << 20 });
    this.ended = new Promise<void>((resolve, reject) => {
      src.on('end', () => {
        this.complete = true;
        resolve();
        if (!this.discarding && !this.destroyed) this.push(null);
      });
      src.on('error', (e: unknown) => {
        const err = fail(e);
        reject(err);
        // Nobody reading yet (or any more, after close()): keep it for the next read instead of an uncaught 'error'.
        if (this.destroyed) return;
        if (this.listenerCount('error') > 0) this.destroy(err);
        else this.failure = err;
      });
    });
    this.ended.catch(() => undefined); // surfaced through the stream or finish()
    src.on('readable', () => this.pump());
  }

  override _read(): void {
    if (this.failure) {
      this.destroy(this.failure);
      return;
    }
    this.wanted = true;
    this.pump();
  }

  private pump(): void {
    while (this.wanted || this.discarding) {
      const chunk = this.src.read() as Buffer | null;
      if (chunk === null) return;
      if (!this.discarding) this.wanted = this.push(chunk);
    }
  }

  /** Reads and discards whatever the consumer left unread; rejects if the archive failed inside this entry. */
  async finish(): Promise<void> {
    this.discarding = true;
    this.pump();
    await this.ended;
  }
}

/** Counts the bytes fed to the extractor and where the last non-zero byte was, for the end-of-archive check. */
class ByteTap extends Transform {
  total = 0;
  lastNonZeroEnd = 0;

  constructor() {
    super({ highWaterMark: 1 << 20 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const nz = lastNonZero(chunk);
    if (nz > 0) this.lastNonZeroEnd = this.total + nz;
    this.total += chunk.length;
    cb(null, chunk);
  }
}

const ZEROS = Buffer.alloc(64 * 1024);

/** Index after the last non-zero byte of `b` (0 if all zero); compares natively block by block from the end. */
function lastNonZero(b: Buffer): number {
  let end = b.length;
  while (end > 0) {
    const start = Math.max(0, end - ZEROS.length);
    if (!b.subarray(start, end).equals(ZEROS.subarray(0, end - start))) {
      for (let i = end - 1; i >= start; i--) if (b[i] !== 0) return i + 1;
    }
    end = start;
  }
  return 0;
}

function isEndOfData(e: unknown): boolean {
  return e instanceof Error && !(e instanceof FerryError) && e.message === 'Unexpected end of data';
}

/** tar-stream's errors (plain Errors identified by message) as FerryErrors naming the bundle. */
function tarError(e: unknown, where: string, truncated: Truncated): Error {
  if (!(e instanceof Error)) return new Error(String(e));
  if (e instanceof FerryError) return e;
  if ((e as NodeJS.ErrnoException).syscall) return e; // I/O: the caller names it
  if (isEndOfData(e)) return truncated();
  const why = e.message.startsWith('Invalid tar header. Maybe') ? 'a tar header checksum does not match (the file is damaged or not a tar)'
    : e.message === 'Invalid tar header: unknown format.' ? 'a tar header is not POSIX ustar'
      : e.message === 'Invalid header' ? 'a tar header has an invalid size field'
        : `the tar stream is invalid (${e.message})`;
  return new FerryError('E_BUNDLE_CORRUPT', `${where}: ${why}`, {
    hint: 'the bundle is damaged or not a ferry bundle; copy it again from the exporting side', cause: e, details: { file: where },
  });
}
