import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { FerryError, isFerryError } from '../../errors.js';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import type { Descriptor } from '../../oci/manifest.js';
import { maybeDecompress } from '../../stream/zstd.js';
import type { OpOptions, SequentialBlob } from '../types.js';
import {
  asBundleError, BundleHead, type ExpectedEntry, firstEntryError, HEAD_MAX_BYTES, metadataCut, wholeMetadataBytes,
} from './bundle-head.js';
import type { BundleInput } from './input.js';
import { type BundleMetadata, type BundlePart, METADATA_MAX_BYTES, parseMetadata } from './metadata.js';
import { type EntryStream, type TarEntry, TarReader } from './tar.js';
import { invocationStdin } from '../../stream/stdin.js';

export { HEAD_MAX_BYTES } from './bundle-head.js';

export interface BundleSourceOptions {
  /** Name for messages when reading a stream (`stdin` by default for '-'). */
  name?: string;
  /** Cap on the manifests, indexes and configs held in memory together. */
  headMaxBytes?: number;
}

/**
 * What layerEntries() yields: a whole layer, or a part of one — then `descriptor`
 * is the part's own (its digest and size), `part` says which layer it is of.
 */
export interface BundleEntry {
  descriptor: Descriptor;
  stream: Readable;
  part?: BundlePart;
}

/**
 * A ferry bundle read front to back (file, stdin or any Readable; zstd
 * detected by magic bytes). open() reads and checks everything up to the
 * first layer — metadata, layout files, every manifest, index and config —
 * so getManifest/getBlob answer from memory; layers then come once, in
 * stored order, from blobs(). Entries are matched by name against what the
 * metadata declares and are never extracted by name, so a hostile name cannot
 * reach the file system.
 */
export class BundleSource extends BundleHead implements BundleInput {
  readonly sequential = true as const;
  private started = false;
  private closed = false;

  private constructor(
    private readonly reader: TarReader,
    private readonly input: Readable,
    where: string,
    metaBytes: Buffer,
    compressed: boolean,
  ) {
    super(where, metaBytes, compressed);
  }

  protected get received(): number {
    return this.reader.received;
  }

  /** @param input a file path, `-` for stdin, or a Readable. */
  static async open(input: string | Readable, opts: BundleSourceOptions = {}): Promise<BundleSource> {
    let raw: Readable;
    let where: string;
    if (typeof input === 'string') {
      where = input === '-' ? opts.name ?? 'stdin' : input;
      raw = input === '-' ? invocationStdin() : createReadStream(input, { highWaterMark: 1 << 20 });
    } else {
      raw = input;
      where = opts.name ?? 'stream';
    }
    let reader: TarReader | undefined;
    try {
      const { compressed, stream } = await maybeDecompress(raw, where);
      reader = new TarReader(stream, where);
      const src = new BundleSource(reader, raw, where, await readFirstEntry(reader, where, compressed), compressed);
      await src.readHead(opts.headMaxBytes ?? HEAD_MAX_BYTES);
      return src;
    } catch (e) {
      raw.destroy();
      await reader?.close();
      throw asBundleError(e, where);
    }
  }

  /** Reads only a bundle file's ferry.json (to learn which volume it is before reading it in order). */
  static async peekMetadata(path: string): Promise<BundleMetadata> {
    return (await BundleSource.peek(path)).metadata;
  }

  /** Reads only a bundle file's ferry.json; also the digest of the whole bundle's metadata (see wholeMetadataDigest). */
  static async peek(path: string): Promise<{ metadata: BundleMetadata; wholeMetadataDigest: Digest }> {
    const raw = createReadStream(path, { highWaterMark: 1 << 20 });
    let reader: TarReader | undefined;
    try {
      const { compressed, stream } = await maybeDecompress(raw, path);
      reader = new TarReader(stream, path);
      const bytes = await readFirstEntry(reader, path, compressed);
      const metadata = parseMetadata(bytes, path);
      return { metadata, wholeMetadataDigest: sha256Digest(metadata.volume ? wholeMetadataBytes(bytes) : bytes) };
    } catch (e) {
      throw asBundleError(e, path);
    } finally {
      raw.destroy();
      await reader?.close().catch(() => undefined);
    }
  }

