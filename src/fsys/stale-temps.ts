import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { isMissing } from './files.js';
import { processAlive } from './pid.js';
import { HOST_TAG, isTempName, tempOwner } from './temp-names.js';

/**
 * Removes what killed runs of ferry left in a directory: `.ferry-tmp-*` files
 * and spool directories (a killed export leaves a bundle-sized one, a killed
 * docker-archive import a spool of every layer). An entry goes when its
 * writer's process is gone (same host) or when nothing touched it for a day
 * (pids are reused; another host's runs cannot be asked); a live run's
 * entries are never touched, this process's own least of all. Links are not
 * followed: a link with a temp name is removed as a link.
 */

/** A live writer moves its temp's mtime with every chunk; a day without one is a dead run's. */
export const STALE_TEMP_AGE_MS = 24 * 60 * 60 * 1000;

export interface SweptEntry {
  path: string;
  /** Bytes freed: a file's size, or the files' in a directory (a spool). */
  bytes: number;
}

export async function sweepStaleTemps(dir: string, now = Date.now()): Promise<SweptEntry[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    // Nothing there, or a folder this user may write into but not list: nothing this run can clean.
    if (isMissing(e) || isForbidden(e)) return [];
    throw e;
  }
  const removed: SweptEntry[] = [];
  for (const name of names) {
    if (!isTempName(name)) continue;
    const path = join(dir, name);
    let st;
    try {
      st = await lstat(path);
    } catch (e) {
      if (isMissing(e)) continue; // its writer finished meanwhile
      throw e;
    }
    if (!isStale(name, now - st.mtimeMs)) continue;
    const bytes = st.isDirectory() ? await treeBytes(path) : st.isFile() ? st.size : 0;
    try {
      await rm(path, { recursive: true, force: true });
    } catch (e) {
      // Another user's leftover in a shared folder: theirs to remove.
      if (isForbidden(e)) continue;
      throw e;
    }
    removed.push({ path, bytes });
  }
  return removed;
}

export function isStale(name: string, ageMs: number): boolean {
  const owner = tempOwner(name);
  const here = owner !== undefined && (owner.host === undefined || owner.host === HOST_TAG);
  if (here && owner.pid === process.pid) return false;
  if (ageMs > STALE_TEMP_AGE_MS) return true;
  return here && !processAlive(owner.pid);
}

function isForbidden(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EACCES' || code === 'EPERM' || code === 'EROFS';
}

/** Bytes of the regular files in a tree, links not followed. */
async function treeBytes(dir: string): Promise<number> {
  let total = 0;
  let entries;
  try {
    entries = await readdir(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += await treeBytes(p);
    else if (e.isFile()) total += (await lstat(p).catch(() => undefined))?.size ?? 0;
  }
  return total;
}
