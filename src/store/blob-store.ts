import { randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, rm, stat, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FerryError } from '../errors.js';
import { type Digest, digestHex } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { streamToFileAtomic, writeFileAtomic } from '../fsys/atomic.js';
import { digestStream } from '../stream/verify.js';

/**
 * A local content-addressed blob directory, `<root>/blobs/sha256/<hex>` (the
 * OCI layout's blob tree, so it is also browsable with standard tools). The
 * export spool: blobs fetched concurrently land here, and a later run reuses
 * what an earlier one left. A file at its final name is always complete
 * (temp + rename), so two processes putting the same blob at once both succeed
 * and the survivor is the same bytes either way.
 *
 * The store trusts its callers to hand it verified streams; it does not trust
 * its own disk later (see `verify`): a cache outlives the run that filled it.
 */
export class BlobStore {
  constructor(readonly root: string) {}

  /** Paths come only from parsed digests, so nothing here can escape the root. */
  path(digest: Digest): string {
    return join(this.root, 'blobs', 'sha256', digestHex(digest));
  }

  async init(): Promise<void> {
    await mkdir(join(this.root, 'blobs', 'sha256'), { recursive: true, mode: 0o755 });
  }

  /** True when a file of the declared size is stored (size only: see `verify` for content). */
  async has(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<boolean> {
    try {
      const st = await stat(this.path(desc.digest));
      return st.isFile() && st.size === desc.size;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return false;
      throw e;
    }
  }

  /**
   * Hashes the stored file. A file that does not match is removed (so the next
   * fetch replaces it) and false is returned.
   */
  async verify(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<boolean> {
    if (!(await this.has(desc))) return false;
    const { digest, size } = await digestStream(createReadStream(this.path(desc.digest)));
    if (digest === desc.digest && size === desc.size) return true;
    await rm(this.path(desc.digest), { force: true });
    return false;
  }

  /**
   * Streams `data` (already verified by the caller) to the blob's path; visible
   * only once complete. The blob's partial file (see `openPartial`) has served
   * its purpose once the blob is stored, and is wrong once the verifier said the
   * bytes were: either way it goes, so the next fetch starts clean. A stream
   * that was merely cut short keeps it: that prefix is what a resume continues.
   */
  async put(desc: Pick<Descriptor, 'digest' | 'size'>, data: Readable, opts: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await streamToFileAtomic(this.path(desc.digest), data, opts.signal);
    } catch (e) {
      if (isBadContent(e)) await this.dropPartial(desc.digest);
      throw e;
    }
    await this.dropPartial(desc.digest);
  }

  /** `<root>/partial/<hex>`: the bytes of an interrupted fetch, in order, append-only. */
  partialPath(digest: Digest): string {
    return join(this.root, 'partial', digestHex(digest));
  }

  /** Bytes of the blob an earlier (interrupted) fetch left behind; 0 when none. */
  async partialSize(digest: Digest): Promise<number> {
    try {
      const st = await stat(this.partialPath(digest));
      return st.isFile() ? st.size : 0;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
      throw e;
    }
  }

  /**
   * Takes the blob's partial file for appending. Only one writer at a time may
   * append (another process exporting the same blob into the same cache would
   * interleave bytes): a `.lock` file beside it holds the owner's pid, and a
   * lock whose process is gone (killed) is taken over. Returns undefined when a
   * live process holds it; the caller then fetches without resuming.
   */
  async openPartial(digest: Digest): Promise<PartialFile | undefined> {
    const path = this.partialPath(digest);
    await mkdir(join(this.root, 'partial'), { recursive: true, mode: 0o755 });
    const lock = `${path}.lock`;
    if (!(await takeLock(lock))) return undefined;
    let fh: FileHandle;
    try {
      fh = await open(path, 'a', 0o644);
    } catch (e) {
      await rm(lock, { force: true });
      throw e;
    }
    const size = (await fh.stat()).size;
    return {
      path, size,
      append: async (chunk) => { await fh.write(chunk); },
      truncate: async () => { await fh.truncate(0); },
      close: async () => {
        await fh.close().catch(() => undefined);
        await rm(lock, { force: true });
      },
    };
  }

  async dropPartial(digest: Digest): Promise<void> {
    await rm(this.partialPath(digest), { force: true });
  }

  /** For small blobs already in memory (manifests). The caller has checked that `bytes` hash to `digest`. */
  async putBytes(digest: Digest, bytes: Uint8Array): Promise<void> {
    await writeFileAtomic(this.path(digest), bytes);
  }

  /** The stored bytes, unverified. Fails with E_BLOB_MISSING (not a bare ENOENT) when absent. */
  async createReadStream(digest: Digest): Promise<Readable> {
    const p = this.path(digest);
    try {
      await stat(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
      throw new FerryError('E_BLOB_MISSING', `blob store ${this.root}: ${digest} is not stored`, {
        hint: 'the spool directory was changed during the run; run the command again',
        details: { digest, store: this.root },
      });
    }
    return createReadStream(p);
  }
}

export interface PartialFile {
  path: string;
  /** Bytes already in the file when it was opened. */
  size: number;
  append(chunk: Uint8Array): Promise<void>;
  /** Empties the file: the server would not resume, the fetch starts over. */
  truncate(): Promise<void>;
  /** Closes the file and releases the lock; the bytes stay. */
  close(): Promise<void>;
}

/** Wrong bytes (as opposed to too few): a prefix that produced them must not be continued. */
function isBadContent(e: unknown): boolean {
  if (!(e instanceof FerryError)) return false;
  if (e.code === 'E_DIGEST_MISMATCH') return true;
  if (e.code !== 'E_SIZE_MISMATCH') return false;
  const { seen, expectedSize } = e.details as { seen?: unknown; expectedSize?: unknown };
  return typeof seen === 'number' && typeof expectedSize === 'number' && seen > expectedSize;
}

/** `pid token`: the token tells this process from an earlier one that had the same pid. */
const LOCK_OWNER = `${process.pid} ${randomBytes(8).toString('hex')}`;

async function takeLock(lock: string): Promise<boolean> {
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fh = await open(lock, 'wx', 0o644);
      await fh.writeFile(LOCK_OWNER);
      await fh.close();
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const owner = (await readLock(lock)).trim();
    const pid = Number(owner.split(' ')[0]);
    // Our own pid with another token is an earlier process that had the same pid (containers reuse them).
    const live = owner === LOCK_OWNER || (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid));
    if (live) return false;
    // The owner is gone (SIGKILL, power cut) or the file is unreadable: its partial bytes are still good.
    await rm(lock, { force: true });
  }
  return false;
}

async function readLock(lock: string): Promise<string> {
  try {
    const fh = await open(lock, 'r');
    try {
      return await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
  } catch {
    return '';
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
