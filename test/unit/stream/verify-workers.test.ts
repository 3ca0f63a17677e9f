// The one verifier hashing on worker threads: the same verdicts as hashing in place,
// and a process that used the workers still ends by itself.
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { FerryError } from '../../../src/errors.js';
import type { Digest } from '../../../src/oci/digest.js';
import { VerifyStream } from '../../../src/stream/verify.js';
import * as pool from '../../../src/stream/hash-pool.js';
import { REPO_ROOT } from '../../support/cli.js';

const MiB = 1024 * 1024;

/** `bytes` in chunks of odd sizes (as a network or tar stream gives them), none crossing a worker slot neatly. */
function chunks(bytes: Buffer): Readable {
  const out: Buffer[] = [];
  for (let at = 0, n = 0; at < bytes.length; at += 100_000 + (n++ % 7) * 77_777) out.push(Buffer.from(bytes.subarray(at, Math.min(bytes.length, at + 100_000 + (n % 7) * 77_777))));
  return Readable.from(out, { objectMode: false });
}

async function verdict(bytes: Buffer, target: { digest: Digest; size: number }, workers: boolean): Promise<{ code: string; passed: number }> {
  let passed = 0;
  const saved = process.env['FERRY_HASH_WORKERS'];
  if (!workers) process.env['FERRY_HASH_WORKERS'] = '0';
  try {
    // Where the hash runs is decided on the first chunk: the setting holds until the pipeline is done.
    await pipeline(chunks(bytes), new VerifyStream(target, 'test'), async (src: AsyncIterable<Buffer>) => {
      for await (const c of src) passed += c.length;
    });
    return { code: 'ok', passed };
  } catch (e) {
    return { code: e instanceof FerryError ? e.code : String(e), passed };
  } finally {
    if (saved === undefined) delete process.env['FERRY_HASH_WORKERS'];
    else process.env['FERRY_HASH_WORKERS'] = saved;
  }
}

describe('VerifyStream on worker threads', () => {
  const data = randomBytes(9 * MiB + 123);
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}` as Digest;

  it('gives the verdicts of hashing in place: good, a flipped byte, too long (cut off at once), too short', async () => {
    const flipped = Buffer.from(data);
    flipped[5 * MiB] = flipped[5 * MiB]! ^ 1;
    const cases: [Buffer, { digest: Digest; size: number }][] = [
      [data, { digest, size: data.length }],
      [flipped, { digest, size: data.length }],
      [data, { digest, size: data.length - 2 * MiB }],
      [data.subarray(0, data.length - 1), { digest, size: data.length }],
    ];
    const before = pool.blobsHashedOffThread;
    const inPlace = [];
    const offThread = [];
    for (const [bytes, target] of cases) {
      inPlace.push(await verdict(bytes, target, false));
      offThread.push(await verdict(bytes, target, true));
    }
    expect(inPlace.map((v) => v.code)).toEqual(['ok', 'E_DIGEST_MISMATCH', 'E_SIZE_MISMATCH', 'E_SIZE_MISMATCH']);
    // How many bytes reach the consumer before an error replaces the end may differ; the verdict may not.
    expect(offThread.map((v) => v.code)).toEqual(inPlace.map((v) => v.code));
    expect(offThread[0]!.passed).toBe(data.length);
    // The bytes past the declared size never pass: the cut is made on the chunk that crosses it.
    expect(offThread[2]!.passed).toBeLessThanOrEqual(data.length - 2 * MiB);
    // The worker verdicts really came from the workers: the good and the flipped blob reached their digest there
    // (the others were judged by their size first).
    expect(pool.blobsHashedOffThread - before).toBe(2);
  });

  it('a process that hashed on the workers ends by itself (idle workers hold nothing open)', () => {
    const script = `
      import { RemoteHash } from ${JSON.stringify(join(REPO_ROOT, 'dist/stream/hash-pool.js'))};
      const h = RemoteHash.start();
      const w = h.update(Buffer.alloc(4096));
      if (w) await w;
      console.log(await h.digest());`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
    expect(r.signal, 'still running after 60 s: a worker kept the process alive').toBeNull();
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(createHash('sha256').update(Buffer.alloc(4096)).digest('hex'));
  });
});
