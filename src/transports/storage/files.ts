import { createWriteStream } from 'node:fs';
import { chmod, mkdir, open, rename, rm, rmdir, stat } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import { tempPathFor } from '../../fsys/atomic.js';

/**
 * File primitives of the on-disk transports. Modes are set with chmod because
 * the mode given to open() is masked by the umask, and a registry running as
 * another user must be able to read what we wrote (files 0644, dirs 0755).
 */

export const FILE_MODE = 0o644;
export const DIR_MODE = 0o755;

export async function mkdirs(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: DIR_MODE });
}

export async function writeSmallAtomic(path: string, data: string | Uint8Array): Promise<void> {
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

/** Streams into `path`; the file appears only if the stream ends cleanly. Partial data is removed and the error rethrown. */
export async function writeStreamAtomic(path: string, data: Readable, signal?: AbortSignal): Promise<void> {
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

/** Reads a stream to its end without keeping it: the destination already holds the bytes, but the contract says putBlob consumes its input. */
export async function drain(data: Readable, signal?: AbortSignal): Promise<void> {
  for await (const _ of data) {
    if (signal?.aborted) {
      data.destroy();
      throw signal.reason ?? new Error('aborted');
    }
  }
}

/** A link file: exactly `sha256:<hex>`, no newline (distribution parses it strictly). Written atomically. */
export async function writeLink(path: string, digest: Digest): Promise<void> {
  await writeSmallAtomic(path, digest);
}

const LINK_MAX = 256;

/** Reads a link file strictly; undefined when it does not exist. The content is untrusted. */
export async function readLink(path: string): Promise<Digest | undefined> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    if (isMissing(e)) return undefined;
    throw e;
  }
  try {
    const buf = Buffer.alloc(LINK_MAX + 1);
    const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
    const text = buf.subarray(0, bytesRead).toString('utf8');
    if (!isDigest(text)) {
      throw new FerryError('E_MANIFEST_INVALID', `${path}: link file does not hold a sha256 digest (${JSON.stringify(text.slice(0, 80))})`, {
        hint: 'the storage layout is damaged; run `docker-registry garbage-collect` or re-import the images',
        details: { file: path },
      });
    }
    return text;
  } finally {
    await fh.close();
  }
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
