import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rm, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, sha256Digest } from '../../../src/oci/digest.js';
import { BlobStore } from '../../../src/store/blob-store.js';
import { leaseBlobs, PARTIAL_MAX_AGE_MS, TEMP_MAX_AGE_MS, trimCache } from '../../../src/store/cache-trim.js';
import { digestStream } from '../../../src/stream/verify.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

let tmp: TempDir;
let n = 0;
beforeAll(() => { tmp = makeTempDir('ferry-trim-'); });
afterAll(async () => tmp.cleanup());

interface Blob { digest: Digest; size: number; bytes: Buffer }

const HOUR = 3600_000;
/** A fixed clock far from the real one: every mtime below is set from it, never read from the wall. */
const NOW = Date.UTC(2030, 0, 1);

async function newStore(): Promise<BlobStore> {
  const store = new BlobStore(join(tmp.path, `s${++n}`));
  await store.init();
  return store;
}

/** Stores a random blob and dates its file `ageHours` before `base` (NOW unless given). */
async function stored(store: BlobStore, size: number, ageHours: number, base = NOW): Promise<Blob> {
  const bytes = randomBytes(size);
  const b = { digest: sha256Digest(bytes), size, bytes };
  await store.put(b, Readable.from([bytes]));
  await age(store.path(b.digest), ageHours, base);
  return b;
}

async function age(path: string, hours: number, base = NOW): Promise<void> {
  const t = new Date(base - hours * HOUR);
  await utimes(path, t, t);
}

async function names(store: BlobStore, dir = 'blobs/sha256'): Promise<string[]> {
  try {
    return (await readdir(join(store.root, dir))).sort();
  } catch {
    return [];
  }
}

const hex = (b: Blob): string => b.digest.slice(7);

/** A pid that is certainly not running: a child that has already exited. */
function deadPid(): string {
  return spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout;
}

