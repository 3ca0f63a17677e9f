import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asFerryError, type FerryError, isFerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import { VerifyStream } from '../stream/verify.js';
import type { BlobReader, StoredBlob } from './content.js';

/**
 * The rule that no byte goes out unverified without the client noticing
 * (spec/serve.md §3). A blob is *verified* once a complete read of it hashed
 * to its digest with its size; verified blobs are then read straight from the
 * file. The first whole-blob GET of an unverified blob streams through the one
 * verifier and holds back its last chunk until the digest is confirmed: on a
 * mismatch the response is cut short, so no client ever receives a complete
 * unverified blob. A Range request for an unverified blob first verifies the
 * whole blob (one read shared by every request waiting for it). A blob that
 * fails is remembered and never served again.
 */
export class VerifiedBlobs {
  private readonly verified: Set<Digest>;
  private readonly failed = new Map<Digest, FerryError>();
  private readonly checking = new Map<Digest, Promise<void>>();

  constructor(private readonly reader: BlobReader, alreadyVerified: Iterable<Digest>, private readonly onFailure: (digest: Digest, error: FerryError) => void) {
    this.verified = new Set(alreadyVerified);
  }

  get verifiedCount(): number {
    return this.verified.size;
  }

  /** Blobs that failed verification, with why. */
  failures(): { digest: Digest; error: FerryError }[] {
    return [...this.failed].map(([digest, error]) => ({ digest, error }));
  }

  failure(digest: Digest): FerryError | undefined {
    return this.failed.get(digest);
  }

  isVerified(digest: Digest): boolean {
    return this.verified.has(digest);
  }

  /**
   * The streams a whole-blob response is piped through, source first: the
   * file's bytes alone once verified, else through the verifier and the
   * last-chunk hold-back.
   */
  async whole(blob: StoredBlob): Promise<Readable[]> {
    const source = blob.size === 0 ? Readable.from([]) : await this.reader.read(blob, 0, blob.size - 1);
    if (this.verified.has(blob.digest)) return [source];
    const verify = new VerifyStream(blob, this.reader.description);
    verify.once('error', (e) => this.judge(blob.digest, e));
    // 'end' comes only after the verifier's flush found digest and size right.
    verify.once('end', () => this.verified.add(blob.digest));
    return [source, verify, new HoldBackLast()];
  }

  /** Bytes [start, end] of a blob, verifying the whole blob first if it is not yet. */
  async range(blob: StoredBlob, start: number, end: number): Promise<Readable> {
    await this.ensureVerified(blob);
    return this.reader.read(blob, start, end);
  }

  /** Verifies the whole blob unless it is; concurrent callers share one read. Rejects with the failure. */
  async ensureVerified(blob: StoredBlob): Promise<void> {
    const failed = this.failed.get(blob.digest);
    if (failed) throw failed;
    if (this.verified.has(blob.digest)) return;
    let pending = this.checking.get(blob.digest);
    if (!pending) {
      pending = (async () => {
        const source = blob.size === 0 ? Readable.from([]) : await this.reader.read(blob, 0, blob.size - 1);
        const verify = new VerifyStream(blob, this.reader.description);
        try {
          await pipeline(source, verify, new PassThrough().resume());
          this.verified.add(blob.digest);
        } catch (e) {
          this.judge(blob.digest, e);
          throw asFerryError(e);
        }
      })().finally(() => this.checking.delete(blob.digest));
      this.checking.set(blob.digest, pending);
    }
    await pending;
  }

  /** A digest or size mismatch condemns the blob; anything else (a client gone, an I/O hiccup) does not. */
  private judge(digest: Digest, e: unknown): void {
    if (!isFerryError(e, 'E_DIGEST_MISMATCH') && !isFerryError(e, 'E_SIZE_MISMATCH')) return;
    if (this.failed.has(digest)) return;
    this.verified.delete(digest);
    this.failed.set(digest, e);
    this.onFailure(digest, e);
  }
}

/**
 * Passes chunks on one behind: the last one goes out only when the stream
 * upstream ended cleanly (the verifier fails instead of ending on a
 * mismatch, and then this stream is destroyed with the held chunk).
 */
class HoldBackLast extends Transform {
  private held: Buffer | undefined;

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    const out = this.held;
    this.held = chunk;
    cb(null, out);
  }

  override _flush(cb: TransformCallback): void {
    cb(null, this.held);
  }
}
