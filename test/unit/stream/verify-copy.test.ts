// The verified copy of a blob that lies in a file (import from a bundle file): a worker
// reads each chunk once, writes it into the destination's file and hashes it. The same
// verdicts as the verifier's stream, the copy byte-exact, and a failure to write the
// copy reported as the file system's error (for the destination to name its file).
import { createHash, randomBytes } from 'node:crypto';
import { open, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../../src/errors.js';
import type { Digest } from '../../../src/oci/digest.js';
import * as pool from '../../../src/stream/hash-pool.js';
import { copyVerified, type FileRange } from '../../../src/stream/verify.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

const MiB = 1024 * 1024;
let tmp: TempDir;
/** A "bundle": 1000 bytes of something else, then the blob, then more. */
let src: string;
const blob = randomBytes(5 * MiB + 321);
const digest = `sha256:${createHash('sha256').update(blob).digest('hex')}` as Digest;
const OFFSET = 1000;

beforeAll(async () => {
  tmp = makeTempDir('ferry-verify-copy-');
  src = join(tmp.path, 'bundle');
  await writeFile(src, Buffer.concat([randomBytes(OFFSET), blob, randomBytes(777)]));
});
afterAll(async () => tmp?.cleanup());

/** Copies the blob's range of `file` into a new file; the verdict's error code ('ok' when good) and the copy's bytes. */
async function copyOf(file: string, target: { digest: Digest; size: number }, name: string, opts: { readOnlyDest?: boolean; signal?: AbortSignal; size?: number } = {}) {
  const from = await open(file, 'r');
  const destPath = join(tmp.path, name);
  await writeFile(destPath, '');
  const dest = await open(destPath, opts.readOnlyDest ? 'r' : 'r+');
  const range: FileRange = {
    fd: from.fd, offset: OFFSET, size: opts.size ?? blob.length,
    short: (at) => new FerryError('E_BUNDLE_TRUNCATED', `ends at ${at}`),
  };
  let error: unknown;
  try {
    await copyVerified(range, target, { fd: dest.fd }, 'test', undefined, opts.signal);
  } catch (e) {
    error = e;
  } finally {
    await dest.close();
    await from.close();
  }
  const code = error === undefined ? 'ok' : error instanceof FerryError ? error.code : `raw ${(error as NodeJS.ErrnoException).code}`;
  return { code, error, bytes: await readFile(destPath) };
}

describe('copyVerified (a worker copies and hashes a range of a file)', () => {
  it('copies the range byte for byte on a worker and accepts it', async () => {
    const before = pool.blobsHashedOffThread;
    const r = await copyOf(src, { digest, size: blob.length }, 'good');
    expect(r.code).toBe('ok');
    expect(r.bytes.equals(blob)).toBe(true);
    expect(pool.blobsHashedOffThread - before).toBe(1);
  });

  it('refuses a flipped byte (E_DIGEST_MISMATCH) and a declared size the range does not have (E_SIZE_MISMATCH)', async () => {
    const bad = join(tmp.path, 'flipped');
    const bytes = await readFile(src);
    bytes[OFFSET + 3 * MiB] = bytes[OFFSET + 3 * MiB]! ^ 1;
    await writeFile(bad, bytes);
    const r = await copyOf(bad, { digest, size: blob.length }, 'flipped-copy');
    expect(r.code).toBe('E_DIGEST_MISMATCH');
    expect((r.error as Error).message).toContain(digest);
    expect((await copyOf(src, { digest, size: blob.length + 1 }, 'size-copy')).code).toBe('E_SIZE_MISMATCH');
  });

  it('a file that ends inside the range: the range\'s own error, where the file ends', async () => {
    const cut = join(tmp.path, 'cut');
    await writeFile(cut, (await readFile(src)).subarray(0, OFFSET + 2 * MiB));
    const r = await copyOf(cut, { digest, size: blob.length }, 'cut-copy');
    expect(r.code).toBe('E_BUNDLE_TRUNCATED');
    expect((r.error as Error).message).toBe(`ends at ${OFFSET + 2 * MiB}`);
  });

  it('a copy that cannot be written fails with the file system\'s error (code and syscall), not a verdict on the blob', async () => {
    const r = await copyOf(src, { digest, size: blob.length }, 'read-only', { readOnlyDest: true });
    expect(r.code).toBe('raw EBADF');
    expect((r.error as NodeJS.ErrnoException).syscall).toBe('write');
  });

  it('aborted mid-copy: rejects with the reason only once the worker has stopped writing (the file does not grow afterwards)', async () => {
    // Large enough that the worker reports progress (every 8 MiB) well before the end: the abort comes mid-copy, with a write under way.
    const big = randomBytes(24 * MiB);
    const bigFile = join(tmp.path, 'big');
    await writeFile(bigFile, big);
    const ac = new AbortController();
    const reason = new FerryError('E_ABORTED', 'stop');
    const from = await open(bigFile, 'r');
    const destPath = join(tmp.path, 'aborted');
    const dest = await open(destPath, 'w+');
    try {
      const range: FileRange = { fd: from.fd, offset: 0, size: big.length, short: () => new Error('short') };
      const target = { digest: `sha256:${createHash('sha256').update(big).digest('hex')}` as Digest, size: big.length };
      let settled = false;
      let abortedAt: Promise<boolean> | undefined;
      const copying = copyVerified(range, target, { fd: dest.fd }, 'test', () => {
        if (ac.signal.aborted) return;
        ac.abort(reason);
        // Settled without hearing from the worker (microtasks only: no message can arrive meanwhile), the caller
        // would close its file while the worker may still be writing into it.
        abortedAt = (async () => {
          for (let i = 0; i < 50; i++) await Promise.resolve();
          return settled;
        })();
      }, ac.signal);
      copying.then(() => { settled = true; }, () => { settled = true; });
      await expect(copying).rejects.toBe(reason);
      expect(await abortedAt).toBe(false);
      const size = (await stat(destPath)).size;
      // Two more copies (one per worker, whichever it is) run to their end meanwhile: a write of the aborted copy still under way would land by then.
      const after = await Promise.all([copyOf(src, { digest, size: blob.length }, 'after-1'), copyOf(src, { digest, size: blob.length }, 'after-2')]);
      expect(after.map((a) => a.code)).toEqual(['ok', 'ok']);
      expect((await stat(destPath)).size).toBe(size);
    } finally {
      await dest.close();
      await from.close();
    }
  });
});