describe('trimCache', () => {
  it('evicts least recently used first, exactly until the cache fits the cap', async () => {
    const store = await newStore();
    // Ages 50, 40, 30, 20, 10 hours: b[0] is the least recently used.
    const b = [];
    for (const h of [50, 40, 30, 20, 10]) b.push(await stored(store, 1000, h));
    const r = await trimCache(store, { maxBytes: 2500, now: NOW });
    expect(r).toMatchObject({ evictedBlobs: 3, evictedBytes: 3000, bytes: 2000, blobs: 2, prunedFiles: 0 });
    expect(await names(store)).toEqual([hex(b[3]!), hex(b[4]!)].sort());
    // Already under the cap: a second trim removes nothing.
    expect(await trimCache(store, { maxBytes: 2500, now: NOW })).toMatchObject({ evictedBlobs: 0, bytes: 2000 });
  });

  it('a blob reused (verified) becomes the most recently used and outlives younger ones', async () => {
    const store = await newStore();
    // The real clock here: verify() stamps the file with it.
    const now = Date.now();
    const old = await stored(store, 1000, 100, now);
    const mid = await stored(store, 1000, 5, now);
    const young = await stored(store, 1000, 1, now);
    expect(await store.verify(old)).toBe(true);
    const r = await trimCache(store, { maxBytes: 2000 });
    expect(r.evictedBlobs).toBe(1);
    expect(await names(store)).toEqual([hex(old), hex(young)].sort());
    expect(await store.has(mid)).toBe(false);
  });

  it('never evicts the blobs the run used, even when they alone exceed the cap', async () => {
    const store = await newStore();
    const used = [await stored(store, 3000, 90), await stored(store, 3000, 80)];
    const other = [await stored(store, 1000, 1), await stored(store, 1000, 2)];
    const r = await trimCache(store, { maxBytes: 2000, keep: used.map((b) => b.digest), now: NOW });
    expect(r).toMatchObject({ evictedBlobs: 2, evictedBytes: 2000, bytes: 6000, keptInUseBytes: 6000 });
    expect(await names(store)).toEqual(used.map(hex).sort());
    for (const b of other) expect(await store.has(b)).toBe(false);
  });

  it('keeps what a live lease names, ignores and removes a dead process\'s lease', async () => {
    const store = await newStore();
    const leased = await stored(store, 1000, 100);
    const deadLeased = await stored(store, 1000, 99);
    const young = await stored(store, 1000, 1);
    const lease = await leaseBlobs(store, [leased.digest]);
    await writeFile(join(store.root, 'leases', 'gone'), `${deadPid()} 0123456789abcdef\n${hex(deadLeased)}\n`);
    const r = await trimCache(store, { maxBytes: 2000, now: NOW });
    expect(r.evictedBlobs).toBe(1);
    expect(await names(store)).toEqual([hex(leased), hex(young)].sort());
    expect(await names(store, 'leases')).toHaveLength(1);
    await lease.release();
    expect(await names(store, 'leases')).toEqual([]);
    // Released: it is an ordinary old blob again.
    await trimCache(store, { maxBytes: 1000, now: NOW });
    expect(await names(store)).toEqual([hex(young)]);
  });

  it('prunes stale partial and temp files, keeps fresh ones and a stale one whose writer holds the lock', async () => {
    const store = await newStore();
    const blob = await stored(store, 1000, 1);
    const partial = (d: Digest) => store.partialPath(d);
    await mkdir(join(store.root, 'partial'), { recursive: true });
    const stale = sha256Digest('stale'); const fresh = sha256Digest('fresh'); const locked = sha256Digest('locked');
    for (const d of [stale, fresh, locked]) await writeFile(partial(d), randomBytes(500));
    await age(partial(stale), PARTIAL_MAX_AGE_MS / HOUR + 1);
    await age(partial(locked), PARTIAL_MAX_AGE_MS / HOUR + 1);
    await age(partial(fresh), 2);
    const release = await store.lockPartial(locked);
    const oldTemp = join(store.root, 'blobs', 'sha256', '.ferry-tmp-abc.1.x');
    const newTemp = join(store.root, 'blobs', 'sha256', '.ferry-tmp-def.1.y');
    await writeFile(oldTemp, randomBytes(300));
    await writeFile(newTemp, randomBytes(300));
    await age(oldTemp, TEMP_MAX_AGE_MS / HOUR + 1);
    await age(newTemp, 1);

    const r = await trimCache(store, { maxBytes: 10_000, now: NOW });
    expect(r).toMatchObject({ prunedFiles: 2, prunedBytes: 800, evictedBlobs: 0, bytes: 1000 + 500 + 500 });
    expect(existsSync(partial(stale))).toBe(false);
    expect(existsSync(partial(fresh))).toBe(true);
    expect(existsSync(partial(locked))).toBe(true);
    expect(existsSync(oldTemp)).toBe(false);
    expect(existsSync(newTemp)).toBe(true);
    expect(await store.has(blob)).toBe(true);
    await release!();
  });

  it('partial files count toward the cap, so blobs make room for a fetch in progress', async () => {
    const store = await newStore();
    const a = await stored(store, 1000, 10);
    const b = await stored(store, 1000, 5);
    await mkdir(join(store.root, 'partial'), { recursive: true });
    await writeFile(store.partialPath(sha256Digest('in flight')), randomBytes(1000));
    await age(store.partialPath(sha256Digest('in flight')), 1);
    const r = await trimCache(store, { maxBytes: 2000, now: NOW });
    expect(r).toMatchObject({ evictedBlobs: 1, bytes: 2000 });
    expect(await store.has(a)).toBe(false);
    expect(await store.has(b)).toBe(true);
  });

  it('without a cap removes nothing at all and reports the size', async () => {
    const store = await newStore();
    await stored(store, 1000, 1000);
    await mkdir(join(store.root, 'partial'), { recursive: true });
    await writeFile(store.partialPath(sha256Digest('old')), randomBytes(200));
    await age(store.partialPath(sha256Digest('old')), 10_000);
    const r = await trimCache(store, { maxBytes: undefined, now: NOW });
    expect(r).toMatchObject({ evictedBlobs: 0, prunedFiles: 0, bytes: 1200, blobs: 1 });
    expect(await names(store)).toHaveLength(1);
    expect(await names(store, 'partial')).toHaveLength(1);
  });

  it('takes over the trim lock of a killed trimmer', async () => {
    const store = await newStore();
    await stored(store, 1000, 2);
    await stored(store, 1000, 1);
    await writeFile(join(store.root, 'trim.lock'), `${deadPid()} 0123456789abcdef`);
    const r = await trimCache(store, { maxBytes: 1000, now: NOW });
    expect(r.skipped).toBeUndefined();
    expect(r.evictedBlobs).toBe(1);
    expect(existsSync(join(store.root, 'trim.lock'))).toBe(false);
  });
});

