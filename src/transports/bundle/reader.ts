import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { FerryError, isFerryError } from '../../errors.js';
import { type Digest, isDigest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, isForeignLayer, type Manifest, MANIFEST_MAX_BYTES, type ParsedManifest, parseManifest } from '../../oci/manifest.js';
import { maybeDecompress } from '../../stream/zstd.js';
import type { OpOptions, SequentialBlob, SourceImage } from '../types.js';
import { type BundleCondition, type BundleInput, NOTHING_MISSING } from './input.js';
import { type BundleBlob, type BundleMetadata, type BundlePart, blobEntryName, partEntryName, imageRefName, METADATA_MAX_BYTES, parseMetadata, serialiseMetadata } from './metadata.js';
import { BLOCK, type EntryStream, padding, type TarEntry, TarReader } from './tar.js';
import { ociIndex } from './writer.js';

export interface BundleSourceOptions {
  /** Name for messages when reading a stream (`stdin` by default for '-'). */
  name?: string;
  /** Cap on the manifests, indexes and configs held in memory together. */
  headMaxBytes?: number;
}

/** Manifests, indexes and configs are kept in memory; together they may not exceed this. */
export const HEAD_MAX_BYTES = 256 * 1024 * 1024;
const CONFIG_MAX_BYTES = 64 * 1024 * 1024;

type Expected = { name: string; type: 'file' | 'directory'; blob?: BundleBlob; part?: BundlePart };

/** `oci-layout`, byte for byte (spec/bundle.md §2). */
const OCI_LAYOUT = Buffer.from('{"imageLayoutVersion":"1.0.0"}');

/** Tar bytes of an entry with `size` content bytes: its header, the content, the padding. */
const entryBytes = (size: number): number => BLOCK + size + padding(size);

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
export class BundleSource implements BundleInput {
  readonly sequential = true as const;
  readonly description: string;
  readonly omittedBlobs: ReadonlySet<Digest>;
  private readonly small = new Map<Digest, Buffer>();
  private readonly neededBy = new Map<Digest, string[]>();
  /**
   * Configs and layers this file should hold but cannot deliver, with the error
   * that says why: an entry missing from the file, a config whose bytes are
   * damaged, or everything after the point where the file was cut short.
   */
  private readonly lostBlobs = new Map<Digest, FerryError>();
  /** index.json as the metadata implies it (spec/bundle.md §3): the entry must be exactly these bytes. */
  private readonly expectedIndex: Buffer;
  /** The tar bytes a whole file holds, from its metadata: what a cut file falls short of. */
  readonly expectedSize: number;
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
    metaBytes: number,
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
    this.expectedIndex = ociIndex(meta);
    this.expectedSize = entryBytes(metaBytes) + entryBytes(OCI_LAYOUT.length) + entryBytes(this.expectedIndex.length) + 2 * BLOCK
      + this.entries.slice(0, this.layerIndex).reduce((n, b) => n + entryBytes(b.size), 0)
      + this.tail.reduce((n, t) => n + entryBytes(t.part?.size ?? t.blob.size), 0) + 2 * BLOCK;
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
      const metaBytes = await readFirstEntry(reader, where, compressed);
      const meta = parseMetadata(metaBytes, where);
      const src = new BundleSource(reader, raw, where, meta, sha256Digest(metaBytes), compressed, metaBytes.length);
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

  /** The file, for messages about its blobs: a volume says which it is (`rel.001.tar (volume 2 of 3)`). */
  private get place(): string {
    const v = this.meta.volume;
    return v ? `${this.where} (volume ${v.index + 1} of ${v.count})` : this.where;
  }

  /** Where the file's data stops, for messages: `rel.tar ends at byte 9207 of 262656`. */
  private endsAt(cause?: FerryError): string {
    return cutPlace(this.place, this.reader.received, this.expectedSize, this.compressed, cause);
  }

  private cutHint(): string {
    return cutShortHint(this.expectedSize, this.compressed);
  }

