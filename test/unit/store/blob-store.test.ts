import { randomBytes } from 'node:crypto';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { sha256Digest } from '../../../src/oci/digest.js';
import { BlobStore } from '../../../src/store/blob-store.js';
import { digestStream } from '../../../src/stream/verify.js';
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
});