  /** Reads the next header and checks it is exactly the entry expected next. */
  private async expectEntry(exp: ExpectedEntry, readAhead?: TarEntry): Promise<TarEntry> {
    const header = readAhead ?? await this.reader.next((cause) => this.truncated(`entry ${exp.name}`, exp.blob, exp.part, cause));
    if (header === null) throw this.truncated(`entry ${exp.name}`, exp.blob, exp.part);
    const problem = this.entryProblem(exp, header.name, header.type, header.size);
    if (problem) throw problem();
    return header;
  }

  private async readHead(maxBytes: number): Promise<void> {
    try {
      await this.readHeadEntries(maxBytes);
    } catch (e) {
      throw isFerryError(e, 'E_BUNDLE_TRUNCATED') ? this.headCut(e) : e;
    }
    this.checkGraph();
  }

  private async readHeadEntries(maxBytes: number): Promise<void> {
    // Both layout files follow from the metadata: they are compared with what it implies, the size before any byte,
    // so a hostile entry costs no more than the one the metadata describes (never parsed).
    const [layout, index, blobsDir, shaDir, ...blobs] = this.headEntries();
    await this.expectExactly(await this.expectEntry(layout!), this.exactEntry('oci-layout'));
    await this.expectExactly(await this.expectEntry(index!), this.exactEntry('index.json'));
    this.releaseIndex();
    await this.expectEntry(blobsDir!);
    await this.expectEntry(shaDir!);
    // A reader on a pipe holds every manifest and config until the layers come: all are capped before the first is read.
    this.checkHeadSizes(maxBytes, true);
    for (const exp of blobs) {
      const blob = exp.blob!;
      const header = await this.expectEntry(exp);
      const body = await collect(header);
      const actual = sha256Digest(body);
      if (actual === blob.digest) {
        this.small.set(blob.digest, body);
        continue;
      }
      // A config is needed only by its images: they fail (through getBlob, once the graph says which), the others land.
      // A manifest or index is needed to know what anything needs: the bundle cannot be read.
      if (blob.kind !== 'config') throw this.damagedHeadBlob(blob, actual);
      this.damagedConfigs.push({ blob, actual });
    }
  }

  /**
   * Reads an entry that must be exactly `want`: the header's size is compared
   * first (nothing of a longer entry is read), then the bytes as they come, so
   * the entry is never held or parsed.
   */
  private async expectExactly(entry: TarEntry, { want, why }: { want: Buffer; why: string }): Promise<void> {
    const name = JSON.stringify(entry.name);
    if (entry.size !== want.length) throw this.invalid(`${why}: entry ${name} is ${entry.size} bytes, the metadata implies ${want.length}`, { entry: entry.name, size: entry.size, expected: want.length });
    let at = 0;
    for await (const chunk of entry.body as AsyncIterable<Buffer>) {
      const differs = at + chunk.length > want.length ? 1 : chunk.compare(want, at, at + chunk.length);
      if (differs !== 0) throw this.invalid(`${why}: entry ${name} differs from it${this.indexEntryAt(want, at, chunk)}`, { entry: entry.name });
      at += chunk.length;
    }
  }

  async getBlob(_repository: string, desc: Descriptor): Promise<Readable> {
    const bytes = this.small.get(desc.digest);
    if (bytes) return Readable.from([bytes], { objectMode: false });
    const why = this.unavailable(desc);
    if (why) throw why;
    throw new FerryError('E_INTERNAL', `${this.where}: layer ${desc.digest} can only be read in order through blobs()`, { details: { digest: desc.digest } });
  }

  /** A reader of a stream checks what it reads on the way: nothing is left. */
  async checkRest(): Promise<void> {}

  /** Layer blobs in stored order; checks names, order, sizes and the end of the archive (content is checked by the consumer's VerifyStream). */
  async *blobs(opts: OpOptions = {}): AsyncGenerator<SequentialBlob> {
    // A part alone is not a blob: only a reader of every volume can join it (the next entry drains it).
    // `where` names the file (and volume) in the verifier's messages; the consumer adds the images.
    for await (const { descriptor, stream, part } of this.layerEntries(opts)) if (!part) yield { descriptor, stream, where: this.place };
  }