  /** The file ends inside or before the entry of `blob` (or `part` of it): that blob did not arrive. */
  private truncated(expected: string, blob?: BundleBlob, part?: BundlePart, cause?: FerryError): FerryError {
    const needers = blob ? this.imagesNeeding(blob.digest) : [];
    const what = blob ? `${part ? `part ${part.index + 1} of ${part.count} of ` : ''}${blob.kind} ${blob.digest}${neededBy(needers)} did not arrive` : `it ends before ${expected}`;
    return new FerryError('E_BUNDLE_TRUNCATED', `${this.endsAt(cause)}: ${what}`, {
      hint: this.cutHint(), ...(cause ? { cause } : {}),
      details: { file: this.where, offset: this.reader.received, expectedSize: this.expectedSize, entry: expected, ...(blob ? { digest: blob.digest, images: needers } : {}) },
    });
  }

  /**
   * The file was cut inside its head (manifests, configs): without them no image
   * can be planned, so none is read; every image and every blob that did not
   * arrive is named.
   */
  private headCut(e: FerryError): FerryError {
    const lost = [...this.entries.filter((b) => !this.small.has(b.digest)), ...this.tail.filter((t) => t.part).map((t) => t.blob)];
    const images = this.meta.images.map(imageRefName);
    const cause = e.cause instanceof FerryError ? e.cause : undefined;
    return new FerryError('E_BUNDLE_TRUNCATED', `${this.endsAt(cause)}, inside its head (${e.details['entry'] ?? 'the manifests and configs'}): the manifests and configs did not all arrive, so none of its ${images.length} images can be read: ${listed(images)}`, {
      hint: this.cutHint(), cause: e,
      details: { file: this.where, offset: this.reader.received, expectedSize: this.expectedSize, images, blobs: lost.map((b) => b.digest) },
    });
  }

  /**
   * The file was cut after its head: every entry from `first` on did not arrive.
   * Each such layer (or part) fails alone, through getBlob, so the images whose
   * blobs all arrived still land; the error returned says what was lost.
   */
  private tailCut(first: number, e: FerryError): FerryError {
    const cause = e.cause instanceof FerryError ? e.cause : undefined;
    const lost: BundleBlob[] = [];
    for (const due of this.tail.slice(first)) {
      if (this.lostBlobs.has(due.blob.digest)) continue;
      this.lostBlobs.set(due.blob.digest, this.truncated(`entry ${due.name}`, due.blob, due.part, cause));
      lost.push(due.blob);
    }
    const images = [...new Set(lost.flatMap((b) => this.imagesNeeding(b.digest)))];
    const details = { file: this.where, offset: this.reader.received, expectedSize: this.expectedSize, images, blobs: lost.map((b) => b.digest), ...(lost[0] ? { digest: lost[0].digest } : {}) };
    if (lost.length === 0) {
      return new FerryError('E_BUNDLE_TRUNCATED', `${this.endsAt(cause)}, before its end-of-archive marker: every blob arrived whole, but the file is not all there`, {
        hint: `nothing the images need is missing (every blob was checked against its digest), but the file is shorter than the bundle ferry wrote, so its checksum will not match the exporting side's: ${this.cutHint()}`,
        details, cause: e,
      });
    }
    const shown = lost.slice(0, 5).map((b) => `${b.digest}${neededBy(this.imagesNeeding(b.digest))}`);
    return new FerryError('E_BUNDLE_TRUNCATED', `${this.endsAt(cause)}: ${lost.length} of its ${this.tail.length} layer entries did not arrive: ${shown.join(', ')}${lost.length > 5 ? ', …' : ''}`, {
      hint: `${this.cutHint()}; the images that need only what arrived are not affected`, details, cause: e,
    });
  }

