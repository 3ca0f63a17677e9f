import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

/**
 * Temp-name-then-rename writes. A file at its final name is always complete:
 * an interrupted run leaves only `.ferry-tmp-*` files, which the next run ignores
 * and overwrites.
 */

export const TEMP_MARKER = '.ferry-tmp-';

export function tempPathFor(path: string): string {
  return join(dirname(path), `${TEMP_MARKER}${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}`);
}

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_MARKER);
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = tempPathFor(path);
  try {
    await writeFile(tmp, data, { mode });
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

/** Streams `data` into `path`; the file appears only if the stream ends without error. */
export async function streamToFileAtomic(path: string, data: Readable, opts: { mode?: number; signal?: AbortSignal } = {}): Promise<void> {
  await mkdir(dirname(path), { recursive: true, mode: 0o755 });
  const tmp = tempPathFor(path);
  try {
    await pipeline(data, createWriteStream(tmp, { mode: opts.mode ?? 0o644 }), opts.signal ? { signal: opts.signal } : {});
    await rename(tmp, path);
  } catch (e) {
    data.destroy();
    await rm(tmp, { force: true });
    throw e;
  }
}
