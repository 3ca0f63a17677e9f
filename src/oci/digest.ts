import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../errors.js';

/** A sha256 digest that was checked on the way in: `sha256:` + 64 lowercase hex. Safe to build paths from. */
export type Digest = string & { readonly __digest: unique symbol };

const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

export function isDigest(value: unknown): value is Digest {
  return typeof value === 'string' && DIGEST_RE.test(value);
}

/** @param where names the file, image or field the value came from, for the error message. */
export function parseDigest(value: unknown, where = 'digest'): Digest {
  if (isDigest(value)) return value;
  const shown = typeof value === 'string' ? JSON.stringify(value.slice(0, 100)) : typeof value;
  throw new FerryError('E_DIGEST_INVALID', `${where}: ${shown} is not a sha256 digest`, {
    hint: 'ferry accepts only digests of the form sha256:<64 lowercase hex characters>',
    details: { where },
  });
}

export function digestHex(d: Digest): string {
  return d.slice(7);
}

export function sha256Digest(data: Uint8Array | string): Digest {
  return hashDigest(createHash('sha256').update(data));
}

/** The digest a finished sha256 Hash stands for: the one place a Digest is made from hashing rather than parsed. */
export function hashDigest(hash: Hash): Digest {
  return `sha256:${hash.digest('hex')}` as Digest;
}

export interface Digested {
  digest: Digest;
  size: number;
}

/** Stops the hashing pipeline when a capped stream goes over; never leaves digestStream. */
class OverCap extends Error {}

/**
 * Hashes a whole stream, consuming it: the digest and size of what it held.
 * This is hashing, not verifying: a blob that must match a descriptor goes
 * through stream/verify.ts. With `maxBytes`, a longer stream is destroyed at the
 * first chunk over the cap and the answer is undefined (a registry that never
 * stops sending must not hold ferry); `signal` destroys it on abort.
 */
export async function digestStream(source: Readable, opts?: { signal?: AbortSignal | undefined }): Promise<Digested>;
export async function digestStream(source: Readable, opts: { maxBytes: number; signal?: AbortSignal | undefined }): Promise<Digested | undefined>;
export async function digestStream(source: Readable, opts: { maxBytes?: number; signal?: AbortSignal | undefined } = {}): Promise<Digested | undefined> {
  const hash = createHash('sha256');
  const max = opts.maxBytes ?? Infinity;
  let size = 0;
  try {
    await pipeline(source, async (chunks: AsyncIterable<Buffer>) => {
      for await (const chunk of chunks) {
        size += chunk.length;
        if (size > max) throw new OverCap();
        hash.update(chunk);
      }
    }, opts.signal ? { signal: opts.signal } : {});
  } catch (e) {
    if (e instanceof OverCap) return undefined;
    throw e;
  }
  return { digest: hashDigest(hash), size };
}

/** Short form for human output: sha256:0123456789ab */
export function shortDigest(d: string): string {
  return d.slice(0, 19);
}
