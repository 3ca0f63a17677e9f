import { randomBytes } from 'node:crypto';
import { lstat, open, rm, rmdir, stat, statfs } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { FerryError, fileSystemAdvice } from '../errors.js';
import { formatBytes } from '../format.js';
import { mkdirsDurable } from './atomic.js';
import type { Owner } from './owner.js';

/**
 * Checks made before a long run writes its first byte: that the place it will
 * write to exists (or is made), is what it should be, can really be written
 * (a probe file, as root ignores permission bits but not read-only mounts),
 * and has room. An export can take an hour; failing at its end for something
 * knowable at its start is a defect.
 */

/** `path` will be a file: its folder is created; the path must not be a directory. */
export async function prepareOutputFile(path: string, what: string, opts: { owner?: Owner | undefined } = {}): Promise<void> {
  const full = resolve(path);
  const st = await lstat(full).catch(() => undefined);
  if (st?.isDirectory()) {
    throw new FerryError('E_USAGE', `${what} ${full} is a directory; it must be a file name`, { hint: 'name the file to write, e.g. release.tar', details: { path: full } });
  }
  // The file is written beside its name and renamed over it: a device or pipe there (/dev/full, a FIFO) would be
  // replaced by a regular file (as root, /dev/full was) and the run would end in exit 0 having written nowhere asked.
  const target = await stat(full).catch(() => undefined);
  if (target && !target.isFile() && !target.isDirectory()) {
    throw new FerryError('E_USAGE', `${what} ${full} is ${target.isFIFO() ? 'a pipe' : target.isSocket() ? 'a socket' : 'a device'}, not a file; ferry writes a file beside it and renames it into place, which would replace it`, {
      hint: what === '-o' ? 'write to stdout with `-o -` and redirect it there, or name a regular file' : 'name a regular file to write', details: { path: full },
    });
  }
  await prepareDirectory(dirname(full), `the folder of ${what}`, opts);
}

/**
 * The folders on the way to `dir` that are not there yet, deepest first: what a
 * run that makes `dir` before its first byte must take away again when it then
 * fails (`export --from oci:typo -o new/x.tar` left an empty `new`).
 */
async function missingFolders(dir: string): Promise<string[]> {
  const missing: string[] = [];
  for (let p = resolve(dir); !(await lstat(p).then(() => true, () => false)); p = dirname(p)) {
    missing.push(p);
    if (dirname(p) === p) break;
  }
  return missing;
}

/** Removes `folders` (deepest first) while they are empty: what the run put in one (a work file to resume from) keeps it. */
async function removeEmptyFolders(folders: readonly string[]): Promise<void> {
  for (const folder of folders) {
    if (!(await rmdir(folder).then(() => true, () => false))) return;
  }
}

/**
 * Runs `run`, which makes `dirs` (and the folders above them) before its first
 * byte to know they can be written; when it fails, the folders that were not
 * there before and are still empty are taken away again, so a refused run
 * leaves nothing behind. Folders that existed, or hold what a rerun continues
 * from, stay.
 */
export async function takingBackMadeFolders<T>(dirs: readonly string[], run: () => Promise<T>): Promise<T> {
  const made = await Promise.all(dirs.map((d) => missingFolders(d)));
  try {
    return await run();
  } catch (e) {
    for (const chain of made) await removeEmptyFolders(chain);
    throw e;
  }
}

/**
 * `output` must not be one of the files the run reads (`inputs`, each with its
 * `.ferry.json` beside it): `import b.tar --to docker-archive b.tar` replaced
 * the bundle with the archive and exited 0, the one copy carried across gone.
 * Compared by device and inode, so another spelling of the path (`./b.tar`, a
 * symlink, `..`) is caught too.
 */
