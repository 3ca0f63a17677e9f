import { createHash } from 'node:crypto';
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
  return `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;
}

/** Short form for human output: sha256:0123456789ab */
export function shortDigest(d: string): string {
  return d.slice(0, 19);
}
