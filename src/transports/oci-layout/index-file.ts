import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../errors.js';
import { MANIFEST_MAX_BYTES, type Descriptor, parseManifest } from '../../oci/manifest.js';
import { MT } from '../../oci/media-types.js';
import { fileSize } from '../../fsys/files.js';
import type { FileSystemPort } from '../../fsys/port.js';
import { readLock, takeLock } from '../../store/owner-lock.js';
import { INDEX_FILE } from './paths.js';

/** Reads a layout's index.json (untrusted: size-capped, every descriptor validated). Undefined when absent. */
export async function readIndexFile(root: string, fs?: Pick<FileSystemPort, 'readFileHead'>): Promise<Descriptor[] | undefined> {
  const path = join(root, INDEX_FILE);
  let bytes: Buffer | undefined;
  if (fs) {
    bytes = await fs.readFileHead(path, MANIFEST_MAX_BYTES + 1);
  } else {
    const size = await fileSize(path);
    if (size !== undefined && size > MANIFEST_MAX_BYTES) throw tooLarge(path);
    bytes = size === undefined ? undefined : await readFile(path);
  }
  if (bytes === undefined) return undefined;
  if (bytes.length > MANIFEST_MAX_BYTES) throw tooLarge(path);
  const parsed = parseManifest(bytes, MT.ociIndex, path);
  if (parsed.kind !== 'index') throw new FerryError('E_MANIFEST_INVALID', `${path}: not an image index`, { hint: 'the layout is damaged', details: { file: path } });
  return parsed.manifests;
}

function tooLarge(path: string): FerryError {
  return new FerryError('E_MANIFEST_INVALID', `${path}: more than ${MANIFEST_MAX_BYTES} bytes is too large for an index`, { hint: 'the layout is damaged', details: { file: path } });
}

export function indexFileBytes(manifests: Descriptor[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests }));
}

export const INDEX_LOCK = `${INDEX_FILE}.lock`;

/** How long a run waits for another one's index.json update: that takes milliseconds, so this much means a stuck process. */
const LOCK_WAIT_MS = 120_000;

/**
 * Runs `update` (read index.json, merge, write it) holding the layout's
 * index lock: `index.json.lock`, a pid-owned lock file (store/owner-lock.ts)
 * that a dead owner's run leaves behind and a later run takes over. Without
 * it, two imports into one layout both read the old index and the slower one
 * writes over the other's entries.
 */
export async function withIndexLock<T>(root: string, update: () => Promise<T>, signal?: AbortSignal): Promise<T> {
  const lock = join(root, INDEX_LOCK);
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (let wait = 10; !(await takeLock(lock)); wait = Math.min(wait * 2, 250)) {
    if (signal?.aborted) throw signal.reason ?? new Error('aborted');
    if (Date.now() > deadline) {
      const owner = (await readLock(lock)) ?? '';
      throw new FerryError('E_IO', `${lock}: another process (pid ${owner.split(' ')[0] || '?'}) has held the OCI layout's index lock for over ${LOCK_WAIT_MS / 1000} s`, {
        hint: 'another ferry import into this layout is running or stuck: wait for it, or stop it and run the import again', details: { file: lock },
      });
    }
    await new Promise((r) => setTimeout(r, wait));
  }
  try {
    return await update();
  } finally {
    await rm(lock, { force: true });
  }
}
