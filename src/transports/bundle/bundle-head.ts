import { FerryError } from '../../errors.js';
import { type Digest, isDigest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, isForeignLayer, type Manifest, MANIFEST_MAX_BYTES, type ParsedManifest, parseManifest } from '../../oci/manifest.js';
import type { SourceImage } from '../types.js';
import { type BundleCondition, NOTHING_MISSING } from './input.js';
import { type BundleBlob, type BundleMetadata, type BundlePart, blobEntryName, imageRefName, parseMetadata, partEntryName, serialiseMetadata } from './metadata.js';
import { BLOCK, padding } from './tar.js';
import { ociIndex } from './writer.js';

/**
 * What every reader of one bundle file knows from its metadata alone, and the
 * checks and messages they share: the entries the file must hold and in which
 * order (spec/bundle.md §2, §9.3), the index.json it implies, the size the
 * whole file has, the graph of manifests (§7 rule 5), and the errors that
 * name the file, the blob and the images that need it. The reader read front
 * to back (reader.ts) and the one read at random (file-source.ts) differ only
 * in how they reach the bytes.
 */

/** Manifests and indexes are kept in memory; together they may not exceed this (a reader on a pipe also holds configs). */
export const HEAD_MAX_BYTES = 256 * 1024 * 1024;
export const CONFIG_MAX_BYTES = 64 * 1024 * 1024;

/** `oci-layout`, byte for byte (spec/bundle.md §2). */
export const OCI_LAYOUT = Buffer.from('{"imageLayoutVersion":"1.0.0"}');

/** Tar bytes of an entry with `size` content bytes: its header, the content, the padding. */
export const entryBytes = (size: number): number => BLOCK + size + padding(size);

/** An entry after the head: a whole layer, or (in a volume) one part of a layer cut across volumes. */
export interface TailEntry {
  readonly name: string;
  readonly blob: BundleBlob;
  readonly part?: BundlePart | undefined;
}

/** A TailEntry whose name is made when asked: kept for every layer, the names were 30,000 strings at 10,000 images. */
class TailSlot implements TailEntry {
  constructor(readonly blob: BundleBlob, readonly part?: BundlePart) {}

  get name(): string {
    return this.part ? partEntryName(this.part.digest, this.part.index) : blobEntryName(this.blob.digest);
  }
}

/** What an entry must be, for the messages about it. */
export interface ExpectedEntry {
  name: string;
  type: 'file' | 'directory';
  blob?: BundleBlob;
  part?: BundlePart;
}

export abstract class BundleHead {
  readonly description: string;
  readonly omittedBlobs: ReadonlySet<Digest>;
  /** Manifests and indexes by digest, verified (a reader on a pipe keeps configs here too). */
  protected readonly small = new Map<Digest, Buffer>();
  /**
   * Every blob the metadata names: the stored ones in stored order, then a
   * delta's omitted blobs, then foreign layers. `blobIndex` gives a digest's
   * place in it, and the per-blob tables (the images needing a blob, where a
   * file holds it) are arrays by that place: one map of 100,000 digests rather
   * than a map per table (each ~3.7 MB at 20,000 images).
   */
  protected readonly known: readonly BundleBlob[];
  protected readonly blobIndex = new Map<Digest, number>();
  /**
   * Images that need each blob of `known`, for messages; one name stands alone
   * (most blobs have one image). Filled by checkGraph.
   */
  private readonly neededBy: (string | string[] | undefined)[];
  private graphKnown = false;
  /**
   * Configs and layers this file should hold but cannot deliver, with the error
   * that says why: an entry missing from the file, a config whose bytes are
   * damaged, or everything after the point where the file was cut short.
   */
  protected readonly lostBlobs = new Map<Digest, FerryError>();
  /** index.json as the metadata implies it, made only while its entry is checked (5 MB at 20,000 images). */
  private indexBytes: Buffer | undefined;
  /** The tar bytes a whole file holds, from its metadata: what a cut file falls short of. */
  readonly expectedSize: number;
  /** The blob entries this file holds, in stored order: all of `blobs`, or a volume's share of them. */
  protected readonly entries: BundleBlob[];
  /** A volume's share of the blobs; undefined for a whole bundle, which holds them all (a set of 100,000 digests was ~2.6 MB). */
  protected readonly inFile: ReadonlySet<Digest> | undefined;
  /** Where the layers start in `entries`: before it, manifests, indexes and configs. */
  protected layerIndex: number;
  /** The entries after the head, in order: layers and parts. */
  protected tail: TailEntry[];
  protected readonly wholeMetaDigest: Digest;
  protected readonly meta: BundleMetadata;
  protected readonly metaDigest: Digest;
  /** Entry names met so far, to tell a duplicate from an unknown entry. */
  protected readonly seenNames = new Set<string>(['ferry.json']);

