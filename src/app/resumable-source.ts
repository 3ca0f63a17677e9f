import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { Descriptor, Manifest } from '../oci/manifest.js';
import { BlobStore, type PartialFile } from '../store/blob-store.js';
import { MultiRegistrySource } from '../transports/multi-registry.js';
import { openRegistrySource } from '../transports/registry/open.js';
import type { ImageSource, OpOptions } from '../transports/types.js';
import { pullConnectionFor, type RegistryAccess } from './registry-access.js';

/** A source that can start a blob part-way (registries, with `Range`). */
export interface RangedSource extends ImageSource {
  /** `offset` in the answer is where the stream really starts: 0 when the range was not honoured. */
  getBlobFrom(repository: string, desc: Descriptor, offset: number, opts?: OpOptions): Promise<{ stream: Readable; offset: number }>;
}

/**
 * Makes blob fetches survive being cut off — a killed process, a dropped
 * link — across runs. Every byte fetched is appended to the cache's
 * `partial/<hex>` before it is passed on; a later fetch of the same blob
 * replays that prefix from disk and asks the registry only for the rest
 * (`Range: bytes=N-`). The engine still sees one stream of the WHOLE blob, so
 * its one verifier hashes every byte, prefix included, and nothing is trusted
 * because it came from our own disk. The blob store drops the partial file
 * once the blob is stored, or when the verifier rejected the bytes.
 */
export class ResumingSource implements ImageSource {
  readonly description: string;
  /** Bytes served from partial files instead of the network, this run. */
  resumedBytes = 0;

  constructor(private readonly inner: RangedSource, private readonly store: BlobStore) {
    this.description = inner.description;
  }

  getManifest(repository: string, reference: string, opts?: OpOptions): Promise<Manifest> {
    return this.inner.getManifest(repository, reference, opts);
  }

  async getBlob(repository: string, desc: Descriptor, opts: OpOptions = {}): Promise<Readable> {
    // Another process appending to the same partial file: fetch without resuming rather than interleave.
    const partial = await this.store.openPartial(desc.digest);
    if (!partial) return this.inner.getBlob(repository, desc, opts);
    try {
      let have = partial.size;
      if (have > desc.size) {
        await partial.truncate();
        have = 0;
      }
      let remote: Readable | undefined;
      if (have < desc.size) {
        const answer = await this.inner.getBlobFrom(repository, desc, have, opts);
        remote = answer.stream;
        if (answer.offset !== have) {
          // The registry sent the whole blob: the prefix is not needed, and appending must start over.
          await partial.truncate();
          have = 0;
        }
      }
      this.resumedBytes += have;
      return Readable.from(spliced(partial, have, remote, desc.size), { objectMode: false, highWaterMark: 1 << 16 });
    } catch (e) {
      await partial.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await this.inner.close();
  }
}

/** The partial file's first `have` bytes, then the remote rest, appended to the file (never past the declared size) before it is passed on. */
async function* spliced(partial: PartialFile, have: number, remote: Readable | undefined, size: number): AsyncGenerator<Buffer> {
  try {
    if (have > 0) {
      for await (const chunk of createReadStream(partial.path, { start: 0, end: have - 1 }) as AsyncIterable<Buffer>) yield chunk;
    }
    if (remote) {
      let written = have;
      for await (const chunk of remote as AsyncIterable<Buffer>) {
        const room = size - written;
        if (room > 0) {
          const part = chunk.length > room ? chunk.subarray(0, room) : chunk;
          await partial.append(part);
          written += part.length;
        }
        yield chunk;
      }
    }
  } finally {
    remote?.destroy();
    await partial.close();
  }
}

/** Every registry an image list names, each behind a ResumingSource on the export's blob cache. */
export function openResumableRegistries(access: RegistryAccess, cacheDir: string): { source: MultiRegistrySource; resumedBytes(): number } {
  const store = new BlobStore(cacheDir);
  const opened: ResumingSource[] = [];
  const source = new MultiRegistrySource((registry) => {
    const s = new ResumingSource(openRegistrySource(pullConnectionFor(access, registry)), store);
    opened.push(s);
    return s;
  });
  return { source, resumedBytes: () => opened.reduce((n, s) => n + s.resumedBytes, 0) };
}