export async function refuseInputAsOutput(output: string, inputs: readonly string[], what: string): Promise<void> {
  const out = await stat(resolve(output)).catch(() => undefined);
  if (!out) return;
  for (const input of inputs) {
    if (input === '-') continue;
    for (const file of [input, `${input}.ferry.json`]) {
      const st = await stat(resolve(file)).catch(() => undefined);
      if (st && st.dev === out.dev && st.ino === out.ino) {
        throw new FerryError('E_USAGE', `${what} ${output} is ${file}, which this run reads: writing it would destroy the input`, {
          hint: 'name another file to write; nothing was written', details: { path: resolve(output), input: file },
        });
      }
    }
  }
}

/**
 * `dir` will be written into: it is created when missing (durably, and owned
 * as the target's files will be); it must be a directory that can be written.
 */
export async function prepareDirectory(dir: string, what: string, opts: { owner?: Owner | undefined } = {}): Promise<void> {
  const full = resolve(dir);
  try {
    await mkdirsDurable(full, opts);
  } catch (e) {
    throw unwritable(full, what, e);
  }
  const st = await stat(full).catch((e: unknown) => {
    throw unwritable(full, what, e);
  });
  if (!st.isDirectory()) throw new FerryError('E_IO', `${what} ${full} is not a directory`, { hint: 'give a folder path (or remove the file in the way)', details: { path: full } });
  const probe = join(full, `.ferry-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  try {
    const fh = await open(probe, 'wx');
    await fh.close();
  } catch (e) {
    throw unwritable(full, what, e);
  } finally {
    await rm(probe, { force: true }).catch(() => undefined);
  }
}

export interface SpaceNeed {
  /** A path on the file system that will hold the bytes (it, or its nearest existing parent, is looked at). */
  path: string;
  bytes: number;
  /** What the bytes are, for the message: `the bundle`, `new cache entries`. */
  what: string;
}

/** Free space for every need, summed per file system (two needs on one disk need the sum). */
export async function requireSpace(needs: SpaceNeed[]): Promise<void> {
  const byDevice = new Map<number, { path: string; bytes: number; whats: string[] }>();
  for (const need of needs) {
    if (need.bytes <= 0) continue;
    const existing = await nearestExisting(resolve(need.path));
    const dev = (await stat(existing)).dev;
    const entry = byDevice.get(dev) ?? { path: existing, bytes: 0, whats: [] };
    entry.bytes += need.bytes;
    entry.whats.push(`${need.what} ${formatBytes(need.bytes)}`);
    byDevice.set(dev, entry);
  }
  for (const { path, bytes, whats } of byDevice.values()) {
    const fs = await statfs(path);
    const free = fs.bavail * fs.bsize;
    if (free < bytes) {
      throw new FerryError('E_NO_SPACE', `${path}: ${formatBytes(free)} free, this run needs about ${formatBytes(bytes)} there (${whats.join(', ')})`, {
        hint: 'free space there, or write to another disk (-o, --cache, the target); `ferry plan` shows the sizes beforehand',
        details: { path, freeBytes: free, neededBytes: bytes },
      });
    }
  }
}

async function nearestExisting(path: string): Promise<string> {
  for (let p = path; ; p = dirname(p)) {
    if (await stat(p).then(() => true, () => false)) return p;
    if (dirname(p) === p) return p;
  }
}

function unwritable(path: string, what: string, e: unknown): FerryError {
  const code = (e as NodeJS.ErrnoException).code ?? '';
  const why = code === 'EROFS' ? 'is on a read-only file system'
    : code === 'EACCES' || code === 'EPERM' ? 'is not writable for this user'
    : code === 'ENOTDIR' ? 'has a file where a folder should be'
    : code === 'ENOSPC' ? 'is on a full disk'
    : `cannot be written (${(e as Error).message})`;
  return new FerryError(code === 'ENOSPC' ? 'E_NO_SPACE' : 'E_IO', `${what} ${path} ${why}${code && !why.includes(code) ? ` (${code})` : ''}`, {
    hint: `${fileSystemAdvice(code)?.hint ?? 'pick a folder this user can write to, or fix the permissions or mount, then run the command again'}; nothing was fetched or written`, cause: e, details: { path, errno: code },
  });
}