  /** @param metaBytes the file's first entry, ferry.json: parsed (and refused when bad) here, for both readers. */
  protected constructor(readonly where: string, metaBytes: Buffer, readonly compressed: boolean) {
    const meta = parseMetadata(metaBytes, where);
    this.meta = meta;
    this.metaDigest = sha256Digest(metaBytes);
    // A volume carries the whole set's metadata; STEM.ferry.json holds those bytes without the volume's own member.
    this.wholeMetaDigest = meta.volume ? sha256Digest(wholeMetadataBytes(metaBytes)) : this.metaDigest;
    this.description = `bundle ${where}`;
    this.omittedBlobs = new Set((meta.delta?.omittedBlobs ?? []).map((b) => b.digest));
    const extra = [...(meta.delta?.omittedBlobs ?? []), ...(meta.foreignBlobs ?? [])];
    this.known = extra.length > 0 ? [...meta.blobs, ...extra] : meta.blobs;
    for (let i = 0; i < this.known.length; i++) this.blobIndex.set(this.known[i]!.digest, i);
    this.neededBy = new Array<string | string[] | undefined>(this.known.length);
    const held = meta.volume ? new Set<string>(meta.volume.blobs) : undefined;
    this.entries = held ? meta.blobs.filter((b) => held.has(b.digest)) : meta.blobs;
    this.inFile = held ? new Set(this.entries.map((b) => b.digest)) : undefined;
    this.layerIndex = this.entries.findIndex((b) => b.kind === 'layer');
    if (this.layerIndex < 0) this.layerIndex = this.entries.length;
    this.tail = this.entries.slice(this.layerIndex).map((blob) => new TailSlot(blob));
    const parts = meta.volume?.parts ?? [];
    if (parts.length > 0) {
      // A part sits where its layer would: both lists are in stored order, so merging by stored position gives the file's order.
      const pos = (t: TailEntry): number => this.blobIndex.get(t.blob.digest)!;
      this.tail = [...this.tail, ...parts.map((part) => new TailSlot(this.known[this.blobIndex.get(part.digest)!]!, part))].sort((a, b) => pos(a) - pos(b));
    }
    this.expectedSize = entryBytes(metaBytes.length) + entryBytes(OCI_LAYOUT.length) + entryBytes(ociIndex(meta).length) + 2 * BLOCK
      + this.entries.slice(0, this.layerIndex).reduce((n, b) => n + entryBytes(b.size), 0)
      + this.tail.reduce((n, t) => n + entryBytes(t.part?.size ?? t.blob.size), 0) + 2 * BLOCK;
  }

  /** index.json as the metadata implies it (spec/bundle.md §3): the entry must be exactly these bytes. Made again when asked after releaseIndex. */
  protected get expectedIndex(): Buffer {
    return (this.indexBytes ??= ociIndex(this.meta));
  }

  /** The index.json entry has been checked: its expected bytes are not kept. */
  protected releaseIndex(): void {
    this.indexBytes = undefined;
  }

