import { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import type { Descriptor, Manifest } from '../oci/manifest.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../transports/types.js';

/**
 * A destination wrapper that keeps a copy of a few small, named blobs (the
 * signature payloads) as they pass to the real destination. The bytes it keeps
 * are those the engine verified: a blob is kept only when its stream ended
 * cleanly, and blobs larger than `maxBytes` are never held.
 */
export class CaptureSink implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  readonly captured = new Map<Digest, Buffer>();

  constructor(private readonly inner: ImageDestination, private readonly wanted: ReadonlySet<Digest>, private readonly maxBytes: number) {
    this.description = inner.description;
    this.capabilities = inner.capabilities;
  }

  hasBlob(repository: string, desc: Descriptor, opts?: OpOptions): Promise<boolean> {
    return this.inner.hasBlob(repository, desc, opts);
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts?: OpOptions): Promise<void> {
    if (!this.wanted.has(desc.digest) || desc.size > this.maxBytes) return this.inner.putBlob(repository, desc, data, opts);
    const chunks: Buffer[] = [];
    // The declared size is capped above and the engine's verifier cuts off longer streams.
    for await (const c of data as AsyncIterable<Buffer>) chunks.push(c);
    const bytes = Buffer.concat(chunks);
    await this.inner.putBlob(repository, desc, Readable.from([bytes]), opts);
    this.captured.set(desc.digest, bytes);
  }

  /** A verdict will do for every blob but those kept here (whose bytes are the point). */
  takesVerdict(desc: Descriptor): boolean {
    return !(this.wanted.has(desc.digest) && desc.size <= this.maxBytes) && this.inner.takesVerdict?.(desc) === true;
  }

  putVerdict(repository: string, desc: Descriptor, verdict: Promise<void>, opts?: OpOptions): Promise<void> {
    return this.inner.putVerdict!(repository, desc, verdict, opts);
  }

  putManifest(repository: string, manifest: Manifest, opts?: OpOptions): Promise<void> {
    return this.inner.putManifest(repository, manifest, opts);
  }

  putImage(image: ImageRecord, opts?: OpOptions): Promise<void> {
    return this.inner.putImage(image, opts);
  }

  commit(opts?: OpOptions): Promise<void> {
    return this.inner.commit(opts);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
