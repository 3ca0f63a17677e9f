import { randomBytes } from 'node:crypto';
import { link, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { tempPathFor } from '../fsys/atomic.js';
import { FILE_MODE } from '../fsys/files.js';
import { processAlive } from '../fsys/pid.js';

/**
 * Pid-owned lock files for a cache several ferry processes share: a partial
 * file's single writer (blob-store.ts), the one process trimming the cache at a
 * time and the leases that keep a running export's blobs (cache-trim.ts). A
 * lock whose process is gone (SIGKILL, power cut) is taken over.
 */

/** `pid token`: the token tells this process from an earlier one that had the same pid. */
export const LOCK_OWNER = `${process.pid} ${randomBytes(8).toString('hex')}`;

/**
 * The lock file appears with its owner already in it (written under a temp
 * name, then hard-linked, which fails if the name exists): a lock created with
 * O_EXCL and written afterwards can be read empty by a rival, taken for a dead
 * owner's, and removed while its owner writes. False when a live process (this
 * one included) holds it.
 */
export async function takeLock(lock: string): Promise<boolean> {
  const mine = tempPathFor(lock);
  await writeFile(mine, LOCK_OWNER, { mode: FILE_MODE });
  try {
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await link(mine, lock);
        return true;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      }
      const owner = await readLock(lock);
      if (owner === undefined) continue; // released meanwhile
      if (isLive(owner)) return false;
      // The owner is gone (SIGKILL, power cut): what it guarded is still good, the lock is ours to take.
      if (!(await removeStaleLock(lock, owner))) return false;
    }
    return false;
  } finally {
    await rm(mine, { force: true });
  }
}

/** Whether the process an owner line (`pid token`, as LOCK_OWNER) names is still running. */
export function isLive(owner: string): boolean {
  const pid = Number(owner.split(' ')[0]);
  // Our own pid with another token is an earlier process that had the same pid (containers reuse them).
  return owner === LOCK_OWNER || (pid !== process.pid && processAlive(pid));
}

/**
 * Removes the lock only if it still names the dead owner: two processes that
 * both found it stale must not have the slower one delete the lock the faster
 * one just took. The lock is moved aside atomically and checked there; a live
 * one is put back (link: never over a lock taken meanwhile). False when the
 * lock turned out to be live.
 */
async function removeStaleLock(lock: string, staleOwner: string): Promise<boolean> {
  const aside = tempPathFor(lock);
  try {
    await rename(lock, aside);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return true; // someone else removed it: race for it again
    throw e;
  }
  try {
    const owner = await readLock(aside);
    if (owner === undefined || owner === staleOwner) return true;
    await link(aside, lock).catch(() => undefined);
    return false;
  } finally {
    await rm(aside, { force: true });
  }
}

/** The lock's owner line (the first line of the file); undefined when there is no lock file. */
export async function readLock(lock: string): Promise<string | undefined> {
  try {
    return (await readFile(lock, 'utf8')).split('\n', 1)[0]!.trim();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    return '';
  }
}