  /** Bytes of the tar that arrived: so far (read front to back), or the whole file (read at random). */
  protected abstract get received(): number;

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
    const at = this.blobIndex.get(digest);
    const n = at === undefined ? undefined : this.neededBy[at];
    return n === undefined ? [] : typeof n === 'string' ? [n] : n;
  }

  /** The head entries in file order after ferry.json: layout files, the two directories, manifests, indexes and configs. */
  protected headEntries(): ExpectedEntry[] {
    return [
      { name: 'oci-layout', type: 'file' }, { name: 'index.json', type: 'file' },
      { name: 'blobs/', type: 'directory' }, { name: 'blobs/sha256/', type: 'directory' },
      ...this.entries.slice(0, this.layerIndex).map((blob) => ({ name: blobEntryName(blob.digest), type: 'file' as const, blob })),
    ];
  }

  /**
   * The caps on what a head may declare, from the metadata alone (before any
   * byte of it is read): each manifest and config, and the manifests (with
   * `configsHeld`, the configs too) together.
   */
  protected checkHeadSizes(maxBytes: number, configsHeld: boolean): void {
    let total = 0;
    for (const blob of this.entries.slice(0, this.layerIndex)) {
      const cap = blob.kind === 'config' ? CONFIG_MAX_BYTES : MANIFEST_MAX_BYTES;
      if (blob.size > cap) throw this.invalid(`${blob.kind} ${blob.digest} declares ${blob.size} bytes, more than the ${cap} allowed`, { digest: blob.digest });
      if (blob.kind === 'config' && !configsHeld) continue;
      total += blob.size;
      if (total > maxBytes) throw this.invalid(`${configsHeld ? 'manifests and configs' : 'manifests'} add up to more than ${maxBytes} bytes`, { digest: blob.digest });
    }
  }

  // ------------------------------------------------------------ messages

  /** The file, for messages about its blobs: a volume says which it is (`rel.001.tar (volume 2 of 3)`). */
  protected get place(): string {
    const v = this.meta.volume;
    return v ? `${this.where} (volume ${v.index + 1} of ${v.count})` : this.where;
  }

  /** Where the file's data stops, for messages: `rel.tar ends at byte 9207 of 262656`. */
  protected endsAt(cause?: FerryError): string {
    return cutPlace(this.place, this.received, this.expectedSize, this.compressed, cause);
  }

  protected cutHint(): string {
    return cutShortHint(this.expectedSize, this.compressed);
  }

  /** The file ends inside or before the entry of `blob` (or `part` of it): that blob did not arrive. */
  protected truncated(expected: string, blob?: BundleBlob, part?: BundlePart, cause?: FerryError): FerryError {
    const needers = blob ? this.imagesNeeding(blob.digest) : [];
    const what = blob ? `${part ? `part ${part.index + 1} of ${part.count} of ` : ''}${blob.kind} ${blob.digest}${neededBy(needers)} did not arrive` : `it ends before ${expected}`;
    return new FerryError('E_BUNDLE_TRUNCATED', `${this.endsAt(cause)}: ${what}`, {
      hint: this.cutHint(), ...(cause ? { cause } : {}),
      details: { file: this.where, offset: this.received, expectedSize: this.expectedSize, entry: expected, ...(blob ? { digest: blob.digest, images: needers } : {}) },
    });
  }

  /** Whether a blob of the head arrived whole (for the list of what a cut head lost). */
  protected headArrived(blob: BundleBlob): boolean {
    return this.small.has(blob.digest);
  }

  /**
   * The file was cut inside its head (manifests, configs): without them no image
   * can be planned, so none is read; every image and every blob that did not
   * arrive is named.
   */
  protected headCut(e: FerryError): FerryError {
    const lost = [...this.entries.filter((b) => !this.headArrived(b)), ...this.tail.filter((t) => t.part).map((t) => t.blob)];
    const images = this.meta.images.map(imageRefName);
    const cause = e.cause instanceof FerryError ? e.cause : undefined;
    return new FerryError('E_BUNDLE_TRUNCATED', `${this.endsAt(cause)}, inside its head (${typeof e.details['entry'] === 'string' ? e.details['entry'] : 'the manifests and configs'}): the manifests and configs did not all arrive, so none of its ${images.length} images can be read: ${listed(images)}`, {
      hint: this.cutHint(), cause: e,
      details: { file: this.where, offset: this.received, expectedSize: this.expectedSize, images, blobs: lost.map((b) => b.digest) },
    });
  }

  /**
   * The file was cut after its head: every entry from `first` on did not arrive.
   * Each such layer (or part) fails alone, through getBlob, so the images whose
   * blobs all arrived still land; the error returned says what was lost.
   */
  protected tailCut(first: number, e: FerryError): FerryError {
    const cause = e.cause instanceof FerryError ? e.cause : undefined;
    const lost: BundleBlob[] = [];
    for (const due of this.tail.slice(first)) {
      if (this.lostBlobs.has(due.blob.digest)) continue;
      this.lostBlobs.set(due.blob.digest, this.truncated(`entry ${due.name}`, due.blob, due.part, cause));
      lost.push(due.blob);
    }
    const images = [...new Set(lost.flatMap((b) => this.imagesNeeding(b.digest)))];
    const details = { file: this.where, offset: this.received, expectedSize: this.expectedSize, images, blobs: lost.map((b) => b.digest), ...(lost[0] ? { digest: lost[0].digest } : {}) };
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

  /** A layer (or part) whose entry is not where it is due: a later one came instead. */
  protected missing(due: TailEntry, found: string): FerryError {
    const { blob, part } = due;
    const needers = this.imagesNeeding(blob.digest);
    const needs = neededBy(needers);
    const what = part ? `part ${part.index + 1} of ${part.count} of layer ${blob.digest}` : `layer ${blob.digest}`;
    return new FerryError('E_BUNDLE_INVALID', `${this.place}: ${what}${needs} is missing or out of order: ${JSON.stringify(found)} came where ${due.name} was expected`, {
      hint: 'the bundle lost an entry (damaged or edited copy); copy it again from the exporting side. Images that do not need this layer are not affected',
      details: { file: this.where, digest: blob.digest, images: needers, entry: found },
    });
  }

  protected invalid(why: string, details: Record<string, unknown> = {}): FerryError {
    return new FerryError('E_BUNDLE_INVALID', `${this.where}: ${why}`, {
      hint: 'this is not an intact ferry bundle (damaged, hand-made or tampered with); do not use it',
      details: { file: this.where, ...details },
    });
  }

  /**
   * The header met where `exp` is due, checked the same way by both readers:
   * its name and type, then (a blob or part) its size; a matching name is
   * recorded as met. What is wrong comes as a function, so that a reader can
   * make the error after the graph is known (it then names the images).
   */
  protected entryProblem(exp: ExpectedEntry, name: string, type: string, size: number): (() => FerryError) | undefined {
    if (name !== exp.name || type !== exp.type) return () => this.wrongEntry(exp, name, type);
    this.seenNames.add(name);
    if (exp.blob && size !== (exp.part?.size ?? exp.blob.size)) return () => this.sizeMismatch(exp, size);
    return undefined;
  }

  /** The layout files follow from the metadata: the bytes each must be exactly, and what to say when it is not. */
  protected exactEntry(name: 'oci-layout' | 'index.json'): { want: Buffer; why: string } {
    return name === 'oci-layout'
      ? { want: OCI_LAYOUT, why: 'oci-layout is not {"imageLayoutVersion":"1.0.0"}' }
      : { want: this.expectedIndex, why: 'index.json is not the index ferry.json describes (spec/bundle.md §3)' };
  }

  /** A manifest, index or config of the head whose bytes do not hash to its digest (the graph is not known yet: the images named are those it tops). */
  protected damagedHeadBlob(blob: BundleBlob, actual: Digest): FerryError {
    return this.damagedBlob(blob, actual, this.meta.images.filter((i) => i.digest === blob.digest).map(imageRefName));
  }

  /** A header that is not the entry expected next: a duplicate, an entry out of order, or one a bundle never holds. */
  protected wrongEntry(exp: ExpectedEntry, name: string, type: string): FerryError {
    const shown = JSON.stringify(name.slice(0, 200));
    if (this.seenNames.has(name)) return this.invalid(`entry ${shown} appears twice`, { entry: name });
    const known = this.meta.blobs.some((b) => blobEntryName(b.digest) === name) || this.tail.some((t) => t.name === name);
    if (known) return this.invalid(`entry ${shown} is out of order: ${exp.name} was expected here`, { entry: name, expected: exp.name });
    return this.invalid(`unexpected entry ${shown} (${type}) where ${exp.name} was expected`, { entry: name, expected: exp.name });
  }

  /** The entry of a blob (or part) whose header declares another size than the metadata. */
  protected sizeMismatch(exp: ExpectedEntry, headerSize: number): FerryError {
    const { blob, part } = exp;
    const size = part?.size ?? blob!.size;
    // Before the graph is known (the head), the images named are those whose top manifest this is.
    const images = this.graphKnown ? this.imagesNeeding(blob!.digest) : this.meta.images.filter((i) => i.digest === blob!.digest).map(imageRefName);
    const what = `${part ? `part ${part.index + 1} of ${part.count} of ` : ''}${blob!.kind} ${blob!.digest}${neededBy(images)}`;
    return new FerryError('E_SIZE_MISMATCH', `${this.place}: the entry of ${what} has ${headerSize} bytes, the metadata declares ${size}`, {
      hint: 'the bundle is damaged or was altered (its tar headers no longer match its metadata), so nothing after this entry can be trusted: copy it again from the exporting side',
      details: { file: this.where, digest: blob!.digest, images, entry: exp.name, size: headerSize, expected: size },
    });
  }

  /** A manifest, index or config whose bytes do not hash to its digest. */
  protected damagedBlob(blob: BundleBlob, actual: Digest, images: string[]): FerryError {
    return new FerryError('E_DIGEST_MISMATCH', `${this.place}: ${blob.kind} ${blob.digest}${neededBy(images)} hashes to ${actual}: its bytes in the file are damaged`, {
      hint: blob.kind === 'config'
        ? 'copy the bundle again from the exporting side, or repair it (ferry verify writes the report, spec/repair.md); images that do not need this config are not affected'
        : 'a damaged manifest makes the bundle unreadable: copy it again from the exporting side',
      details: { file: this.where, digest: blob.digest, actual, images },
    });
  }

  /** For an index.json that differs: ` at byte N, in the descriptor of image X` (where the first differing byte lies). */
  protected indexEntryAt(want: Buffer, at: number, chunk: Buffer): string {
    if (want !== this.indexBytes) return '';
    let k = 0;
    while (k < chunk.length && chunk[k] === want[at + k]) k++;
    const first = at + k;
    const opener = Buffer.from('{"mediaType":"');
    let n = -1;
    for (let i = want.indexOf(opener, 1); i >= 0 && i <= first; i = want.indexOf(opener, i + 1)) n++;
    const img = n >= 0 ? this.meta.images[n] : undefined;
    return ` at byte ${first}${img ? `, in the descriptor of image ${imageRefName(img)}` : ''}`;
  }

  // ------------------------------------------------------------ the graph

  /**
   * Every manifest and index as checkGraph parsed it: the plan takes these rather
   * than parsing each again (at 10,000 images a second parse was ~40 MB of garbage).
   */
  private readonly parsedManifests = new Map<Digest, ParsedManifest>();
  /** `repository:tag` → the image's digest, the first one listed. */
  private taggedImages: Map<string, string> | undefined;

  /**
   * Parses a manifest or index of the head (its bytes already checked against
   * its digest) and checks it is what the metadata says it is; the parse is
   * kept for checkGraph and the plan.
   */
  protected parseHeadManifest(b: BundleBlob, bytes: Buffer): void {
    const p = parseManifest(bytes, b.mediaType, `${this.where}: manifest ${b.digest}`);
    if (p.mediaType !== b.mediaType || (p.kind === 'index') !== (b.kind === 'index')) throw this.invalid(`manifest ${b.digest} is a ${p.mediaType}, the metadata says ${b.kind} ${b.mediaType}`, { digest: b.digest });
    this.parsedManifests.set(b.digest, p);
  }

  /** Configs whose bytes did not hash right; they fail once checkGraph knows their images. */
  protected readonly damagedConfigs: { blob: BundleBlob; actual: Digest }[] = [];

  /**
   * Every manifest's references must be in the bundle (or declared omitted by a
   * delta), with the declared size and kind; index children come before their
   * parents; and every stored blob belongs to some image.
   */
  protected checkGraph(): void {
    // Foreign layers (spec/bundle.md §2.2) are known absent by design, like a delta's omitted blobs: all are in `known`.
    const place = this.blobIndex;
    const foreign = new Set<string>((this.meta.foreignBlobs ?? []).map((b) => b.digest));
    const parsed = this.parsedManifests;
    // A reader that parsed a manifest as it arrived kept only the parse; one that failed to parse stays in `small`, to fail here in order.
    for (const b of this.meta.blobs) {
      if ((b.kind === 'index' || b.kind === 'manifest') && !parsed.has(b.digest)) this.parseHeadManifest(b, this.small.get(b.digest)!);
    }
    const need = (parent: BundleBlob, d: Descriptor, kinds: string[]): BundleBlob => {
      const at = place.get(d.digest);
      const have = at === undefined ? undefined : this.known[at];
      if (!have) {
        throw new FerryError('E_BLOB_MISSING', `${this.where}: ${parent.kind} ${parent.digest} references ${d.digest}, which the bundle neither holds nor declares omitted`, {
          hint: 'the bundle is incomplete; re-export it', details: { file: this.where, digest: d.digest, parent: parent.digest },
        });
      }
      if (have.size !== d.size || !kinds.includes(have.kind)) throw this.invalid(`${parent.digest} references ${d.digest} as ${d.size} bytes (${kinds.join('/')}), the metadata says ${have.size} bytes (${have.kind})`, { digest: d.digest });
      // The same digest held once: the descriptor's own copy of the string (80,000 at 20,000 images, ~8 MB) gives way to the metadata's.
      d.digest = have.digest;
      return have;
    };
    const reached = new Uint8Array(this.known.length);
    for (const img of this.meta.images) {
      // Most origins are the image's own name: that string, not a second copy of it per image.
      const ref = imageRefName(img);
      const name = ref === img.origin ? img.origin : ref;
      const visit = (digest: Digest, depth: number): void => {
        // Every digest visited is known: an image's top is a stored manifest, a child passed need().
        const at = place.get(digest)!;
        const had = this.neededBy[at];
        if (had === undefined) this.neededBy[at] = name;
        else if (typeof had === 'string') { if (had !== name) this.neededBy[at] = [had, name]; }
        else if (!had.includes(name)) had.push(name);
        reached[at] = 1;
        const p = parsed.get(digest);
        if (!p) return;
        if (depth > 4) throw this.invalid(`${name}: indexes nest deeper than 4 levels`);
        const self = this.known[at]!;
        if (p.kind === 'index') {
          for (const c of p.manifests) {
            need(self, c, ['index', 'manifest']);
            if (place.get(c.digest)! > at) throw this.invalid(`index ${digest} is stored before its child ${c.digest}`, { digest });
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
    this.known.forEach((b, i) => {
      if (!reached[i]) throw this.invalid(`blob ${b.digest} belongs to no image`, { digest: b.digest });
    });
    this.graphKnown = true;
    for (const { blob, actual } of this.damagedConfigs) this.lostBlobs.set(blob.digest, this.damagedBlob(blob, actual, this.imagesNeeding(blob.digest)));
  }

  // ------------------------------------------------------------ ImageSource

  async getManifest(repository: string, reference: string): Promise<Manifest> {
    let digest: string | undefined;
    if (isDigest(reference)) digest = reference;
    else {
      // Asked once per image: a scan of every image each time was quadratic at 10,000 images.
      if (!this.taggedImages) {
        this.taggedImages = new Map();
        for (const i of this.meta.images) if (i.tag !== undefined && !this.taggedImages.has(`${i.repository}:${i.tag}`)) this.taggedImages.set(`${i.repository}:${i.tag}`, i.digest);
      }
      digest = this.taggedImages.get(`${repository}:${reference}`);
    }
    const at = digest === undefined ? undefined : this.blobIndex.get(digest as Digest);
    const blob = at === undefined ? undefined : this.known[at];
    if (!blob || (blob.kind !== 'index' && blob.kind !== 'manifest')) {
      throw new FerryError('E_NOT_FOUND', `${this.where}: no manifest ${repository}${isDigest(reference) ? '@' : ':'}${reference} in the bundle`, {
        hint: 'list the bundle\'s images with `ferry inspect`', details: { file: this.where, repository, reference },
      });
    }
    return this.storedManifest(blob);
  }

  /** A manifest or index of the head, verified (a reader at random reads it again when its bytes are asked for). */
  protected storedManifest(blob: BundleBlob): Manifest {
    return { digest: blob.digest, mediaType: blob.mediaType, bytes: this.small.get(blob.digest)! };
  }

  /** The parse of a manifest getManifest gives, as checked when the head was read. */
  parsedManifest(digest: Digest): ParsedManifest | undefined {
    return this.parsedManifests.get(digest);
  }

  /**
   * Why this file cannot give `desc` at all, if it cannot: lost (cut, missing,
   * damaged), held by another volume, or left out of a delta on purpose.
   */
  protected unavailable(desc: Descriptor): FerryError | undefined {
    const lost = this.lostBlobs.get(desc.digest);
    if (lost) return lost;
    const vol = this.meta.volume;
    const images = this.imagesNeeding(desc.digest);
    if (vol && !this.inFile?.has(desc.digest) && !this.omittedBlobs.has(desc.digest)) {
      return new FerryError('E_BLOB_MISSING', `${this.place}: blob ${desc.digest}${neededBy(images)} is not in this file; another volume holds it`, {
        hint: 'give every volume of the bundle (or its .sha256 list) to read it whole', details: { file: this.where, digest: desc.digest, volume: vol.index + 1, images },
      });
    }
    if (this.omittedBlobs.has(desc.digest)) {
      return new FerryError('E_BLOB_MISSING', `${this.where}: blob ${desc.digest}${neededBy(images)} is not in this delta bundle (its base has it)`, {
        hint: 'import the base bundle first, or into the same destination', details: { file: this.where, digest: desc.digest, images },
      });
    }
    return undefined;
  }

  async listImages(): Promise<SourceImage[]> {
    return this.meta.images.map((i) => {
      const s: SourceImage = { repository: i.repository, digest: i.digest, origin: i.origin };
      if (i.tag !== undefined) s.tag = i.tag;
      return s;
    });
  }

  /** For the verifier's messages: the file (and volume) a blob's bytes come from. */
  blobPlace(_desc: Descriptor): string | undefined {
    return this.place;
  }

  /**
   * Read at random: set when the file was cut short (what it lost fails alone;
   * this says the file is not whole). A reader of a stream meets the cut in
   * its blobs() instead.
   */
  get cutShort(): FerryError | undefined {
    return undefined;
  }

  /** Why the file did not deliver a layer (or its part) it should hold: its entry was missing, or the file was cut before it. */
  skippedEntry(digest: Digest): FerryError | undefined {
    return this.lostBlobs.get(digest);
  }

  /** Every config and layer this file should hold but could not deliver, with why. */
  get condition(): BundleCondition {
    return { ...NOTHING_MISSING, unreadable: this.lostBlobs };
  }

  get lost(): ReadonlyMap<Digest, FerryError> {
    return this.lostBlobs;
  }
}

export function neededBy(images: readonly string[]): string {
  return images.length ? ` (needed by ${listed(images)})` : '';
}

export function listed(names: readonly string[]): string {
  return `${names.slice(0, 5).join(', ')}${names.length > 5 ? `, … (${names.length} in all)` : ''}`;
}

/**
 * Where a cut file's data stops. For a plain tar the byte offset is the file's
 * size; inside zstd it is the offset in the decompressed tar.
 */
export function cutPlace(where: string, received: number, expected: number | undefined, compressed: boolean, cause?: FerryError): string {
  const of = expected !== undefined ? ` of ${expected}` : '';
  if (!compressed) return `${where} ends at byte ${received}${of}`;
  return `${where} ends ${cause ? 'inside a zstd frame' : 'early'}: the tar in it stops at byte ${received}${of}`;
}

export function cutShortHint(expected: number, compressed: boolean): string {
  return `the file was cut short (interrupted copy, full disk, dropped transfer): copy it again from the exporting side${compressed ? ' and compare its sha256' : ` (it should be ${expected} bytes)`} and run the command again; what already landed is reused`;
}

/** The file is cut inside (or before the end of) its first entry, ferry.json: nothing can be read from it. */
export function metadataCut(where: string, received: number, compressed: boolean, cause?: FerryError): FerryError {
  return new FerryError('E_BUNDLE_TRUNCATED', `${cutPlace(where, received, undefined, compressed, cause)}, ${received === 0 ? 'it is empty' : 'inside its metadata (ferry.json)'}: nothing can be read from it`, {
    hint: 'the file is incomplete (interrupted copy, full disk) or not a ferry bundle: copy it again from the exporting side and compare its size and sha256', details: { file: where, offset: received }, ...(cause ? { cause } : {}),
  });
}

/** The first entry is not ferry.json, or declares more than the cap. */
export function firstEntryError(where: string, name: string, type: string, size: number, max: number): FerryError | undefined {
  if (name !== 'ferry.json' || type !== 'file') {
    return new FerryError('E_BUNDLE_INVALID', `${where}: the first entry is ${JSON.stringify(name.slice(0, 200))}, not ferry.json`, {
      hint: 'this is not a ferry bundle (a plain OCI archive or docker save tar?); ferry reads only bundles it wrote',
      details: { file: where, entry: name.slice(0, 200) },
    });
  }
  if (size > max) {
    return new FerryError('E_BUNDLE_INVALID', `${where}: ferry.json is ${size} bytes, more than the ${max} allowed`, {
      hint: 'the bundle is damaged or hostile', details: { file: where },
    });
  }
  return undefined;
}

/** Errors from deeper layers (I/O, zstd) get the bundle's name. */
export function asBundleError(e: unknown, where: string): unknown {
  if (e instanceof FerryError) return e;
  const err = e as NodeJS.ErrnoException;
  if (err?.code === 'ENOENT') return new FerryError('E_NOT_FOUND', `${where}: no such file`, { hint: 'check the bundle path', details: { file: where }, cause: e });
  // A folder given as the bundle (the directory it was copied into, an import target): say so, not "illegal operation".
  if (err?.code === 'EISDIR') return new FerryError('E_USAGE', `${where} is a directory, not a bundle file`, { hint: 'name the bundle file itself (release.tar, release.tar.zst) or a split bundle\'s .sha256 list', details: { file: where }, cause: e });
  if (err?.code && err.syscall) return new FerryError('E_IO', `${where}: ${err.message}`, { hint: 'check that the bundle file can be read (permissions, the disk or share it is on), then run the command again', cause: e, details: { file: where, errno: err.code, syscall: err.syscall } });
  return e;
}

/**
 * A volume's ferry.json is its bundle's with a `volume` member added last
 * (spec/bundle.md §9.2); removing it from the parsed raw JSON, whose key order
 * JSON.parse keeps, gives back the exact bytes of STEM.ferry.json.
 */
export function wholeMetadataBytes(volumeBytes: Buffer): Buffer {
  const doc = JSON.parse(volumeBytes.toString('utf8')) as Record<string, unknown>;
  delete doc['volume'];
  return serialiseMetadata(doc as unknown as BundleMetadata);
}
