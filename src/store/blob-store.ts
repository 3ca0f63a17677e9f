import { constants, createReadStream, createWriteStream } from 'node:fs';
import { chmod, open, rename, rm, stat, truncate, utimes, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../errors.js';
import { type Digest, digestHex } from '../oci/digest.js';
import type { Descriptor } from '../oci/manifest.js';
import { tempPathFor, writeFileAtomic } from '../fsys/atomic.js';
import { syncDir, syncFile } from '../fsys/durable.js';
import { FILE_MODE, mkdirp } from '../fsys/files.js';
import { digestStream } from '../stream/verify.js';
import { takeLock } from './owner-lock.js';

/** Blobs are hundreds of MiB: the default 16/64 KiB chunks cost a syscall (and a promise) each. */
export const BLOB_IO_CHUNK = 1 << 20;

/**
 * A local content-addressed blob directory, `<root>/blobs/sha256/<hex>` (the
 * OCI layout's blob tree, so it is also browsable with standard tools). The
 * export spool: blobs fetched concurrently land here, and a later run reuses
 * what an earlier one left. A file at its final name is always complete
 * (written elsewhere, then renamed), so two processes putting the same blob at
 * once both succeed and the survivor is the same bytes either way.
 *
 * The file a blob is written to before its rename is `<root>/partial/<hex>`,
 * and it stays there when the stream is cut off (a killed process, a dropped
 * link): its bytes are the blob's prefix, which a later fetch replays instead of
 * downloading again (see app/resumable-source.ts). So each byte reaches the
 * disk once, not once for resuming and again for the store.
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
    await mkdirp(join(this.root, 'blobs', 'sha256'));
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
   * fetch replaces it) and false is returned. A good one is about to be reused,
   * so it is touched (see `touch`).
   */
  async verify(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<boolean> {
    if (!(await this.has(desc))) return false;
    const { digest, size } = await digestStream(createReadStream(this.path(desc.digest), { highWaterMark: BLOB_IO_CHUNK }));
    if (digest === desc.digest && size === desc.size) {
      await this.touch(desc.digest);
      return true;
    }
    await rm(this.path(desc.digest), { force: true });
    return false;
  }

  /**
   * Marks a stored blob as used now by moving its mtime, the clock the cache's
   * LRU eviction orders by (store/cache-trim.ts). Not atime: relatime and
   * noatime mounts, the common defaults, do not keep it. Best effort: a blob
   * another user owns in a shared cache keeps its old time, which only makes it
   * an earlier candidate for eviction.
   */
  async touch(digest: Digest): Promise<void> {
    const now = new Date();
    await utimes(this.path(digest), now, now).catch(() => undefined);
  }

  /**
   * Streams `data` — the WHOLE blob, already verified by the caller while it
   * flows — into the blob's partial file, each byte at its offset, and renames
   * that file to the blob's path once the stream ended cleanly. The stream may
   * begin with bytes replayed from this very file (a resume): they are written
   * back over themselves, which is what lets the file equal the stream without
   * the store knowing where they came from.
   *
   * Wrong bytes (the verifier failed) must not be continued by a later resume,
   * so the partial file goes; bytes merely cut short stay for the next run.
   *
   * Only one writer at a time may own the partial file (see `lockPartial`). A
   * put that finds another live writer there streams to a private temp name
   * instead and leaves the partial file alone.
   */
  async put(desc: Pick<Descriptor, 'digest' | 'size'>, data: Readable, opts: { signal?: AbortSignal } = {}): Promise<void> {
    const release = await this.lockPartial(desc.digest);
    if (!release) {
      await this.putPrivate(desc.digest, data, opts.signal);
      return;
    }
    try {
      await this.putThroughPartial(desc.digest, data, opts.signal);
    } finally {
      await release();
    }
  }

  private async putThroughPartial(digest: Digest, data: Readable, signal: AbortSignal | undefined): Promise<void> {
    const partial = this.partialPath(digest);
    try {
      // 'r+' from 0, not 'w' (a resuming source may still be reading the prefix from this file) and not 'a' (O_APPEND ignores positions).
      await (await open(partial, constants.O_RDWR | constants.O_CREAT, FILE_MODE)).close();
      const out = createWriteStream(partial, { flags: 'r+', start: 0, highWaterMark: BLOB_IO_CHUNK });
      await pipeline(data, out, signal ? { signal } : {});
      // A partial file longer than the blob (not this blob's prefix) was overwritten from 0; its tail must go.
      await truncate(partial, out.bytesWritten);
      await chmod(partial, FILE_MODE);
      // A cached blob outlives the run: its bytes on disk before its name says it is whole, the name after.
      await syncFile(partial);
      await mkdirp(join(this.root, 'blobs', 'sha256'));
      await rename(partial, this.path(digest));
      await syncDir(join(this.root, 'blobs', 'sha256'));
    } catch (e) {
      data.destroy();
      if (isBadContent(e)) await this.dropPartial(digest);
      throw e;
    }
  }

  /** The loser of the partial file's lock: a temp name of its own, renamed into place. */
  private async putPrivate(digest: Digest, data: Readable, signal: AbortSignal | undefined): Promise<void> {
    const path = this.path(digest);
    await mkdirp(join(this.root, 'blobs', 'sha256'));
    const tmp = tempPathFor(path);
    try {
      const out = createWriteStream(tmp, { mode: FILE_MODE, highWaterMark: BLOB_IO_CHUNK });
      await pipeline(data, out, signal ? { signal } : {});
      await syncFile(tmp);
      await rename(tmp, path);
      await syncDir(join(this.root, 'blobs', 'sha256'));
    } catch (e) {
      data.destroy();
      await rm(tmp, { force: true });
      throw e;
    }
  }

  /** `<root>/partial/<hex>`: the first bytes of a blob whose fetch was cut off, in order. */
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
   * The partial file, open for reading: a resume replays its first bytes. No
   * lock is taken: the file is opened (so a writer finishing and renaming it
   * away does not matter), and whatever is read goes through the caller's
   * verifier with the rest of the blob, so bytes a concurrent writer changed
   * can fail verification but never reach a destination. Undefined when there
   * is no partial file (or it is empty).
   */
  async openPartial(digest: Digest): Promise<PartialPrefix | undefined> {
    let fh: FileHandle;
    try {
      fh = await open(this.partialPath(digest), 'r');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
      throw e;
    }
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size === 0) {
        await fh.close();
        return undefined;
      }
      return {
        size: st.size,
        read: (length) => fh.createReadStream({ start: 0, end: length - 1, highWaterMark: BLOB_IO_CHUNK }),
        close: async () => { await fh.close().catch(() => undefined); },
      };
    } catch (e) {
      await fh.close().catch(() => undefined);
      throw e;
    }
  }

  async dropPartial(digest: Digest): Promise<void> {
    await rm(this.partialPath(digest), { force: true });
  }

  /**
   * Makes this process the one writer of the blob's partial file (two writers
   * would interleave bytes, and one's rename would leave the other writing into
   * the finished blob). A `.lock` file beside it holds the owner's pid; a lock
   * whose process is gone (killed) is taken over. Returns the release function,
   * or undefined when a live process (this one included) holds the lock.
   */
  async lockPartial(digest: Digest): Promise<(() => Promise<void>) | undefined> {
    await mkdirp(join(this.root, 'partial'));
    const lock = `${this.partialPath(digest)}.lock`;
    if (!(await takeLock(lock))) return undefined;
    return async () => { await rm(lock, { force: true }); };
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
    return createReadStream(p, { highWaterMark: BLOB_IO_CHUNK });
  }
}

/** A partial file opened for replaying its prefix. */
export interface PartialPrefix {
  /** Bytes in the file when it was opened. */
  size: number;
  /** Its first `length` bytes (1 ≤ length ≤ size); the stream closes the file when it ends or is destroyed. */
  read(length: number): Readable;
  /** Closes the file when `read` is not called. */
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
