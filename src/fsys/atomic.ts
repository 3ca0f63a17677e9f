import { constants } from 'node:fs';
import { chown, open, rename, rm, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { type DirSyncBatch, syncDir } from './durable.js';
import { FILE_MODE, mkdirp, naming } from './files.js';
import type { Owner } from './owner.js';
import { tempPathFor } from './temp-names.js';

export { TEMP_MARKER, isTempName, tempPathFor } from './temp-names.js';

/**
 * Temp-name-then-rename writes that survive a power cut. A file at its final
 * name is always complete: its data is fsynced before the rename that
 * publishes it, and the directory after (at once, or noted in `dirSync` for
 * the caller to flush before it publishes what points at the file). An
 * interrupted run leaves only `.ferry-tmp-*` files, which later runs remove
 * (stale-temps.ts). Modes are set with chmod because open()'s mode is masked
 * by the umask, and a registry running as another user must read what we wrote.
 */

export interface DurableWriteOptions {
  /** Note the directory here instead of fsyncing it before returning. */
  dirSync?: DirSyncBatch | undefined;
  /** A scratch file the run removes itself (a spool): atomic, but not worth an fsync. */
  scratch?: boolean;
  /** Who the directories made here belong to (`--owner`, or the target's owner when running as root). */
  owner?: Owner | undefined;
}

/** Creates `dir` and its missing parents; the new entries are made durable (or noted) like a rename's. */
export async function mkdirsDurable(dir: string, opts: DurableWriteOptions = {}): Promise<void> {
  const first = await mkdirp(dir);
  if (first === undefined) return;
  if (opts.owner) for (let d = dir; ; d = dirname(d)) {
    await chown(d, opts.owner.uid, opts.owner.gid);
    if (d === first) break;
  }
  if (opts.scratch) return;
  // Each created directory is an entry in its parent: the parent of the first one, and every created one but the last.
  const parents: string[] = [];
  for (let d = dirname(dir); ; d = dirname(d)) {
    parents.push(d);
    if (d === dirname(first) || d === dirname(d)) break;
  }
  await settleDirs(parents, opts);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, opts: DurableWriteOptions = {}): Promise<void> {
  await mkdirsDurable(dirname(path), opts);
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
    try {
      await fh.writeFile(data);
      await fh.chmod(FILE_MODE);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    await settleDirs([dirname(path)], opts);
  } catch (e) {
    await rm(tmp, { force: true });
    throw naming(e, path);
  }
}

/**
 * A document the user named (an import receipt, an inventory, a repair report).
 * A file is written as writeFileAtomic writes it. A device or pipe there
 * (`/dev/null`, `/dev/stdout`, a FIFO) is written into, as a shell's `>` would:
 * renaming a temp file over it replaced `/dev/null` itself with a regular file.
 */
export async function writeDocument(path: string, data: string | Uint8Array, opts: DurableWriteOptions = {}): Promise<void> {
  // stat, not lstat: /dev/stdout is a link to the descriptor.
  const st = await stat(path).catch(() => undefined);
  if (!st || st.isFile() || st.isDirectory()) return writeFileAtomic(path, data, opts);
  try {
    const fh = await open(path, constants.O_WRONLY);
    try {
      await fh.writeFile(data);
    } finally {
      await fh.close();
    }
  } catch (e) {
    throw naming(e, path);
  }
}

/** Streams `data` into `path`; the file appears only if the stream ends cleanly. Partial data is removed and the error rethrown. */
export async function streamToFileAtomic(path: string, data: Readable, signal?: AbortSignal, opts: DurableWriteOptions = {}): Promise<void> {
  await mkdirsDurable(dirname(path), opts);
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
    try {
      await fh.chmod(FILE_MODE);
      // The stream owns the handle and closes it, fsyncing first (`flush`): a FileHandle a stream used without closing cannot be closed again.
      await pipeline(data, fh.createWriteStream({ highWaterMark: 1 << 20, flush: !opts.scratch }), signal ? { signal } : {});
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
    if (!opts.scratch) await settleDirs([dirname(path)], opts);
  } catch (e) {
    data.destroy();
    await rm(tmp, { force: true });
    throw naming(e, path);
  }
}

async function settleDirs(dirs: string[], opts: DurableWriteOptions): Promise<void> {
  if (opts.dirSync) for (const d of dirs) opts.dirSync.note(d);
  else await Promise.all(dirs.map(syncDir));
}
