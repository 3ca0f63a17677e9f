import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { sha256Digest } from '../../../src/oci/digest.js';
import { BlobStore } from '../../../src/store/blob-store.js';
import { digestStream, VerifyStream } from '../../../src/stream/verify.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

let tmp: TempDir;
beforeAll(() => { tmp = makeTempDir('ferry-store-'); });
afterAll(async () => tmp.cleanup());

function blob(size: number): { bytes: Buffer; desc: { digest: ReturnType<typeof sha256Digest>; size: number } } {
  const bytes = randomBytes(size);
  return { bytes, desc: { digest: sha256Digest(bytes), size } };
}

function chunked(bytes: Buffer, n = 4096): Readable {
  const parts: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += n) parts.push(bytes.subarray(i, i + n));
  return Readable.from(parts);
}

describe('BlobStore', () => {
  it('stores under blobs/sha256/<hex> and reads back the same bytes', async () => {
    const store = new BlobStore(join(tmp.path, 'a'));
    await store.init();
    const b = blob(100_000);
    expect(await store.has(b.desc)).toBe(false);
    await store.put(b.desc, chunked(b.bytes));
    expect(store.path(b.desc.digest)).toBe(join(tmp.path, 'a', 'blobs', 'sha256', b.desc.digest.slice(7)));
    expect(await store.has(b.desc)).toBe(true);
    expect(await store.has({ ...b.desc, size: b.desc.size + 1 })).toBe(false);
    expect(await digestStream(await store.createReadStream(b.desc.digest))).toEqual(b.desc);
  });

  it('verify() hashes the file and removes one whose content does not match', async () => {
    const store = new BlobStore(join(tmp.path, 'b'));
    await store.init();
    const b = blob(5000);
    await store.put(b.desc, chunked(b.bytes));
    expect(await store.verify(b.desc)).toBe(true);
    const bad = Buffer.from(b.bytes);
    bad[7] = bad[7]! ^ 1;
    await writeFile(store.path(b.desc.digest), bad);
    expect(await store.has(b.desc)).toBe(true); // same size: has() cannot tell
    expect(await store.verify(b.desc)).toBe(false);
    expect(await store.has(b.desc)).toBe(false);
  });

  it('concurrent puts of the same blob all succeed and leave one complete file, no temp files', async () => {
    const store = new BlobStore(join(tmp.path, 'c'));
    await store.init();
    const b = blob(300_000);
    await Promise.all(Array.from({ length: 6 }, () => store.put(b.desc, chunked(b.bytes, 1000))));
    expect((await readFile(store.path(b.desc.digest))).equals(b.bytes)).toBe(true);
    expect(await readdir(join(tmp.path, 'c', 'blobs', 'sha256'))).toEqual([b.desc.digest.slice(7)]);
  });

  it('a stream that fails mid-way leaves nothing behind', async () => {
    const store = new BlobStore(join(tmp.path, 'd'));
    await store.init();
    const b = blob(50_000);
    const failing = Readable.from((async function* () {
      yield b.bytes.subarray(0, 10_000);
      throw new Error('connection reset');
    })());
    await expect(store.put(b.desc, failing)).rejects.toThrow('connection reset');
    expect(await store.has(b.desc)).toBe(false);
    expect(await readdir(join(tmp.path, 'd', 'blobs', 'sha256'))).toEqual([]);
  });

  it('createReadStream of a missing blob is E_BLOB_MISSING naming the digest', async () => {
    const store = new BlobStore(join(tmp.path, 'e'));
    await store.init();
    const d = sha256Digest('absent');
    const err = await store.createReadStream(d).then(() => undefined, (e: unknown) => e);
    expect(isFerryError(err, 'E_BLOB_MISSING')).toBe(true);
    expect((err as Error).message).toContain(d);
  });

  it('a cut-off stream leaves exactly the bytes it delivered in partial/<hex>, and no lock', async () => {
    const store = new BlobStore(join(tmp.path, 'f'));
    await store.init();
    const b = blob(3 * 1024 * 1024 + 17);
    const cut = 2 * 1024 * 1024 + 5;
    await expect(store.put(b.desc, cutOff(b.bytes, cut))).rejects.toThrow('connection reset');
    expect(await store.has(b.desc)).toBe(false);
    expect(await store.partialSize(b.desc.digest)).toBe(cut);
    expect((await readFile(store.partialPath(b.desc.digest))).equals(b.bytes.subarray(0, cut))).toBe(true);
    expect(await readdir(join(tmp.path, 'f', 'partial'))).toEqual([b.desc.digest.slice(7)]);
  });

  it('a resumed stream (prefix replayed from the partial file, then the rest) is renamed into place from the partial file', async () => {
    const store = new BlobStore(join(tmp.path, 'g'));
    await store.init();
    const b = blob(2 * 1024 * 1024 + 99);
    const cut = 1024 * 1024 + 3;
    await expect(store.put(b.desc, cutOff(b.bytes, cut))).rejects.toThrow('connection reset');
    const prefix = await store.openPartial(b.desc.digest);
    expect(prefix?.size).toBe(cut);
    const whole = new PassThrough();
    const head = prefix!.read(cut);
    head.pipe(whole, { end: false });
    head.on('end', () => whole.end(b.bytes.subarray(cut)));
    await store.put(b.desc, whole.pipe(new VerifyStream(b.desc)));
    expect((await readFile(store.path(b.desc.digest))).equals(b.bytes)).toBe(true);
    expect(await readdir(join(tmp.path, 'g', 'partial'))).toEqual([]);
    expect(await store.openPartial(b.desc.digest)).toBeUndefined();
  });

  it('bytes the verifier rejects remove the partial file, so no later fetch continues them', async () => {
    const store = new BlobStore(join(tmp.path, 'h'));
    await store.init();
    const b = blob(200_000);
    await mkdir(join(tmp.path, 'h', 'partial'), { recursive: true });
    await writeFile(store.partialPath(b.desc.digest), Buffer.alloc(1000, 0x41));
    const bad = Buffer.concat([Buffer.alloc(1000, 0x41), b.bytes.subarray(1000)]);
    const err = await store.put(b.desc, chunked(bad).pipe(new VerifyStream(b.desc))).then(() => undefined, (e: unknown) => e);
    expect(isFerryError(err, 'E_DIGEST_MISMATCH')).toBe(true);
    expect(await store.has(b.desc)).toBe(false);
    expect(await readdir(join(tmp.path, 'h', 'partial'))).toEqual([]);
  });

  it('a partial file longer than the blob is overwritten from byte 0 and cut to the blob size', async () => {
    const store = new BlobStore(join(tmp.path, 'i'));
    await store.init();
    const b = blob(100_000);
    await mkdir(join(tmp.path, 'i', 'partial'), { recursive: true });
    await writeFile(store.partialPath(b.desc.digest), randomBytes(150_000));
    await store.put(b.desc, chunked(b.bytes).pipe(new VerifyStream(b.desc)));
    expect((await readFile(store.path(b.desc.digest))).equals(b.bytes)).toBe(true);
    expect(await readdir(join(tmp.path, 'i', 'partial'))).toEqual([]);
  });

  it('while another live process holds the partial lock, put writes a private temp file and leaves the partial file alone', async () => {
    const store = new BlobStore(join(tmp.path, 'j'));
    await store.init();
    const b = blob(120_000);
    await mkdir(join(tmp.path, 'j', 'partial'), { recursive: true });
    const theirs = randomBytes(5000);
    await writeFile(store.partialPath(b.desc.digest), theirs);
    // The test runner's parent is alive for the whole test.
    await writeFile(`${store.partialPath(b.desc.digest)}.lock`, `${process.ppid} feedfacefeedface`);
    await store.put(b.desc, chunked(b.bytes).pipe(new VerifyStream(b.desc)));
    expect((await readFile(store.path(b.desc.digest))).equals(b.bytes)).toBe(true);
    expect((await readFile(store.partialPath(b.desc.digest))).equals(theirs)).toBe(true);
    expect(existsSync(`${store.partialPath(b.desc.digest)}.lock`)).toBe(true);
    expect(await readdir(join(tmp.path, 'j', 'blobs', 'sha256'))).toEqual([b.desc.digest.slice(7)]);
  });

  it('takes over the lock of a process that is gone (killed) and continues its partial file', async () => {
    const store = new BlobStore(join(tmp.path, 'k'));
    await store.init();
    const b = blob(90_000);
    await mkdir(join(tmp.path, 'k', 'partial'), { recursive: true });
    await writeFile(store.partialPath(b.desc.digest), b.bytes.subarray(0, 30_000));
    const dead = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    await writeFile(`${store.partialPath(b.desc.digest)}.lock`, `${dead.stdout} 0123456789abcdef`);
    const release = await store.lockPartial(b.desc.digest);
    expect(release).toBeDefined();
    // Held by this process now: a second writer here must not get it.
    expect(await store.lockPartial(b.desc.digest)).toBeUndefined();
    await release!();
    await store.put(b.desc, chunked(b.bytes).pipe(new VerifyStream(b.desc)));
    expect((await readFile(store.path(b.desc.digest))).equals(b.bytes)).toBe(true);
    expect(await readdir(join(tmp.path, 'k', 'partial'))).toEqual([]);
  });

  it('concurrent lock attempts in one process: exactly one wins', async () => {
    const store = new BlobStore(join(tmp.path, 'l'));
    await store.init();
    const d = sha256Digest('lock race');
    const got = await Promise.all(Array.from({ length: 8 }, () => store.lockPartial(d)));
    expect(got.filter((r) => r !== undefined)).toHaveLength(1);
    await got.find((r) => r !== undefined)!();
    expect(await readdir(join(tmp.path, 'l', 'partial'))).toEqual([]);
  });
});

/** The first `n` bytes in 64 KiB chunks, then a network-style failure. */
function cutOff(bytes: Buffer, n: number): Readable {
  return Readable.from((async function* () {
    for (let i = 0; i < n; i += 65536) yield bytes.subarray(i, Math.min(n, i + 65536));
    throw new Error('connection reset');
  })());
}
