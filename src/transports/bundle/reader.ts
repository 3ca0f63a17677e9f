import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, isForeignLayer, type Manifest, MANIFEST_MAX_BYTES, type ParsedManifest, parseManifest } from '../../oci/manifest.js';
import { maybeDecompress } from '../../stream/zstd.js';
import type { OpOptions, SequentialBlob, SequentialSource, SourceImage } from '../types.js';
import { type BundleBlob, type BundleMetadata, type BundlePart, blobEntryName, partEntryName, imageRefName, METADATA_MAX_BYTES, parseMetadata, serialiseMetadata } from './metadata.js';
import { type TarEntry, TarReader } from './tar.js';

export interface BundleSourceOptions {
  /** Name for messages when reading a stream (`stdin` by default for '-'). */
  name?: string;
  /** Cap on the manifests, indexes and configs held in memory together. */
  headMaxBytes?: number;
}

/** Manifests, indexes and configs are kept in memory; together they may not exceed this. */
export const HEAD_MAX_BYTES = 256 * 1024 * 1024;
const CONFIG_MAX_BYTES = 64 * 1024 * 1024;
const SMALL_ENTRY_MAX = 64 * 1024 * 1024;

type Expected = { name: string; type: 'file' | 'directory'; blob?: BundleBlob; part?: BundlePart };

/** An entry after the head: a whole layer, or (in a volume) one part of a layer cut across volumes. */
interface TailEntry {
  name: string;
  blob: BundleBlob;
  part?: BundlePart;
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
export class BundleSource implements SequentialSource {
  readonly sequential = true as const;
  readonly description: string;
  readonly omittedBlobs: ReadonlySet<Digest>;
  private readonly small = new Map<Digest, Buffer>();
  private readonly neededBy = new Map<Digest, string[]>();
  /** Layers whose entries blobs() found missing, with the error that says so. */
  private readonly missingLayers = new Map<Digest, FerryError>();
  /** The blob entries this file holds, in stored order: all of `blobs`, or a volume's share of them. */
  private readonly entries: BundleBlob[];
  private readonly inFile: ReadonlySet<Digest>;
  private layerIndex: number;
  /** The entries after the head, in order: layers and parts. */
  private readonly tail: TailEntry[];
  private started = false;
  private closed = false;
  private wholeMetaDigest: Digest;

  private constructor(
    private readonly reader: TarReader,
    private readonly input: Readable,
    readonly where: string,
    private readonly meta: BundleMetadata,
    private readonly metaDigest: Digest,
    readonly compressed: boolean,
  ) {
    this.description = `bundle ${where}`;
    this.wholeMetaDigest = metaDigest;
    this.omittedBlobs = new Set((meta.delta?.omittedBlobs ?? []).map((b) => b.digest));
    const held = meta.volume ? new Set<string>(meta.volume.blobs) : undefined;
    this.entries = held ? meta.blobs.filter((b) => held.has(b.digest)) : meta.blobs;
    this.inFile = new Set(this.entries.map((b) => b.digest));
    this.layerIndex = this.entries.findIndex((b) => b.kind === 'layer');
    if (this.layerIndex < 0) this.layerIndex = this.entries.length;
    // A part sits where its layer would: both lists are in stored order, so merging by stored position gives the file's order.
    const pos = new Map(meta.blobs.map((b, i) => [b.digest as string, i]));
    const byDigest = new Map(meta.blobs.map((b) => [b.digest as string, b]));
    this.tail = [
      ...this.entries.slice(this.layerIndex).map((blob) => ({ name: blobEntryName(blob.digest), blob })),
      ...(meta.volume?.parts ?? []).map((part) => ({ name: partEntryName(part.digest, part.index), blob: byDigest.get(part.digest)!, part })),
    ].sort((a, b) => pos.get(a.blob.digest)! - pos.get(b.blob.digest)!);
  }

