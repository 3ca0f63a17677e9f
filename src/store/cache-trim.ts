import { randomBytes } from 'node:crypto';
import { lstat, readdir, readFile, rm, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { isTempName, writeFileAtomic } from '../fsys/atomic.js';
import { mkdirp } from '../fsys/files.js';
import { type Digest, digestHex, isDigest } from '../oci/digest.js';
import type { BlobStore } from './blob-store.js';
import { isLive, LOCK_OWNER, readLock, takeLock } from './owner-lock.js';

/**
 * Keeps a shared blob cache under a size cap. Least recently used blobs go
 * first, where "used" is the blob file's mtime: a run moves it when it reuses a
 * blob (BlobStore.touch), and a fetched blob is new. Partial files of abandoned
 * fetches and temp files of killed runs go by age.
 *
 * Several exports may share one cache, so nothing a running export needs may
 * disappear under it. Each export holds a *lease* — `<root>/leases/<id>`, its
 * owner's pid line, then the hex digests it will read — from before it looks
 * at the cache until it is done, and the trimmer keeps every blob a live lease
 * names. Only one process trims at a time (`<root>/trim.lock`). The race left
 * is a lease written just after the trimmer read the leases: so `leaseBlobs`
 * returns only once no trim is running, and a trim that starts after that sees
 * the lease. Removing is a plain unlink: a run that has already opened a blob
 * keeps reading it (POSIX), and a run that has not is kept by its lease.
 */

/** Partial files untouched this long belong to fetches nobody is coming back for. */
export const PARTIAL_MAX_AGE_MS = 7 * 24 * 3600_000;
/** Temp files are never resumed; one untouched for a day is a killed run's (a live stream moves its mtime). */
export const TEMP_MAX_AGE_MS = 24 * 3600_000;
/** A trim takes seconds even on a large cache; waiting longer than this means a stuck process. */
const TRIM_LOCK_WAIT_MS = 120_000;
const POLL_MS = 50;

export interface TrimOptions {
  /** Bytes the cache may hold (blobs and partial files); undefined: no cap, nothing is removed. */
  maxBytes: number | undefined;
  /** Blobs the calling run used: kept whatever their age, like those of live leases. */
  keep?: Iterable<Digest>;
  /** The clock, for tests (ms since the epoch). */
  now?: number;
  signal?: AbortSignal;
}

export interface TrimReport {
  /** What the cache holds afterwards: blob files and partial files, by file size. */
  bytes: number;
  blobs: number;
  evictedBlobs: number;
  evictedBytes: number;
  /** Abandoned partial and temp files removed. */
  prunedFiles: number;
  prunedBytes: number;
  /** Blob bytes the cap could not evict because this run or a concurrent one needs them. */
  keptInUseBytes: number;
  /** Another process was trimming the cache all along: this one removed nothing. */
  skipped?: true;
}

interface Entry {
  path: string;
  name: string;
  size: number;
  mtimeMs: number;
}

/** Evicts and prunes until the cache fits `maxBytes` (or nothing more may go). */
export async function trimCache(store: BlobStore, opts: TrimOptions): Promise<TrimReport> {
  const now = opts.now ?? Date.now();
  const blobDir = join(store.root, 'blobs', 'sha256');
  const partialDir = join(store.root, 'partial');
  const report: TrimReport = { bytes: 0, blobs: 0, evictedBlobs: 0, evictedBytes: 0, prunedFiles: 0, prunedBytes: 0, keptInUseBytes: 0 };

  if (opts.maxBytes === undefined) {
    // Unlimited: report the size, remove nothing (not even stale partials: "no cap" means ferry deletes nothing).
    const blobs = (await listDir(blobDir)).filter((e) => isDigest(`sha256:${e.name}`));
    const partials = (await listDir(partialDir)).filter((e) => isDigest(`sha256:${e.name}`));
    report.blobs = blobs.length;
    report.bytes = sum(blobs) + sum(partials);
    return report;
  }

  await mkdirp(store.root);
  const lock = trimLockPath(store);
  if (!(await acquire(lock, opts.signal))) {
    const blobs = (await listDir(blobDir)).filter((e) => isDigest(`sha256:${e.name}`));
    report.blobs = blobs.length;
    report.bytes = sum(blobs) + sum((await listDir(partialDir)).filter((e) => isDigest(`sha256:${e.name}`)));
    report.skipped = true;
    return report;
  }
  try {
    const inUse = new Set<string>([...(opts.keep ?? [])].map((d) => digestHex(d)));
    for (const hex of await leasedHexes(store)) inUse.add(hex);

    const blobs: Entry[] = [];
    for (const e of await listDir(blobDir)) {
      if (isDigest(`sha256:${e.name}`)) blobs.push(e);
      else if (isTempName(e.name) && now - e.mtimeMs > TEMP_MAX_AGE_MS) await prune(e, report);
    }
    const partials: Entry[] = [];
    for (const e of await listDir(partialDir)) {
      if (isDigest(`sha256:${e.name}`)) {
        if (now - e.mtimeMs > PARTIAL_MAX_AGE_MS && !inUse.has(e.name) && (await prunePartial(store, e, report))) continue;
        partials.push(e);
      } else if (isTempName(e.name) && now - e.mtimeMs > TEMP_MAX_AGE_MS) {
        await prune(e, report);
      }
    }

    let total = sum(blobs) + sum(partials);
    // Oldest first; the name breaks ties so that equal times still give one order.
    const candidates = blobs.filter((b) => !inUse.has(b.name)).sort((a, b) => a.mtimeMs - b.mtimeMs || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const evicted = new Set<string>();
    for (const b of candidates) {
      if (total <= opts.maxBytes) break;
      opts.signal?.throwIfAborted();
      if (await removeFile(b.path)) {
        report.evictedBlobs++;
        report.evictedBytes += b.size;
      }
      // Gone either way (another tool may have removed it): it no longer counts.
      total -= b.size;
      evicted.add(b.name);
    }
    report.blobs = blobs.length - evicted.size;
    report.bytes = total;
    report.keptInUseBytes = sum(blobs.filter((b) => inUse.has(b.name)));
    return report;
  } finally {
    await rm(lock, { force: true });
  }
}

/** A run's claim on the blobs it reads or writes; `release` once the run no longer needs the cache. */
export interface CacheLease {
  release(): Promise<void>;
}

/**
 * Records that this run needs `digests` and returns once no trim that could
 * have missed the record is running (see the module comment). Call it before
 * the run looks for, reads or writes any of them in the cache.
 */
export async function leaseBlobs(store: BlobStore, digests: Iterable<Digest>, opts: { signal?: AbortSignal } = {}): Promise<CacheLease> {
  const dir = join(store.root, 'leases');
  await mkdirp(dir);
  const path = join(dir, `${process.pid}-${randomBytes(6).toString('hex')}`);
  const hexes = [...new Set([...digests].map((d) => digestHex(d)))];
  await writeFileAtomic(path, `${LOCK_OWNER}\n${hexes.join('\n')}\n`);
  const release = async () => { await rm(path, { force: true }); };
  try {
    const lock = trimLockPath(store);
    for (;;) {
      const owner = await readLock(lock);
      // An unreadable lock ('') names no process that could ever release it: not waited for.
      if (owner === undefined || !isLive(owner)) break;
      await sleep(POLL_MS, undefined, opts.signal ? { signal: opts.signal } : {});
    }
  } catch (e) {
    await release();
    throw e;
  }
  return { release };
}

function trimLockPath(store: BlobStore): string {
  return join(store.root, 'trim.lock');
}

/** Takes the trim lock, waiting for another trimmer to finish; false when it never did. */
async function acquire(lock: string, signal: AbortSignal | undefined): Promise<boolean> {
  const deadline = Date.now() + TRIM_LOCK_WAIT_MS;
  for (;;) {
    if (await takeLock(lock)) return true;
    if (Date.now() > deadline) return false;
    await sleep(POLL_MS, undefined, signal ? { signal } : {});
  }
}

/** Hex digests named by the leases of live processes; a dead process's lease is removed. */
async function leasedHexes(store: BlobStore): Promise<Set<string>> {
  const dir = join(store.root, 'leases');
  const out = new Set<string>();
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return out;
    throw e;
  }
  for (const name of names) {
    if (isTempName(name)) continue;
    let text: string;
    try {
      text = await readFile(join(dir, name), 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue; // released meanwhile
      throw e;
    }
    const [owner, ...hexes] = text.split('\n');
    if (owner === undefined || !isLive(owner.trim())) {
      await rm(join(dir, name), { force: true });
      continue;
    }
    for (const h of hexes) if (h !== '') out.add(h.trim());
  }
  return out;
}

/**
 * A partial file goes only while we hold its lock, so a writer appending to it
 * right now keeps it. A resuming reader takes no lock; one that opened the file
 * already keeps reading it, one that has not finds none and fetches whole.
 */
async function prunePartial(store: BlobStore, e: Entry, report: TrimReport): Promise<boolean> {
  const digest = `sha256:${e.name}` as Digest;
  const release = await store.lockPartial(digest);
  if (!release) return false;
  try {
    await prune(e, report);
    return true;
  } finally {
    await release();
  }
}

async function prune(e: Entry, report: TrimReport): Promise<void> {
  if (await removeFile(e.path)) {
    report.prunedFiles++;
    report.prunedBytes += e.size;
  }
}

/** True when this call removed the file; false when it was already gone. */
async function removeFile(path: string): Promise<boolean> {
  try {
    await unlink(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw e;
  }
}

/** Regular files of a directory with their size and mtime; none when the directory does not exist. */
async function listDir(dir: string): Promise<Entry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: Entry[] = [];
  for (const name of names) {
    const path = join(dir, name);
    try {
      const st = await lstat(path);
      if (st.isFile()) out.push({ path, name, size: st.size, mtimeMs: st.mtimeMs });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
  return out;
}

function sum(entries: readonly Entry[]): number {
  return entries.reduce((n, e) => n + e.size, 0);
}
