import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { hashFileRange, type RangeCopy, RemoteHash } from './hash-pool.js';

export interface VerifyTarget {
  digest: Digest;
  size: number;
}

/** Blobs smaller than this are hashed where they are: handing them to a worker costs about as much as hashing them. */
const OFFLOAD_MIN_BYTES = 256 * 1024;

/**
 * The one verifier of the program. Bytes pass through unchanged while they are
 * hashed; the stream fails the moment more bytes arrive than declared (so a
 * hostile source cannot exhaust the disk), and at the end it fails *instead of*
 * ending when size or digest differ, so no destination ever commits bad data.
 *
 * The sha256 of a blob of some size runs on a worker thread (hash-pool.ts)
 * while its bytes flow on, in the same one pass: verifying several blobs uses
 * several cores, and reading and writing overlap hashing. Small blobs, and any
 * blob when the workers are all taken, are hashed here. Where it runs is decided
 * once per blob, on its first chunk; what counts as good does not change.
 * @param where names the image/file the blob belongs to, for the message.
 */
export class VerifyStream extends Transform {
  private hash: Hash | undefined;
  private remote: RemoteHash | undefined;
  private seen = 0;

  /**
   * @param onBytes called with each chunk's length, for progress: cheaper than a
   * second pass-through stream on every blob.
   */
  constructor(private readonly target: VerifyTarget, private readonly where = '', private readonly onBytes?: (n: number) => void) {
    super();
  }

  get bytesSeen(): number {
    return this.seen;
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.target.size) {
      cb(sizeError(this.target, this.seen, this.where, true));
      return;
    }
    if (!this.hash && !this.remote) {
      this.remote = this.target.size >= OFFLOAD_MIN_BYTES ? RemoteHash.start() : undefined;
      if (!this.remote) this.hash = createHash('sha256');
    }
    this.onBytes?.(chunk.length);
    if (this.hash) {
      this.hash.update(chunk);
      cb(null, chunk);
      return;
    }
    let wait: Promise<void> | undefined;
    try {
      wait = this.remote!.update(chunk);
    } catch (e) {
      cb(hashingFailed(this.target, this.where, e));
      return;
    }
    this.push(chunk);
    // The next chunk is taken only when the worker has room for it: memory stays bounded however fast the reads are.
    if (wait) wait.then(() => cb(), (e: unknown) => cb(hashingFailed(this.target, this.where, e)));
    else cb();
  }

  override _flush(cb: TransformCallback): void {
    if (this.seen !== this.target.size) {
      cb(sizeError(this.target, this.seen, this.where, false));
      return;
    }
    const judge = (hex: string): void => {
      const actual = `sha256:${hex}`;
      cb(actual !== this.target.digest ? digestError(this.target, actual, this.where) : undefined);
    };
    if (this.remote) {
      this.remote.digest().then(judge, (e: unknown) => cb(hashingFailed(this.target, this.where, e)));
      return;
    }
    judge((this.hash ?? createHash('sha256')).digest('hex'));
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    this.remote?.drop();
    cb(err);
  }
}

/** Where a blob lies whole in an open file: what verifyInPlace reads. */
export interface FileRange {
  /** The open file; kept open by its owner until the verdict. */
  fd: number;
  offset: number;
  size: number;
  /** The error when the file ends before the range does (it was cut or replaced while open). */
  short(at: number): Error;
}

/**
 * The verifier's verdict on a blob that lies whole in a file, reached without
 * streaming it through this thread: a worker reads and hashes the range
 * (hash-pool.ts). For a destination that keeps nothing of a blob but whether
 * it is good (`ferry verify`). The same judgement as VerifyStream — size,
 * then digest — with the same errors; resolves when the blob is good.
 */
export async function verifyInPlace(range: FileRange, target: VerifyTarget, where = '', onBytes?: (n: number) => void, signal?: AbortSignal): Promise<void> {
  return judgeRange(range, target, where, onBytes, signal);
}

/**
 * A verified copy of a blob that lies whole in a file into `dest`, a file
 * the destination opened and publishes only when this resolves: a worker
 * reads each chunk once, writes it to `dest` and hashes it (hash-pool.ts), so
 * the main thread handles none of the bytes. The judgement is VerifyStream's,
 * with its errors; a failure to write `dest` is rethrown as the file system
 * gave it (code, syscall) for the destination to name its file. When this
 * settles, nothing more is written to `dest`.
 */
export async function copyVerified(range: FileRange, target: VerifyTarget, dest: RangeCopy, where = '', onBytes?: (n: number) => void, signal?: AbortSignal): Promise<void> {
  return judgeRange(range, target, where, onBytes, signal, dest);
}

async function judgeRange(range: FileRange, target: VerifyTarget, where: string, onBytes: ((n: number) => void) | undefined, signal: AbortSignal | undefined, copy?: RangeCopy): Promise<void> {
  // A range is exactly the declared size: it cannot be longer, only the file shorter.
  if (range.size !== target.size) throw sizeError(target, range.size, where, range.size > target.size);
  let result;
  try {
    result = await hashFileRange(range.fd, range.offset, range.size, onBytes, signal, copy);
  } catch (e) {
    if (signal?.aborted || e instanceof FerryError) throw e;
    const err = e as NodeJS.ErrnoException & { side?: string };
    if (err.side === 'write') throw e;
    throw err.syscall ? new FerryError('E_IO', `${prefix(where)}blob ${target.digest}: ${err.message}`, { cause: e, details: { digest: target.digest } }) : hashingFailed(target, where, e);
  }
  if ('short' in result) throw range.short(result.short);
  const actual = `sha256:${result.hex}`;
  if (actual !== target.digest) throw digestError(target, actual, where);
}

/** A hashing worker that died: a bug or a broken machine, not bad bytes. */
function hashingFailed(t: VerifyTarget, where: string, e: unknown): FerryError {
  return new FerryError('E_INTERNAL', `${prefix(where)}blob ${t.digest}: hashing failed: ${(e as Error).message}`, { cause: e });
}

function prefix(where: string): string {
  return where ? `${where}: ` : '';
}

function digestError(t: VerifyTarget, actual: string, where: string): FerryError {
  return new FerryError('E_DIGEST_MISMATCH', `${prefix(where)}blob ${t.digest} hashes to ${actual}`, {
    hint: 'the content was altered or corrupted in transit or at rest; fetch it again from a trusted source',
    details: { digest: t.digest, actual, where },
  });
}

function sizeError(t: VerifyTarget, seen: number, where: string, over: boolean): FerryError {
  const msg = over
    ? `${prefix(where)}blob ${t.digest} is longer than its declared ${t.size} bytes`
    : `${prefix(where)}blob ${t.digest} has ${seen} bytes, expected ${t.size}`;
  return new FerryError('E_SIZE_MISMATCH', msg, {
    hint: over ? 'the source sent more data than the manifest declares; it is damaged or hostile' : 'the data was cut short (truncated file or dropped connection); fetch it again',
    details: { digest: t.digest, expectedSize: t.size, seen, where },
  });
}

/** Hashes a whole stream (consuming it) and returns digest and size. */
export async function digestStream(source: NodeJS.ReadableStream): Promise<{ digest: Digest; size: number }> {
  const hash = createHash('sha256');
  let size = 0;
  for await (const chunk of source as AsyncIterable<Buffer>) {
    hash.update(chunk);
    size += chunk.length;
  }
  return { digest: `sha256:${hash.digest('hex')}` as Digest, size };
}
