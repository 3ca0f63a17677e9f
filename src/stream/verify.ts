import { createHash, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';
import { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';

export interface VerifyTarget {
  digest: Digest;
  size: number;
}

/**
 * The one verifier of the program. Bytes pass through unchanged while they are
 * hashed; the stream fails the moment more bytes arrive than declared (so a
 * hostile source cannot exhaust the disk), and at the end it fails *instead of*
 * ending when size or digest differ, so no destination ever commits bad data.
 * @param where names the image/file the blob belongs to, for the message.
 */
export class VerifyStream extends Transform {
  private readonly hash: Hash = createHash('sha256');
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
    this.hash.update(chunk);
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.seen !== this.target.size) {
      cb(sizeError(this.target, this.seen, this.where, false));
      return;
    }
    const actual = `sha256:${this.hash.digest('hex')}`;
    if (actual !== this.target.digest) {
      cb(new FerryError('E_DIGEST_MISMATCH', `${prefix(this.where)}blob ${this.target.digest} hashes to ${actual}`, {
        hint: 'the content was altered or corrupted in transit or at rest; fetch it again from a trusted source',
        details: { digest: this.target.digest, actual, where: this.where },
      }));
      return;
    }
    cb();
  }
}

function prefix(where: string): string {
  return where ? `${where}: ` : '';
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