describe('two exports sharing one cache', () => {
  it('concurrent trims from two stores do not throw, keep both runs\' blobs, and a reader keeps an evicted file it opened', async () => {
    const root = join(tmp.path, 'shared');
    const one = new BlobStore(root);
    const two = new BlobStore(root);
    await one.init();
    const mine: Blob[] = [];
    const theirs: Blob[] = [];
    const idle: Blob[] = [];
    for (let i = 0; i < 6; i++) mine.push(await stored(one, 2000, 100 + i));
    for (let i = 0; i < 6; i++) theirs.push(await stored(two, 2000, 200 + i));
    for (let i = 0; i < 20; i++) idle.push(await stored(one, 2000, 50 + i));
    // Each run holds its lease from before it touches the cache.
    const leaseOne = await leaseBlobs(one, mine.map((b) => b.digest));
    const leaseTwo = await leaseBlobs(two, theirs.map((b) => b.digest));
    // A third party opened an idle (evictable) blob before the trims.
    const reader = await one.createReadStream(idle[0]!.digest);

    const results = await Promise.all([
      trimCache(one, { maxBytes: 1, keep: mine.map((b) => b.digest), now: NOW }),
      trimCache(two, { maxBytes: 1, keep: theirs.map((b) => b.digest), now: NOW }),
      trimCache(one, { maxBytes: 1, keep: mine.map((b) => b.digest), now: NOW }),
    ]);
    expect(results.every((r) => r.skipped === undefined)).toBe(true);
    // Every idle blob went exactly once, whoever removed it.
    expect(results.reduce((s, r) => s + r.evictedBlobs, 0)).toBe(idle.length);
    expect(await names(one)).toEqual([...mine, ...theirs].map(hex).sort());
    expect(existsSync(join(root, 'trim.lock'))).toBe(false);
    expect(await digestStream(reader)).toEqual({ digest: idle[0]!.digest, size: idle[0]!.size });

    await leaseOne.release();
    await leaseTwo.release();
  });

  it('a new lease waits while another process trims, so that trim cannot miss it', async () => {
    const store = await newStore();
    const b = await stored(store, 1000, 1);
    // The test runner's parent is alive for the whole test: a trimmer in another process.
    await writeFile(join(store.root, 'trim.lock'), `${process.ppid} feedfacefeedface`);
    let leased = false;
    const pending = leaseBlobs(store, [b.digest]).then((l) => { leased = true; return l; });
    // Not a timing bound: a correct lease never returns while the lock is held, however long we wait.
    await new Promise((r) => setTimeout(r, 300));
    expect(leased).toBe(false);
    expect(await names(store, 'leases')).toHaveLength(1);
    await rm(join(store.root, 'trim.lock'));
    const lease = await pending;
    expect(leased).toBe(true);
    await lease.release();
  });

  it('an aborted wait removes the lease it wrote', async () => {
    const store = await newStore();
    await writeFile(join(store.root, 'trim.lock'), `${process.ppid} feedfacefeedface`);
    const ac = new AbortController();
    const pending = leaseBlobs(store, [sha256Digest('x')], { signal: ac.signal });
    ac.abort();
    await expect(pending).rejects.toThrow();
    expect(await names(store, 'leases')).toEqual([]);
  });
});