  private missing(due: TailEntry, found: string): FerryError {
    const { blob, part } = due;
    const needers = this.imagesNeeding(blob.digest);
    const needs = neededBy(needers);
    const what = part ? `part ${part.index + 1} of ${part.count} of layer ${blob.digest}` : `layer ${blob.digest}`;
    return new FerryError('E_BUNDLE_INVALID', `${this.place}: ${what}${needs} is missing or out of order: ${JSON.stringify(found)} came where ${due.name} was expected`, {
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
    const header = readAhead ?? await this.reader.next((cause) => this.truncated(`entry ${exp.name}`, exp.blob, exp.part, cause));
    if (header === null) throw this.truncated(`entry ${exp.name}`, exp.blob, exp.part);
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
      const { blob, part } = exp;
      // Before the graph is known (the head), the images named are those whose top manifest this is.
      const images = this.neededBy.size ? this.imagesNeeding(blob.digest) : this.meta.images.filter((i) => i.digest === blob.digest).map(imageRefName);
      const what = `${part ? `part ${part.index + 1} of ${part.count} of ` : ''}${blob.kind} ${blob.digest}${neededBy(images)}`;
      throw new FerryError('E_SIZE_MISMATCH', `${this.place}: the entry of ${what} has ${header.size} bytes, the metadata declares ${size}`, {
        hint: 'the bundle is damaged or was altered (its tar headers no longer match its metadata), so nothing after this entry can be trusted: copy it again from the exporting side',
        details: { file: this.where, digest: blob.digest, images, entry: exp.name, size: header.size, expected: size },
      });
    }
    return header;
  }

  private seenNames = new Set<string>(['ferry.json']);

  private async readHead(maxBytes: number): Promise<void> {
    try {
      await this.readHeadEntries(maxBytes);
    } catch (e) {
      throw isFerryError(e, 'E_BUNDLE_TRUNCATED') ? this.headCut(e) : e;
    }
    this.checkGraph();
  }

  private async readHeadEntries(maxBytes: number): Promise<void> {
    const seen = this.seenNames;
    // Both layout files follow from the metadata: they are compared with what it implies, the size before any byte,
    // so a hostile entry costs no more than the one the metadata describes (never parsed).
    await this.expectExactly(await this.expectEntry({ name: 'oci-layout', type: 'file' }, seen), OCI_LAYOUT, 'oci-layout is not {"imageLayoutVersion":"1.0.0"}');
    await this.expectExactly(await this.expectEntry({ name: 'index.json', type: 'file' }, seen), this.expectedIndex, 'index.json is not the index ferry.json describes (spec/bundle.md §3)');

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
      if (actual === blob.digest) {
        this.small.set(blob.digest, body);
        continue;
      }
      const damaged = (images: string[]): FerryError => new FerryError('E_DIGEST_MISMATCH', `${this.place}: ${blob.kind} ${blob.digest}${neededBy(images)} hashes to ${actual}: its bytes in the file are damaged`, {
        hint: blob.kind === 'config'
          ? 'copy the bundle again from the exporting side, or repair it (ferry verify writes the report, spec/repair.md); images that do not need this config are not affected'
          : 'a damaged manifest makes the bundle unreadable: copy it again from the exporting side',
        details: { file: this.where, digest: blob.digest, actual, images },
      });
      // A config is needed only by its images: they fail (through getBlob, once the graph says which), the others land.
      // A manifest or index is needed to know what anything needs: the bundle cannot be read.
      if (blob.kind !== 'config') throw damaged(this.meta.images.filter((i) => i.digest === blob.digest).map(imageRefName));
      this.damagedConfigs.push({ blob, damaged });
    }
  }

  /** Configs whose bytes did not hash right; they fail once checkGraph knows their images. */
  private readonly damagedConfigs: { blob: BundleBlob; damaged: (images: string[]) => FerryError }[] = [];

  /**
   * Reads an entry that must be exactly `want`: the header's size is compared
   * first (nothing of a longer entry is read), then the bytes as they come, so
   * the entry is never held or parsed.
   */
  private async expectExactly(entry: TarEntry, want: Buffer, why: string): Promise<void> {
    const name = JSON.stringify(entry.name);
    if (entry.size !== want.length) throw this.invalid(`${why}: entry ${name} is ${entry.size} bytes, the metadata implies ${want.length}`, { entry: entry.name, size: entry.size, expected: want.length });
    let at = 0;
    for await (const chunk of entry.body as AsyncIterable<Buffer>) {
      const differs = at + chunk.length > want.length ? 1 : chunk.compare(want, at, at + chunk.length);
      if (differs !== 0) throw this.invalid(`${why}: entry ${name} differs from it${this.indexEntryAt(want, at, chunk)}`, { entry: entry.name });
      at += chunk.length;
    }
  }

