import type { Readable } from 'node:stream';
import type { Digest } from '../../oci/digest.js';
import type { Descriptor } from '../../oci/manifest.js';
import { asFerryError } from '../../errors.js';
import type { DestinationCapabilities, ImageDestination, OpOptions } from '../types.js';

/**
 * A destination that keeps nothing: every blob streams through the engine's
 * verifier into the void. `ferry verify` is a copy into this sink, so it checks
 * exactly what an import would, with the same code.
 */
export class VerifySink implements ImageDestination {
  readonly description = 'verification';
  /** As many blobs at once as the copy asks for: a bundle read at random verifies several, each hashed on its own worker thread. */
  readonly capabilities: DestinationCapabilities = { concurrentBlobs: 64, globalBlobs: true };
  bytesVerified = 0;
  /** Each failed blob's own error code: the engine reports per image, a repair report is per blob. */
  readonly errors = new Map<Digest, string>();

  /** @param present blobs to treat as held already (a delta's base blobs, which the bundle omits by design). */
  constructor(private readonly present: ReadonlySet<Digest> = new Set()) {}

  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    return this.present.has(desc.digest);
  }

  async putBlob(_repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    try {
      for await (const chunk of data as AsyncIterable<Buffer>) this.bytesVerified += chunk.length;
    } catch (e) {
      const err = asFerryError(e);
      if (err.code !== 'E_ABORTED' && !opts.signal?.aborted) this.errors.set(desc.digest, err.code);
      throw e;
    }
  }

  /** Nothing of a blob is kept: a verdict reached where the blob lies does as well as its bytes. */
  takesVerdict(): boolean {
    return true;
  }

  async putVerdict(_repository: string, desc: Descriptor, verdict: Promise<void>, opts: OpOptions = {}): Promise<void> {
    try {
      await verdict;
      this.bytesVerified += desc.size;
    } catch (e) {
      const err = asFerryError(e);
      if (err.code !== 'E_ABORTED' && !opts.signal?.aborted) this.errors.set(desc.digest, err.code);
      throw e;
    }
  }

  async putManifest(): Promise<void> {}
  async putImage(): Promise<void> {}
  async commit(): Promise<void> {}
  async close(): Promise<void> {}
}
