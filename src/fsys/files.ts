import { type FileHandle, mkdir, rmdir, stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

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
 * existed). One level at a time from the nearest existing folder, never
 * Node's recursive mkdir: that one never returns where a parent keeps
 * answering ENOENT although its own parent exists (/proc, /sys: `--to
 * /proc/x` hung for ever), and it reports ENOENT for what was really EROFS or
 * EACCES further up. A file on the way is ENOTDIR, named. `mode` is for
 * each folder it makes (0700 for one that holds secrets).
 */
export async function mkdirp(dir: string, mode = DIR_MODE): Promise<string | undefined> {
  const missing: string[] = [];
  for (let d = resolve(dir); ; d = dirname(d)) {
    const st = await stat(d).catch((e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT' || e.code === 'ENOTDIR') return undefined;
      throw e;
    });
    if (st) {
      if (!st.isDirectory()) throw notADirectory(d, undefined);
      break;
    }
    missing.unshift(d);
    if (dirname(d) === d) break;
  }
  let first: string | undefined;
  for (const d of missing) {
    try {
      await mkdir(d, { mode });
      first ??= d;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // Made meanwhile by a concurrent run: fine if it is a folder.
      if (!(await stat(d)).isDirectory()) throw notADirectory(d, e);
    }
  }
  return first;
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

/** Bytes [position, position + length) in one buffer (small reads: headers, manifests); shorter at the end of the file. */
export async function readAt(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let got = 0;
  while (got < length) {
    const { bytesRead } = await handle.read(buf, got, length - got, position + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got === length ? buf : buf.subarray(0, got);
}
