import { createReadStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
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

  /** Streams `data` (already verified by the caller) to the blob's path; visible only once complete. */
  async put(desc: Pick<Descriptor, 'digest' | 'size'>, data: Readable, opts: { signal?: AbortSignal } = {}): Promise<void> {
    await streamToFileAtomic(this.path(desc.digest), data, opts.signal);
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
