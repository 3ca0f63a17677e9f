import { PassThrough, type Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import type { Descriptor, Manifest } from '../oci/manifest.js';
import { BLOB_IO_CHUNK, type PartialPrefix } from '../store/blob-store.js';
import { MultiRegistrySource } from '../transports/multi-registry.js';
import { openRegistrySource } from '../transports/registry/open.js';
import type { ImageSource, OpOptions } from '../transports/types.js';
import { pullConnectionFor, type RegistryAccess } from './registry-access.js';

/** A source that can start a blob part-way (registries, with `Range`). */
export interface RangedSource extends ImageSource {
  /** `offset` in the answer is where the stream really starts: 0 when the range was not honoured. */
  getBlobFrom(repository: string, desc: Descriptor, offset: number, opts?: OpOptions): Promise<{ stream: Readable; offset: number }>;
}

/** Where the first bytes of a blob an interrupted run fetched are kept: the bundle writer's work file (transports/bundle/writer.ts). */
export interface PrefixSupply {
  openPrefix(digest: Digest): Promise<PartialPrefix | undefined>;
}

/**
 * Makes blob fetches survive being cut off — a killed process, a dropped
 * link — across runs. The bundle writer writes every blob straight into its
 * place in the bundle's work file and journals how far each one had come, so a
 * cut-off fetch leaves its prefix there; a later fetch of the same blob replays
 * that prefix from disk and asks the registry only for the rest
 * (`Range: bytes=N-`). This class only reads the prefix; the writer is its one
 * writer (which is why each byte reaches the disk once). The engine still sees
 * one stream of the WHOLE blob, so its one verifier hashes every byte, prefix
 * included, and nothing is trusted because it came from our own disk.
 */
export class ResumingSource implements ImageSource {
  readonly description: string;
  /**
   * Prefix bytes served instead of the network, by blob: a blob asked for
   * again (its first stream failed, the prefix among the suspects) loses its
   * entry, since what the bundle holds then came from that later read.
   */
  private readonly resumed = new Map<Digest, number>();

  /** Bytes served from prefixes instead of the network, this run. */
  get resumedBytes(): number {
    let n = 0;
    for (const bytes of this.resumed.values()) n += bytes;
    return n;
  }

  /** @param supply answers once the writer knows its work file (the source is opened before it is laid out). */
  constructor(private readonly inner: RangedSource, private readonly supply: () => PrefixSupply | undefined) {
    this.description = inner.description;
  }

  getManifest(repository: string, reference: string, opts?: OpOptions): Promise<Manifest> {
    return this.inner.getManifest(repository, reference, opts);
  }

  async getBlob(repository: string, desc: Descriptor, opts: OpOptions = {}): Promise<Readable> {
    this.resumed.delete(desc.digest);
    const partial = await this.supply()?.openPrefix(desc.digest);
    // Longer than the blob: not its prefix. The writer overwrites it from byte 0.
    if (!partial || partial.size > desc.size) {
      await partial?.close();
      return this.inner.getBlob(repository, desc, opts);
    }
    const have = partial.size;
    let remote: Readable | undefined;
    try {
      if (have < desc.size) {
        const answer = await this.inner.getBlobFrom(repository, desc, have, opts);
        if (answer.offset !== have) {
          // The registry sent the whole blob: the prefix is not needed.
          await partial.close();
          return answer.stream;
        }
        remote = answer.stream;
      }
    } catch (e) {
      await partial.close();
      throw e;
    }
    this.resumed.set(desc.digest, have);
    const prefix = partial.read(have);
    return remote ? concatenated(prefix, remote) : prefix;
  }

  async close(): Promise<void> {
    await this.inner.close();
  }
}

/**
 * `head` then `tail` as one stream. Plain pipes (no per-chunk async
 * iteration); an error in either, or the consumer destroying the result,
 * destroys both, so the registry connection is never left half-read.
 */
function concatenated(head: Readable, tail: Readable): Readable {
  const out = new PassThrough({ highWaterMark: BLOB_IO_CHUNK });
  // Listening from the start: the tail can fail (connection reset) while the head is still playing.
  head.on('error', (e) => out.destroy(e));
  tail.on('error', (e) => out.destroy(e));
  out.on('close', () => {
    head.destroy();
    tail.destroy();
  });
  head.on('end', () => tail.pipe(out));
  head.pipe(out, { end: false });
  return out;
}

/**
 * Every registry an image list names, behind one source, with connections as
 * the user's TLS/HTTP/credential flags and mirrors say. With `resumeFrom` (an
 * export's bundle writer, once laid out) each registry sits behind a ResumingSource.
 */
export function openRegistries(access: RegistryAccess, resumeFrom?: () => PrefixSupply | undefined): { source: MultiRegistrySource; resumedBytes: () => number } {
  const opened: ResumingSource[] = [];
  const source = new MultiRegistrySource((registry) => {
    const direct = openRegistrySource(pullConnectionFor(access, registry));
    if (!resumeFrom) return direct;
    const s = new ResumingSource(direct, resumeFrom);
    opened.push(s);
    return s;
  });
  return { source, resumedBytes: () => opened.reduce((n, s) => n + s.resumedBytes, 0) };
}
