import { mkdir, rmdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';

/**
 * File primitives of the on-disk transports and stores. Modes are set with chmod because
 * the mode given to open() is masked by the umask, and a registry running as
 * another user must be able to read what we wrote (files 0644, dirs 0755).
 */

export const FILE_MODE = 0o644;
export const DIR_MODE = 0o755;

/**
 * mkdir -p, one level at a time. Node's own `recursive` loops for ever where a
 * parent exists but refuses children with ENOENT (e.g. under /proc); here each
 * level is tried once, so that becomes an error naming the path.
 */
export async function mkdirs(dir: string): Promise<void> {
  await mkdirp(dir);
}

/**
 * `mkdir -p`; returns the first directory it created (undefined when all
 * existed). Node's recursive mkdir reports ENOENT for a parent it could not
 * create on a read-only or forbidden file system: the real reason (EROFS,
 * EACCES…) is found by creating the missing directories one at a time.
 */
export async function mkdirp(dir: string): Promise<string | undefined> {
  try {
    return await mkdir(dir, { recursive: true, mode: DIR_MODE });
  } catch (e) {
    // A recursive mkdir over a file says EEXIST, which reads as if all were well: it is a file where a folder should be.
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') throw notADirectory(dir, e);
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    const chain: string[] = [];
    for (let d = dir; d !== dirname(d); d = dirname(d)) chain.unshift(d);
    for (const d of chain) {
      try {
        await mkdir(d, { mode: DIR_MODE });
      } catch (inner) {
        if ((inner as NodeJS.ErrnoException).code !== 'EEXIST') throw inner;
      }
    }
    throw e;
  }
}

function notADirectory(dir: string, cause: unknown): NodeJS.ErrnoException {
  return Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`, { cause }), { code: 'ENOTDIR', errno: -20, syscall: 'mkdir', path: dir });
}

export async function fileSize(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
}

/**
 * Gives a file-system error the name of the file the user knows: a failed
 * write(2) carries no path, and an open of a temp file names the temp. The
 * CLI turns the named error into a message (errors.ts, asFerryError).
 */
export function naming(e: unknown, path: string): unknown {
  const err = e as NodeJS.ErrnoException | undefined;
  if (err && typeof err.code === 'string' && typeof err.syscall === 'string' && (err.path === undefined || err.path.includes('.ferry-tmp-'))) {
    err.path = path;
  }
  return e;
}

export function isMissing(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Removes empty directories from `dir` upwards, stopping at `stop` or the first non-empty one. */
export async function removeEmptyDirs(dir: string, stop: string): Promise<void> {
  let d = dir;
  while (d.startsWith(stop) && d !== stop) {
    try {
      await rmdir(d);
    } catch {
      return;
    }
    d = dirname(d);
  }
}