  /** @param input a file path, `-` for stdin, or a Readable. */
  static async open(input: string | Readable, opts: BundleSourceOptions = {}): Promise<BundleSource> {
    let raw: Readable;
    let where: string;
    if (typeof input === 'string') {
      where = input === '-' ? opts.name ?? 'stdin' : input;
      raw = input === '-' ? process.stdin : createReadStream(input, { highWaterMark: 1 << 20 });
    } else {
      raw = input;
      where = opts.name ?? 'stream';
    }
    let reader: TarReader | undefined;
    try {
      const { compressed, stream } = await maybeDecompress(raw, where);
      reader = new TarReader(stream, where);
      const metaBytes = await readFirstEntry(reader, where);
      const meta = parseMetadata(metaBytes, where);
      const src = new BundleSource(reader, raw, where, meta, sha256Digest(metaBytes), compressed);
      src.wholeMetaDigest = meta.volume ? sha256Digest(wholeMetadataBytes(metaBytes)) : src.metaDigest;
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
    const raw = createReadStream(path, { highWaterMark: 1 << 20 });
    let reader: TarReader | undefined;
    try {
      const { stream } = await maybeDecompress(raw, path);
      reader = new TarReader(stream, path);
      return parseMetadata(await readFirstEntry(reader, path), path);
    } catch (e) {
      throw asBundleError(e, path);
    } finally {
      raw.destroy();
      await reader?.close().catch(() => undefined);
    }
  }

  /** The blob entries this file holds (a volume's share, or all). */
  get storedHere(): readonly BundleBlob[] {
    return this.entries;
  }

  get metadata(): BundleMetadata {
    return this.meta;
  }

  /** sha256 of the ferry.json bytes: what a delta built on this bundle records as its base. */
  get metadataDigest(): Digest {
    return this.metaDigest;
  }

  /**
   * For a volume: the digest of its split bundle's STEM.ferry.json, the base a
   * delta of the whole set records; otherwise metadataDigest.
   */
  get wholeMetadataDigest(): Digest {
    return this.wholeMetaDigest;
  }

  /** Images that need `digest`, for messages. */
  imagesNeeding(digest: Digest): string[] {
    return this.neededBy.get(digest) ?? [];
  }

  // ------------------------------------------------------------ head

  private truncated(expected: string, blob?: BundleBlob): FerryError {
    const needers = blob ? this.imagesNeeding(blob.digest) : [];
    const what = blob ? `blob ${blob.digest}${needers.length ? ` (needed by ${needers.slice(0, 5).join(', ')}${needers.length > 5 ? ', …' : ''})` : ''}` : expected;
    return new FerryError('E_BUNDLE_TRUNCATED', `${this.where}: the bundle ends before ${what}`, {
      hint: 'the file is incomplete (interrupted copy or full disk); copy it again and compare its size with the exporting side',
      details: { file: this.where, entry: expected, ...(blob ? { digest: blob.digest, images: needers } : {}) },
    });
  }

  private missing(due: TailEntry, found: string): FerryError {
    const { blob, part } = due;
    const needers = this.imagesNeeding(blob.digest);
    const needs = needers.length ? ` (needed by ${needers.slice(0, 5).join(', ')}${needers.length > 5 ? ', …' : ''})` : '';
    const what = part ? `part ${part.index + 1} of ${part.count} of layer ${blob.digest}` : `layer ${blob.digest}`;
    return new FerryError('E_BUNDLE_INVALID', `${this.where}: ${what}${needs} is missing or out of order: ${JSON.stringify(found)} came where ${due.name} was expected`, {
      hint: 'the bundle lost an entry (damaged or edited copy); copy it again from the exporting side. Images that do not need this layer are not affected',
      details: { file: this.where, digest: blob.digest, images: needers, entry: found },
    });
  }

  private invalid(why: string, details: Record<string, unknown> = {}): FerryError {
    return new FerryError('E_BUNDLE_INVALID', `${this.where}: ${why}`, {
      hint: 'this is not an intact ferry bundle (damaged, hand-made or tampered with); do not use it',
      details: { file: this.where, ...details },
    });
  }

  /** Reads the next header and checks it is exactly the entry expected next. */
  private async expectEntry(exp: Expected, seen: Set<string>, readAhead?: TarEntry): Promise<TarEntry> {
    const header = readAhead ?? await this.reader.next(() => this.truncated(`entry ${exp.name}`, exp.blob));
    if (header === null) throw this.truncated(`entry ${exp.name}`, exp.blob);
    const shown = JSON.stringify(header.name.slice(0, 200));
    if (header.name !== exp.name || header.type !== exp.type) {
      if (seen.has(header.name)) throw this.invalid(`entry ${shown} appears twice`, { entry: header.name });
      const known = this.meta.blobs.some((b) => blobEntryName(b.digest) === header.name) || this.tail.some((t) => t.name === header.name);
      if (known) throw this.invalid(`entry ${shown} is out of order: ${exp.name} was expected here`, { entry: header.name, expected: exp.name });
      throw this.invalid(`unexpected entry ${shown} (${header.type}) where ${exp.name} was expected`, { entry: header.name, expected: exp.name });
    }
    seen.add(header.name);
    const size = exp.part?.size ?? exp.blob?.size;
    if (exp.blob && header.size !== size) {
      throw new FerryError('E_SIZE_MISMATCH', `${this.where}: entry ${exp.name} has ${header.size} bytes, the metadata declares ${size}`, {
        hint: 'the bundle is damaged or was altered; copy it again', details: { file: this.where, digest: exp.blob.digest },
      });
    }
    return header;
  }

  private seenNames = new Set<string>(['ferry.json']);

  private async readHead(maxBytes: number): Promise<void> {
    const seen = this.seenNames;
    const layoutH = await this.expectEntry({ name: 'oci-layout', type: 'file' }, seen);
    if (layoutH.size > 4096) throw this.invalid(`oci-layout is ${layoutH.size} bytes`);
    const layout = parseJson(await collect(layoutH), `${this.where}: oci-layout`);
    if (layout?.imageLayoutVersion !== '1.0.0') throw this.invalid('oci-layout is not {"imageLayoutVersion":"1.0.0"}');

    const indexH = await this.expectEntry({ name: 'index.json', type: 'file' }, seen);
    if (indexH.size > SMALL_ENTRY_MAX) throw this.invalid(`index.json is ${indexH.size} bytes, more than ${SMALL_ENTRY_MAX}`);
    this.checkIndexJson(parseJson(await collect(indexH), `${this.where}: index.json`));

    await this.expectEntry({ name: 'blobs/', type: 'directory' }, seen);
    await this.expectEntry({ name: 'blobs/sha256/', type: 'directory' }, seen);

    let total = 0;
    for (let i = 0; i < this.layerIndex; i++) {
      const blob = this.entries[i]!;
      const exp: Expected = { name: blobEntryName(blob.digest), type: 'file', blob };
      const cap = blob.kind === 'config' ? CONFIG_MAX_BYTES : MANIFEST_MAX_BYTES;
      if (blob.size > cap) throw this.invalid(`${blob.kind} ${blob.digest} declares ${blob.size} bytes, more than the ${cap} allowed`, { digest: blob.digest });
      total += blob.size;
      if (total > maxBytes) throw this.invalid(`manifests and configs add up to more than ${maxBytes} bytes`, { digest: blob.digest });
      const header = await this.expectEntry(exp, seen);
      const body = await collect(header);
      const actual = sha256Digest(body);
      if (actual !== blob.digest) {
        throw new FerryError('E_DIGEST_MISMATCH', `${this.where}: ${blob.kind} ${blob.digest} hashes to ${actual}`, {
          hint: 'the bundle is damaged or was altered; copy it again from the exporting side', details: { file: this.where, digest: blob.digest, actual },
        });
      }
      this.small.set(blob.digest, body);
    }
    this.checkGraph();
  }

  private checkIndexJson(doc: Record<string, unknown> | undefined): void {
    if (!doc || doc.schemaVersion !== 2 || !Array.isArray(doc.manifests)) throw this.invalid('index.json is not an OCI index (schemaVersion 2 with a manifests array)');
    const entries = doc.manifests as unknown[];
    if (entries.length !== this.meta.images.length) throw this.invalid(`index.json lists ${entries.length} images, ferry.json ${this.meta.images.length}`);
    const sizes = new Map(this.meta.blobs.map((b) => [b.digest as string, b.size]));
    this.meta.images.forEach((img, i) => {
      const e = entries[i] as Record<string, unknown> | undefined;
      const ann = (e?.annotations ?? {}) as Record<string, unknown>;
      const name = imageRefName(img);
      if (!e || e.digest !== img.digest || e.mediaType !== img.mediaType || e.size !== sizes.get(img.digest) || ann['org.opencontainers.image.ref.name'] !== name) {
        throw this.invalid(`index.json entry ${i} does not match image ${name} (${img.digest}) of ferry.json`, { image: name, digest: img.digest });
      }
    });
  }

  /**
   * Every manifest's references must be in the bundle (or declared omitted by a
   * delta), with the declared size and kind; index children come before their
   * parents; and every stored blob belongs to some image.
   */
  private checkGraph(): void {
    const pos = new Map<string, number>(this.meta.blobs.map((b, i) => [b.digest, i]));
    // Foreign layers (spec/bundle.md §2.2) are known absent by design, like a delta's omitted blobs.
    const byDigest = new Map<string, BundleBlob>([...this.meta.blobs, ...(this.meta.delta?.omittedBlobs ?? []), ...(this.meta.foreignBlobs ?? [])].map((b) => [b.digest, b]));
    const foreign = new Set<string>((this.meta.foreignBlobs ?? []).map((b) => b.digest));
    const parsed = new Map<Digest, ParsedManifest>();
    for (const b of this.meta.blobs) {
      if (b.kind !== 'index' && b.kind !== 'manifest') continue;
      const p = parseManifest(this.small.get(b.digest)!, b.mediaType, `${this.where}: manifest ${b.digest}`);
      if (p.mediaType !== b.mediaType || (p.kind === 'index') !== (b.kind === 'index')) throw this.invalid(`manifest ${b.digest} is a ${p.mediaType}, the metadata says ${b.kind} ${b.mediaType}`, { digest: b.digest });
      parsed.set(b.digest, p);
    }
    const need = (parent: BundleBlob, d: Descriptor, kinds: string[]): BundleBlob => {
      const have = byDigest.get(d.digest);
      if (!have) {
        throw new FerryError('E_BLOB_MISSING', `${this.where}: ${parent.kind} ${parent.digest} references ${d.digest}, which the bundle neither holds nor declares omitted`, {
          hint: 'the bundle is incomplete; re-export it', details: { file: this.where, digest: d.digest, parent: parent.digest },
        });
      }
      if (have.size !== d.size || !kinds.includes(have.kind)) throw this.invalid(`${parent.digest} references ${d.digest} as ${d.size} bytes (${kinds.join('/')}), the metadata says ${have.size} bytes (${have.kind})`, { digest: d.digest });
      return have;
    };
    const reached = new Set<string>();
    for (const img of this.meta.images) {
      const name = imageRefName(img);
      const visit = (digest: Digest, depth: number): void => {
        const list = this.neededBy.get(digest) ?? [];
        if (!list.includes(name)) list.push(name);
        this.neededBy.set(digest, list);
        reached.add(digest);
        const p = parsed.get(digest);
        if (!p) return;
        if (depth > 4) throw this.invalid(`${name}: indexes nest deeper than 4 levels`);
        const self = byDigest.get(digest)!;
        if (p.kind === 'index') {
          for (const c of p.manifests) {
            need(self, c, ['index', 'manifest']);
            if ((pos.get(c.digest) ?? -1) > (pos.get(digest) ?? -1)) throw this.invalid(`index ${digest} is stored before its child ${c.digest}`, { digest });
            visit(c.digest, depth + 1);
          }
        } else {
          if (p.config) { need(self, p.config, ['config']); visit(p.config.digest, depth + 1); }
          for (const l of p.layers) {
            if (foreign.has(l.digest) && !isForeignLayer(l)) throw this.invalid(`${self.digest} references ${l.digest} as an ordinary layer, the metadata lists it as foreign`, { digest: l.digest });
            need(self, l, ['layer']);
            visit(l.digest, depth + 1);
          }
        }
      };
      visit(img.digest, 0);
    }
    for (const b of [...this.meta.blobs, ...(this.meta.delta?.omittedBlobs ?? []), ...(this.meta.foreignBlobs ?? [])]) {
      if (!reached.has(b.digest)) throw this.invalid(`blob ${b.digest} belongs to no image`, { digest: b.digest });
    }
  }

  // ------------------------------------------------------------ ImageSource

  async getManifest(repository: string, reference: string): Promise<Manifest> {
    let digest: string | undefined;
    if (isDigest(reference)) digest = reference;
    else digest = this.meta.images.find((i) => i.repository === repository && i.tag === reference)?.digest;
    const blob = digest === undefined ? undefined : this.meta.blobs.find((b) => b.digest === digest && (b.kind === 'index' || b.kind === 'manifest'));
    if (!blob) {
      throw new FerryError('E_NOT_FOUND', `${this.where}: no manifest ${repository}${isDigest(reference) ? '@' : ':'}${reference} in the bundle`, {
        hint: 'list the bundle\'s images with `ferry inspect`', details: { file: this.where, repository, reference },
      });
    }
    return { digest: blob.digest, mediaType: blob.mediaType, bytes: this.small.get(blob.digest)! };
  }

  async getBlob(_repository: string, desc: Descriptor): Promise<Readable> {
    const bytes = this.small.get(desc.digest);
    if (bytes) return Readable.from([bytes], { objectMode: false });
    const missing = this.missingLayers.get(desc.digest);
    if (missing) throw missing;
    const vol = this.meta.volume;
    if (vol && !this.inFile.has(desc.digest) && !this.omittedBlobs.has(desc.digest)) {
      throw new FerryError('E_BLOB_MISSING', `${this.where}: blob ${desc.digest} is not in this file, volume ${vol.index + 1} of ${vol.count}; another volume holds it`, {
        hint: 'give every volume of the bundle (or its .sha256 list) to read it whole', details: { file: this.where, digest: desc.digest, volume: vol.index + 1 },
      });
    }
    if (this.omittedBlobs.has(desc.digest)) {
      throw new FerryError('E_BLOB_MISSING', `${this.where}: blob ${desc.digest} is not in this delta bundle (its base has it)`, {
        hint: 'import the base bundle first, or into the same destination', details: { file: this.where, digest: desc.digest },
      });
    }
    throw new FerryError('E_INTERNAL', `${this.where}: layer ${desc.digest} can only be read in order through blobs()`, { details: { digest: desc.digest } });
  }

  async listImages(): Promise<SourceImage[]> {
    return this.meta.images.map((i) => {
      const s: SourceImage = { repository: i.repository, digest: i.digest, origin: i.origin };
      if (i.tag !== undefined) s.tag = i.tag;
      return s;
    });
  }

  /** Why layerEntries() did not deliver a layer (or its part) the file should hold: its entry was missing. */
  skippedEntry(digest: Digest): FerryError | undefined {
    return this.missingLayers.get(digest);
  }

  /** Layer blobs in stored order; checks names, order, sizes and the end of the archive (content is checked by the consumer's VerifyStream). */
  async *blobs(opts: OpOptions = {}): AsyncGenerator<SequentialBlob> {
    // A part alone is not a blob: only a reader of every volume can join it (the next entry drains it).
    for await (const { descriptor, stream, part } of this.layerEntries(opts)) if (!part) yield { descriptor, stream };
  }

  /** Every entry after the head in file order, parts of cut layers included: what a reader of volumes joins. */
  async *layerEntries(opts: OpOptions = {}): AsyncGenerator<BundleEntry> {
    if (this.started) throw new FerryError('E_INTERNAL', `${this.where}: blobs() can be read only once`);
    this.started = true;
    const position = new Map(this.tail.map((t, i) => [t.name, i]));
    // An entry met where an earlier declared layer was due: that layer is missing (or moved).
    let ahead: TarEntry | undefined;
    for (let i = 0; i < this.tail.length; i++) {
      opts.signal?.throwIfAborted();
      const due = this.tail[i]!;
      const { blob, part } = due;
      const exp: Expected = { name: due.name, type: 'file', blob, ...(part ? { part } : {}) };
      const next = ahead ?? await this.reader.next(() => this.truncated(`entry ${exp.name}`, blob));
      ahead = undefined;
      if (next !== null && next.name !== exp.name && next.type === 'file' && (position.get(next.name) ?? -1) > i && !this.seenNames.has(next.name)) {
        // Only this layer fails: it is not yielded, and getBlob (which consumers fall back to
        // for blobs the stream did not carry) names it; images that do not need it are unaffected.
        ahead = next;
        this.missingLayers.set(blob.digest, this.missing(due, next.name));
        continue;
      }
      if (next === null) throw this.truncated(`entry ${exp.name}`, blob);
      const entry = await this.expectEntry(exp, this.seenNames, next);
      if (part) yield { descriptor: { digest: part.partDigest, size: part.size, mediaType: blob.mediaType }, stream: entry.body, part };
      else yield { descriptor: { digest: blob.digest, size: blob.size, mediaType: blob.mediaType }, stream: entry.body };
      // The consumer is done with it (or gave up): the reader drains what it left unread before the next entry.
    }
    await this.checkEnd();
  }

  /** After the last declared blob: no further entry, then the end-of-archive marker and only zeros. */
  private async checkEnd(): Promise<void> {
    const end = (): FerryError => this.truncated('the end-of-archive marker');
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

async function readFirstEntry(reader: TarReader, where: string): Promise<Buffer> {
  const cut = (): FerryError => new FerryError('E_BUNDLE_TRUNCATED', `${where}: the bundle is empty or ends before its metadata`, {
    hint: 'the file is incomplete or not a ferry bundle', details: { file: where },
  });
  const entry = await reader.next(cut);
  if (entry === null) throw cut();
  if (entry.name !== 'ferry.json' || entry.type !== 'file') {
    throw new FerryError('E_BUNDLE_INVALID', `${where}: the first entry is ${JSON.stringify(entry.name.slice(0, 200))}, not ferry.json`, {
      hint: 'this is not a ferry bundle (a plain OCI archive or docker save tar?); ferry reads only bundles it wrote',
      details: { file: where, entry: entry.name.slice(0, 200) },
    });
  }
  if (entry.size > METADATA_MAX_BYTES) {
    throw new FerryError('E_BUNDLE_INVALID', `${where}: ferry.json is ${entry.size} bytes, more than the ${METADATA_MAX_BYTES} allowed`, {
      hint: 'the bundle is damaged or hostile', details: { file: where },
    });
  }
  return collect(entry);
}

/** The whole body of a small entry (its size was checked against a cap before). */
async function collect(entry: TarEntry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of entry.body) parts.push(c as Buffer);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
}

function parseJson(bytes: Buffer, where: string): Record<string, unknown> | undefined {
  try {
    const v = JSON.parse(bytes.toString('utf8')) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    throw new FerryError('E_BUNDLE_INVALID', `${where} is not JSON`, { hint: 'the bundle is damaged; copy it again', details: { file: where } });
  }
}

/** Errors from deeper layers (I/O, zstd) get the bundle's name. */
function asBundleError(e: unknown, where: string): unknown {
  if (e instanceof FerryError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return new FerryError('E_NOT_FOUND', `${where}: no such file`, { hint: 'check the bundle path', details: { file: where }, cause: e });
  if (err?.code && err.syscall) return new FerryError('E_IO', `${where}: ${err.message}`, { cause: e, details: { file: where } });
  return e;
}

/**
 * A volume's ferry.json is its bundle's with a `volume` member added last
 * (spec/bundle.md §9.2); removing it from the parsed raw JSON, whose key order
 * JSON.parse keeps, gives back the exact bytes of STEM.ferry.json.
 */
function wholeMetadataBytes(volumeBytes: Buffer): Buffer {
  const doc = JSON.parse(volumeBytes.toString('utf8')) as Record<string, unknown>;
  delete doc['volume'];
  return serialiseMetadata(doc as unknown as BundleMetadata);
}
