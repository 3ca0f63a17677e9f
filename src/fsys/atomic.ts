import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { chmod, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FILE_MODE, mkdirs } from './files.js';

/**
 * Temp-name-then-rename writes. A file at its final name is always complete:
 * an interrupted run leaves only `.ferry-tmp-*` files, which the next run ignores
 * and overwrites. Modes are set with chmod because open()'s mode is masked by
 * the umask, and a registry running as another user must read what we wrote.
 */

export const TEMP_MARKER = '.ferry-tmp-';

export function tempPathFor(path: string): string {
  return join(dirname(path), `${TEMP_MARKER}${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`);
}

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_MARKER);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array): Promise<void> {
  await mkdirs(dirname(path));
  const tmp = tempPathFor(path);
  try {
    const fh = await open(tmp, 'w', FILE_MODE);
    try {
      await fh.writeFile(data);
      await fh.chmod(FILE_MODE);
    } finally {
      await fh.close();
    }
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Streams `data` into `path`; the file appears only if the stream ends cleanly. Partial data is removed and the error rethrown. */
export async function streamToFileAtomic(path: string, data: Readable, signal?: AbortSignal): Promise<void> {
  await mkdirs(dirname(path));
  const tmp = tempPathFor(path);
  try {
    await pipeline(data, createWriteStream(tmp, { mode: FILE_MODE }), signal ? { signal } : {});
    await chmod(tmp, FILE_MODE);
    await rename(tmp, path);
  } catch (e) {
    data.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
}