  /** For an index.json that differs: ` at byte N, in the descriptor of image X` (where the first differing byte lies). */
  private indexEntryAt(want: Buffer, at: number, chunk: Buffer): string {
    if (want !== this.expectedIndex) return '';
    let k = 0;
    while (k < chunk.length && chunk[k] === want[at + k]) k++;
    const first = at + k;
    const opener = Buffer.from('{"mediaType":"');
    let n = -1;
    for (let i = want.indexOf(opener, 1); i >= 0 && i <= first; i = want.indexOf(opener, i + 1)) n++;
    const img = n >= 0 ? this.meta.images[n] : undefined;
    return ` at byte ${first}${img ? `, in the descriptor of image ${imageRefName(img)}` : ''}`;
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
    for (const { blob, damaged } of this.damagedConfigs) this.lostBlobs.set(blob.digest, damaged(this.imagesNeeding(blob.digest)));
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
    const lost = this.lostBlobs.get(desc.digest);
    if (lost) throw lost;
    const vol = this.meta.volume;
    const images = this.imagesNeeding(desc.digest);
    if (vol && !this.inFile.has(desc.digest) && !this.omittedBlobs.has(desc.digest)) {
      throw new FerryError('E_BLOB_MISSING', `${this.place}: blob ${desc.digest}${neededBy(images)} is not in this file; another volume holds it`, {
        hint: 'give every volume of the bundle (or its .sha256 list) to read it whole', details: { file: this.where, digest: desc.digest, volume: vol.index + 1, images },
      });
    }
    if (this.omittedBlobs.has(desc.digest)) {
      throw new FerryError('E_BLOB_MISSING', `${this.where}: blob ${desc.digest}${neededBy(images)} is not in this delta bundle (its base has it)`, {
        hint: 'import the base bundle first, or into the same destination', details: { file: this.where, digest: desc.digest, images },
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

  /** Why layerEntries() did not deliver a layer (or its part) the file should hold: its entry was missing, or the file was cut before it. */
  skippedEntry(digest: Digest): FerryError | undefined {
    return this.lostBlobs.get(digest);
  }

  /** Every config and layer this file should hold but could not deliver, with why; complete once blobs() has ended. */
  get condition(): BundleCondition {
    return { ...NOTHING_MISSING, unreadable: this.lostBlobs };
  }

  get lost(): ReadonlyMap<Digest, FerryError> {
    return this.lostBlobs;
  }

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
        const exp: Expected = { name: due.name, type: 'file', blob, ...(part ? { part } : {}) };
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
        const entry = await this.expectEntry(exp, this.seenNames, next);
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
  const cut = (cause?: FerryError): FerryError => new FerryError('E_BUNDLE_TRUNCATED', `${cutPlace(where, reader.received, undefined, compressed, cause)}, ${reader.received === 0 ? 'it is empty' : 'inside its metadata (ferry.json)'}: nothing can be read from it`, {
    hint: 'the file is incomplete (interrupted copy, full disk) or not a ferry bundle: copy it again from the exporting side and compare its size and sha256', details: { file: where, offset: reader.received }, ...(cause ? { cause } : {}),
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

function neededBy(images: readonly string[]): string {
  return images.length ? ` (needed by ${listed(images)})` : '';
}

function listed(names: readonly string[]): string {
  return `${names.slice(0, 5).join(', ')}${names.length > 5 ? `, … (${names.length} in all)` : ''}`;
}

/**
 * Where a cut file's data stops. For a plain tar the byte offset is the file's
 * size; inside zstd it is the offset in the decompressed tar.
 */
function cutPlace(where: string, received: number, expected: number | undefined, compressed: boolean, cause?: FerryError): string {
  const of = expected !== undefined ? ` of ${expected}` : '';
  if (!compressed) return `${where} ends at byte ${received}${of}`;
  return `${where} ends ${cause ? 'inside a zstd frame' : 'early'}: the tar in it stops at byte ${received}${of}`;
}

function cutShortHint(expected: number, compressed: boolean): string {
  return `the file was cut short (interrupted copy, full disk, dropped transfer): copy it again from the exporting side${compressed ? ' and compare its sha256' : ` (it should be ${expected} bytes)`} and run the command again; what already landed is reused`;
}

/** The whole body of a small entry (its size was checked against a cap before). */
async function collect(entry: TarEntry): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of entry.body) parts.push(c as Buffer);
  return parts.length === 1 ? parts[0]! : Buffer.concat(parts);
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