  /**
   * Every entry after the head in file order, parts of cut layers included: what a reader of volumes joins.
   * A file cut short ends this with E_BUNDLE_TRUNCATED after recording each entry that did not arrive
   * (see skippedEntry and getBlob), so a consumer fails exactly the images that need those.
   */
  async *layerEntries(opts: OpOptions = {}): AsyncGenerator<BundleEntry> {
    if (this.started) throw new FerryError('E_INTERNAL', `${this.where}: blobs() can be read only once`);
    this.started = true;
    const position = new Map(this.tail.map((t, i) => [t.name, i]));
    // An entry met where an earlier declared layer was due: that layer is missing (or moved).
    let ahead: TarEntry | undefined;
    let i = 0;
    /** The entry handed out last: if the file ends inside it, it did not arrive either. */
    let last: { index: number; body: EntryStream } | undefined;
    try {
      for (; i < this.tail.length; i++) {
        opts.signal?.throwIfAborted();
        const due = this.tail[i]!;
        const { blob, part } = due;
        const exp: ExpectedEntry = { name: due.name, type: 'file', blob, ...(part ? { part } : {}) };
        const next = ahead ?? await this.reader.next((cause) => this.truncated(`entry ${exp.name}`, blob, part, cause));
        ahead = undefined;
        if (next !== null && next.name !== exp.name && next.type === 'file' && (position.get(next.name) ?? -1) > i && !this.seenNames.has(next.name)) {
          // Only this layer fails: it is not yielded, and getBlob (which consumers fall back to
          // for blobs the stream did not carry) names it; images that do not need it are unaffected.
          ahead = next;
          this.lostBlobs.set(blob.digest, this.missing(due, next.name));
          continue;
        }
        if (next === null) throw this.truncated(`entry ${exp.name}`, blob, part);
        const entry = await this.expectEntry(exp, next);
        last = { index: i, body: entry.body };
        if (part) yield { descriptor: { digest: part.partDigest, size: part.size, mediaType: blob.mediaType }, stream: entry.body, part };
        else yield { descriptor: { digest: blob.digest, size: blob.size, mediaType: blob.mediaType }, stream: entry.body };
        // The consumer is done with it (or gave up): the reader drains what it left unread before the next entry.
      }
      await this.checkEnd();
    } catch (e) {
      if (!isFerryError(e, 'E_BUNDLE_TRUNCATED')) throw e;
      throw this.tailCut(last && !last.body.complete ? last.index : i, e);
    }
  }

  /** After the last declared blob: no further entry, then the end-of-archive marker and only zeros. */
  private async checkEnd(): Promise<void> {
    const end = (cause?: FerryError): FerryError => this.truncated('the end-of-archive marker', undefined, undefined, cause);
    const extra = await this.reader.next(end);
    if (extra !== null) {
      const shown = JSON.stringify(extra.name.slice(0, 200));
      if (this.seenNames.has(extra.name)) throw this.invalid(`entry ${shown} appears twice`, { entry: extra.name });
      throw this.invalid(`unexpected entry ${shown} after the last declared blob`, { entry: extra.name });
    }
    await this.reader.checkEnd(end);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.input.destroy();
    await this.reader.close().catch(() => undefined);
  }
}

async function readFirstEntry(reader: TarReader, where: string, compressed: boolean): Promise<Buffer> {
  const cut = (cause?: FerryError): FerryError => metadataCut(where, reader.received, compressed, cause);
  const entry = await reader.next(cut);
  if (entry === null) throw cut();
  const refused = firstEntryError(where, entry.name, entry.type, entry.size, METADATA_MAX_BYTES);
  if (refused) throw refused;
  return collect(entry);
}

/** The whole body of a small entry (its size was checked against a cap before). */
async function collect(entry: TarEntry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of entry.body) parts.push(c as Buffer);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}
