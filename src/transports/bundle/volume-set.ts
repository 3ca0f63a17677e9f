// The volume reader: a split bundle's volumes read as one source, each layer from the volume holding it, a layer cut across volumes joined from its parts.
import { stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { PassThrough, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { asFerryError, FerryError, isFerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import type { Descriptor, Manifest } from '../../oci/manifest.js';
import { type FileRange, VerifyStream } from '../../stream/verify.js';
import { writable } from '../../stream/drain.js';
import { expandFileGlobs } from '../../fsys/glob.js';
import type { OpOptions, SequentialBlob, SourceImage } from '../types.js';
import { type BundleCondition, type BundleInput, NOTHING_MISSING } from './input.js';
import type { BundleBlob, BundleMetadata, BundlePart } from './metadata.js';
import { FileBundleSource, randomAccessible } from './file-source.js';
import { Lookahead } from './lookahead.js';
import { joinStreams } from './range-reader.js';
import { type BundleEntry, BundleSource } from './reader.js';
import { parseVolumeName } from './volumes.js';
import { type CheckedVolume, checkVolumeSet, isUnreadableBundleError, type VolumeSetInfo } from './volume-set-check.js';

/** A given volume as the reader uses it. */
interface Member extends CheckedVolume {
  /** Read at random: the file, open (its entries located) since the set was opened. */
  source?: FileBundleSource | undefined;
}

/** One entry of one volume, as the volumes are read in order. */
interface Step {
  m: Member;
  entry: BundleEntry;
}

/**
 * Opens what a reader command was given: one bundle, one or several volumes of
 * a split bundle, or the split bundle's `.sha256` list. A plain bundle is read
 * as always; volumes become one VolumeSetSource.
 */
export async function openBundleInput(given: readonly string[], opts: { sequential?: boolean } = {}): Promise<BundleSource | FileBundleSource | VolumeSetSource> {
  const inputs = await expandFileGlobs(given);
  const [first] = inputs;
  if (first === undefined) throw new FerryError('E_USAGE', 'no bundle given', { hint: 'name a bundle file, its volumes, or their .sha256 list' });
  if (inputs.length === 1 && (first === '-' || !first.endsWith('.sha256'))) {
    // A pipe given by name (`<(zstd -dc …)`, /dev/stdin, a FIFO) can be read only once, as stdin is: peeking at
    // its head first would take those bytes from the one read, and the rest would look like a damaged tar.
    if (first === '-' || (await stat(first).then((st) => !st.isFile(), () => false))) return BundleSource.open(first);
    const meta = await BundleSource.peekMetadata(first);
    if (!meta.volume) return !opts.sequential && (await randomAccessible(first)) ? FileBundleSource.open(first) : BundleSource.open(first);
  }
  return VolumeSetSource.open(inputs, opts);
}

/**
 * A split bundle read as one source: the head (metadata, manifests) from the
 * first usable volume, the layers from the volume that holds each. A missing,
 * damaged or unreadable volume fails only the layers it holds, so the images
 * that do not need them still import; the errors name the volume and its file.
 *
 * Uncompressed volumes are read in place, at random: every volume is opened
 * (its entries located, a cut one's losses known) when the set is, a layer is
 * a range of the volume holding it, and a layer cut across volumes is its
 * parts' ranges one after the other, each part checked against its own digest
 * on the way. zstd volumes are read front to back, one after the other
 * (`sequential`), the layers in volume order.
 */
export class VolumeSetSource implements BundleInput {
  readonly sequential: boolean;
  readonly immutable: boolean;
  readonly description: string;
  readonly omittedBlobs: ReadonlySet<Digest>;
  /** Layers that cannot be had, with why. */
  private blobIndex: Map<Digest, BundleBlob> | undefined;
  private wholeIndex: Map<Digest, Member> | undefined;
  private readonly failed = new Map<Digest, FerryError>();
  /** Layers cut across volumes of which only some were given, whose given parts failed their own digests. */
  private readonly badParts = new Map<Digest, FerryError>();
  /** Layers the given volumes hold entirely: whole, or every one of their parts. */
  private readonly held: ReadonlySet<Digest>;
  /** Volumes found cut short (E_BUNDLE_TRUNCATED), with the error that says what each lost. */
  private readonly cuts: { m: Member; error: FerryError }[] = [];
  private readonly open = new Set<BundleSource | FileBundleSource>();
  private started = false;

  private constructor(
    private readonly head: BundleSource | FileBundleSource,
    private readonly headIndex: number,
    private readonly members: Member[],
    readonly info: VolumeSetInfo,
    readonly where: string,
    /** Given files that could not be read even as far as their metadata, by the volume index their names give. */
    private readonly unreadable: ReadonlyMap<number, { file: string; error: FerryError }> = new Map(),
  ) {
    this.description = `bundle ${where}`;
    this.sequential = head.sequential;
    this.immutable = !head.sequential;
    this.omittedBlobs = head.omittedBlobs;
    this.open.add(head);
    this.held = heldLayers(members);
    this.noteMissing();
    for (const [index, { file, error }] of unreadable) if (isFerryError(error, 'E_BUNDLE_TRUNCATED')) this.cuts.push({ m: { index, file, layers: [], parts: [] }, error });
    // A damaged volume (per the sidecar, or one whose head cannot be read) is not read at all: what it holds fails now.
    for (const m of members) {
      if (!m.unusable) continue;
      if (isFerryError(m.unusable, 'E_BUNDLE_TRUNCATED')) this.cuts.push({ m, error: m.unusable });
      for (const l of m.layers) this.failLayer(m, l.digest, m.unusable);
      for (const p of m.parts) this.failLayer(m, p.digest, m.unusable, p);
    }
  }

  /** @param opts.sequential read front to back even when the volumes could be read at random. */
  static async open(inputs: readonly string[], opts: { sequential?: boolean } = {}): Promise<VolumeSetSource> {
    const { members, info, unreadable } = await checkVolumeSet(inputs);
    const ordered: Member[] = members;
    const count = info.count;
    const random = !opts.sequential && (await Promise.all(ordered.map((m) => randomAccessible(m.file)))).every(Boolean);
    // Every volume holds the whole head: one that cannot be read (cut inside its head, damaged) gives way to the next.
    let head: BundleSource | FileBundleSource | undefined;
    let headMember: Member | undefined;
    for (const m of ordered) {
      if (m.unusable) continue;
      try {
        head = random ? await FileBundleSource.open(m.file) : await BundleSource.open(m.file);
        if (head instanceof FileBundleSource) m.source = head;
        headMember = m;
        break;
      } catch (e) {
        const err = asFerryError(e);
        if (!isUnreadableBundleError(err)) throw e;
        m.unusable = err;
      }
    }
    if (!head || !headMember) throw ordered.find((m) => m.unusable)?.unusable ?? new FerryError('E_INTERNAL', 'no volume to read');
    const name = basename(headMember.file);
    const stem = parseVolumeName(name)?.stem ?? name;
    const set = new VolumeSetSource(head, headMember.index, ordered, info, `${join(dirname(headMember.file), stem)}.* (${ordered.length} of ${count} volumes)`, unreadable);
    if (random) {
      try {
        await set.openMembers();
      } catch (e) {
        await set.close();
        throw e;
      }
    }
    return set;
  }

  /**
   * Read at random: opens every other usable volume (which locates its entries)
   * and records what each cannot give — a volume cut short, an entry missing, a
   * volume whose head cannot be read — as reading it front to back would; then
   * checks that each layer cut across volumes continues from one volume to the
   * next as spec/bundle.md §9.3 rule 5 says.
   */
  private async openMembers(): Promise<void> {
    for (const m of this.members) {
      if (m.unusable) continue;
      let src = m.source;
      try {
        if (!src) {
          src = await FileBundleSource.open(m.file);
          m.source = src;
          this.open.add(src);
        }
        if (src.metadata.bundleId !== this.metadata.bundleId) throw new FerryError('E_BUNDLE_INVALID', `${m.file} changed while it was read`, { hint: 'do not modify volumes while ferry reads them' });
      } catch (e) {
        const err = asFerryError(e);
        if (!isUnreadableBundleError(err)) throw e;
        if (src) {
          this.open.delete(src);
          await src.close();
          m.source = undefined;
        }
        for (const l of m.layers) this.failLayer(m, l.digest, err);
        for (const p of m.parts) this.failLayer(m, p.digest, err, p);
        if (err.code === 'E_BUNDLE_TRUNCATED') this.cuts.push({ m, error: err });
        continue;
      }
      // Entries the volume lacks (cut off, missing from the middle) carry its own error.
      for (const l of m.layers) {
        const why = src.skippedEntry(l.digest);
        if (why) this.failLayer(m, l.digest, why);
      }
      for (const p of m.parts) {
        const why = src.hasPart(p) ? undefined : src.skippedEntry(p.digest);
        if (why) this.failLayer(m, p.digest, why, p);
      }
      if (src.cutShort) this.cuts.push({ m, error: src.cutShort });
    }
    this.checkJoins();
  }

  /**
   * Each layer cut across volumes that the given volumes hold entirely: part
   * k + 1 is the first layer entry of the volume after part k's, whose last
   * entry part k is, and starts where part k ended (spec/bundle.md §9.3 rule 5).
   */
  private checkJoins(): void {
    for (const digest of this.held) {
      const pieces = this.partsOf(digest);
      if (pieces.length === 0 || this.failed.has(digest)) continue;
      const p0 = pieces[0]!.p;
      let offset = 0;
      for (const [k, { m, p }] of pieces.entries()) {
        if (k > 0) {
          const prev = pieces[k - 1]!;
          const tail = m.source?.tailEntries ?? [];
          const before = prev.m.source?.tailEntries ?? [];
          const follows = p.index === k && m.index === prev.m.index + 1 && tail[0]?.part?.index === k && tail[0]?.part?.digest === digest
            && before.at(-1)?.part?.digest === digest && before.at(-1)?.part?.index === k - 1;
          if (!follows) {
            this.failed.set(digest, new FerryError('E_BUNDLE_INVALID', `${this.label(prev.m)}: part ${k + 1} of ${p0.count} of layer ${digest}${this.needs(digest)} does not follow at the start of the next volume`, {
              hint: 'the volumes are damaged, hand-made or from different exports', details: { digest, volume: prev.m.index + 1 },
            }));
            break;
          }
          if (p.offset !== offset || p.count !== p0.count) {
            this.failed.set(digest, new FerryError('E_BUNDLE_INVALID', `${this.partLabel(m, p)} starts at byte ${p.offset} of ${p.count} parts; the parts before end at ${offset} of ${p0.count}`, {
              hint: 'the volumes are damaged, hand-made or from different exports', details: { digest, volume: m.index + 1 },
            }));
            break;
          }
        }
        offset += p.size;
      }
    }
  }

  /** The given parts of a layer cut across volumes, in part order, with the volume each is in. */
  private partsOf(digest: Digest): { m: Member; p: BundlePart }[] {
    return this.members.flatMap((m) => m.parts.filter((p) => p.digest === digest).map((p) => ({ m, p }))).sort((a, b) => a.p.index - b.p.index);
  }

  get metadata(): BundleMetadata {
    return this.head.metadata;
  }

  get compressed(): boolean {
    return this.head.compressed;
  }

  get metadataDigest(): Digest {
    return this.head.metadataDigest;
  }

  /** The digest of STEM.ferry.json, the whole set's metadata. */
  get wholeMetadataDigest(): Digest {
    return this.head.wholeMetadataDigest;
  }

  /**
   * Layers the given volumes do not hold entirely: the share of the volumes
   * that were not given. A layer cut across volumes of which only some were
   * given is among them; its given parts are still checked, alone.
   */
  get absentLayers(): Set<Digest> {
    return new Set(this.metadata.blobs.filter((b) => b.kind === 'layer' && !this.held.has(b.digest)).map((b) => b.digest));
  }

  /** Layers that could not be had (missing, damaged or unreadable volumes), with why; complete once blobs() has run. A damaged part says more than a missing one. */
  get unreadableLayers(): ReadonlyMap<Digest, FerryError> {
    return new Map([...this.failed, ...this.badParts]);
  }

  /**
   * Parts that failed their own digests (or could not be read) in layers the
   * given volumes do not hold entirely — found by checking a volume alone;
   * complete once blobs() has run.
   */
  get damagedParts(): ReadonlyMap<Digest, FerryError> {
    return this.badParts;
  }

  get condition(): BundleCondition {
    // Volumes given one by one are checked alone: the layers of the others are not asked for. A .sha256 list asks for all.
    return { ...NOTHING_MISSING, notGiven: this.info.fromSidecar ? new Set() : this.absentLayers, unreadable: this.unreadableLayers, damagedParts: this.badParts, volumes: this.info };
  }

  imagesNeeding(digest: Digest): string[] {
    return this.head.imagesNeeding(digest);
  }

  private label(m: Member): string {
    return `volume ${m.index + 1} of ${this.info.count} (${basename(m.file)})`;
  }

  private needs(digest: Digest): string {
    const needers = this.imagesNeeding(digest);
    return needers.length ? `, needed by ${needers.slice(0, 5).join(', ')}${needers.length > 5 ? ', …' : ''}` : '';
  }

  /**
   * Names the volumes a layer the given ones do not hold entirely lies in.
   * A cut layer's parts are in consecutive volumes, so one given part places
   * every other. Otherwise volumes hold consecutive runs of the stored layers,
   * so the layer lies in the gap between the given volumes around it.
   */
  private noteMissing(): void {
    const given = this.members;
    const layers = this.metadata.blobs.filter((b) => b.kind === 'layer');
    const pos = new Map(layers.map((b, i) => [b.digest as string, i]));
    const positions = (m: Member): number[] => [...m.layers.map((l) => pos.get(l.digest)!), ...m.parts.map((p) => pos.get(p.digest)!)];
    const count = this.info.count;
    for (const [i, l] of layers.entries()) {
      if (this.held.has(l.digest)) continue;
      const parts = given.flatMap((m) => m.parts.filter((p) => p.digest === l.digest).map((p) => ({ m, p })));
      let gap: VolumeSetInfo['missing'];
      let what: string;
      if (parts.length > 0) {
        const { m, p } = parts[0]!;
        const have = new Set(parts.map((x) => x.p.index));
        const lacking = [...Array(p.count).keys()].filter((k) => !have.has(k));
        const where = lacking.map((k) => m.index - p.index + k);
        const clash = where.find((v) => v < 0 || v >= count || given.some((g) => g.index === v));
        if (clash !== undefined) {
          this.failed.set(l.digest, new FerryError('E_BUNDLE_INVALID', `${this.label(m)}: part ${p.index + 1} of ${p.count} of layer ${l.digest} places the other parts in volumes that do not hold them`, {
            hint: 'the volumes disagree about how the layer was cut: they are damaged, hand-made or from different exports', details: { digest: l.digest, volume: m.index + 1 },
          }));
          continue;
        }
        gap = where.map((v) => this.info.missing.find((x) => x.volume === v + 1)!);
        what = `${lacking.length === 1 ? 'part' : 'parts'} ${lacking.map((k) => k + 1).join(', ')} of ${p.count} of layer ${l.digest}`;
      } else {
        const before = given.filter((m) => positions(m).some((x) => x < i)).map((m) => m.index);
        const after = given.filter((m) => positions(m).some((x) => x > i)).map((m) => m.index);
        const from = before.length ? before.reduce((m, v) => Math.max(m, v)) + 1 : 0;
        const to = after.length ? after.reduce((m, v) => Math.min(m, v)) - 1 : count - 1;
        gap = this.info.missing.filter((v) => v.volume - 1 >= from && v.volume - 1 <= to);
        what = `layer ${l.digest}`;
      }
      const names = gap.map((v) => v.file !== undefined ? basename(v.file) : `volume ${v.volume}`);
      // A volume that was given but could not be read even as far as its metadata: say why instead of "missing".
      const unread = gap.length === 1 ? this.unreadable.get(gap[0]!.volume - 1) : undefined;
      if (unread) {
        const needers = this.imagesNeeding(l.digest);
        this.failed.set(l.digest, new FerryError(unread.error.code, `volume ${gap[0]!.volume} of ${count} (${basename(unread.file)}) cannot be read, so ${what}${this.needs(l.digest)} it holds did not arrive: ${unread.error.message}`, {
          hint: unread.error.hint ?? 'copy this volume again from the exporting side', cause: unread.error,
          details: { file: unread.file, volume: gap[0]!.volume, digest: l.digest, images: needers },
        }));
        continue;
      }
      const which = gap.length === 1
        ? `volume ${gap[0]!.volume} of ${count}${gap[0]!.file !== undefined ? ` (${basename(gap[0]!.file)})` : ''} is missing: it holds`
        : parts.length > 0
          ? `volumes ${gap.map((v) => v.volume).join(', ')} of ${count} (${names.join(', ')}) are missing: they hold`
          : `one of volumes ${gap.map((v) => v.volume).join(', ')} of ${count} (${names.join(', ')}) is missing: it holds`;
      const needers = this.imagesNeeding(l.digest);
      this.failed.set(l.digest, new FerryError('E_BLOB_MISSING', `${which} ${what}${this.needs(l.digest)}`, {
        hint: 'copy the missing volume next to the others and run again; images that do not need it are not affected',
        details: { volumes: gap.map((v) => v.volume), files: gap.map((v) => v.file), digest: l.digest, images: needers },
      }));
    }
  }

  /** A layer (or one part of it) of volume `m` cannot be read: a layer the given volumes hold entirely fails; a partly given one records a damaged part. */
  private failLayer(m: Member, digest: Digest, e: unknown, part?: BundlePart): void {
    const base = asFerryError(e);
    const needers = this.imagesNeeding(digest);
    const what = part ? `part ${part.index + 1} of ${part.count} of layer ${digest}` : `layer ${digest}`;
    // The volume's own reader already names the volume, the blob and its images (a cut, a missing entry).
    const message = base.message.includes(digest) && base.message.includes(`(volume ${m.index + 1} of ${this.info.count})`)
      ? base.message
      : `${this.label(m)}: ${what}${this.needs(digest)} cannot be read: ${base.message}`;
    const err = new FerryError(base.code, message, {
      hint: base.hint ?? 'copy this volume again from the exporting side', cause: base, details: { ...base.details, file: m.file, volume: m.index + 1, digest, images: needers },
    });
    const into = this.held.has(digest) ? this.failed : this.badParts;
    if (!into.has(digest)) into.set(digest, err);
  }

  getManifest(repository: string, reference: string): Promise<Manifest> {
    return this.head.getManifest(repository, reference);
  }

  async getBlob(repository: string, desc: Descriptor): Promise<Readable> {
    const failed = this.failed.get(desc.digest);
    if (failed) throw failed;
    const blob = this.blobNamed(desc.digest);
    if (blob?.kind !== 'layer') return this.head.getBlob(repository, desc);
    if (this.sequential) {
      throw new FerryError('E_INTERNAL', `${this.where}: layer ${desc.digest} can only be read in order through blobs()`, { details: { digest: desc.digest } });
    }
    const whole = this.wholeIn(desc.digest);
    if (whole?.source) return whole.source.getBlob(repository, desc);
    if (!this.held.has(desc.digest)) {
      // Not given at all: what noteMissing() says (a missing volume); a layer only partly given has no whole to read.
      throw this.failed.get(desc.digest) ?? this.badParts.get(desc.digest) ?? new FerryError('E_BLOB_MISSING', `${this.where}: layer ${desc.digest}${this.needs(desc.digest)} is in none of the given volumes`, {
        hint: 'give every volume of the bundle (or its .sha256 list)', details: { digest: desc.digest, images: this.imagesNeeding(desc.digest) },
      });
    }
    return this.joined(desc.digest);
  }

  /**
   * A layer cut across volumes, read at random: its parts' ranges one after
   * the other, each checked against its own digest and size as it streams
   * (the whole is the consumer's to verify); never held whole.
   */
  private joined(digest: Digest): Readable {
    const pieces = this.partsOf(digest).map(({ m, p }) => () => {
      const bytes = m.source!.partStream(p)!;
      const verify = new VerifyStream({ digest: p.partDigest, size: p.size }, this.partLabel(m, p));
      bytes.on('error', (e) => verify.destroy(e));
      return bytes.pipe(verify);
    });
    const out = joinStreams(pieces);
    out.once('error', (e) => {
      const err = asFerryError(e);
      if (err.code !== 'E_ABORTED' && !this.failed.has(digest)) this.failed.set(digest, err);
    });
    return out;
  }

  /** Where a config or whole layer lies in a volume, to be verified in place (a layer cut across volumes is not in one place). */
  blobFile(desc: Descriptor): FileRange | undefined {
    if (this.sequential || this.failed.has(desc.digest)) return undefined;
    const blob = this.blobNamed(desc.digest);
    if (blob?.kind !== 'layer') return this.head instanceof FileBundleSource ? this.head.blobFile(desc) : undefined;
    return this.wholeIn(desc.digest)?.source?.blobFile(desc);
  }

  /** For the verifier's messages: the volume a layer's bytes come from, or the volumes of its parts. */
  blobPlace(desc: Descriptor): string | undefined {
    const whole = this.wholeIn(desc.digest);
    if (whole) return this.label(whole);
    const pieces = this.partsOf(desc.digest);
    if (pieces.length > 0 && this.held.has(desc.digest)) {
      const first = pieces[0]!.m.index;
      return `volumes ${first + 1}–${first + pieces.length} of ${this.info.count} (${pieces.map(({ m }) => basename(m.file)).join(', ')})`;
    }
    return (this.head as Partial<FileBundleSource>).blobPlace?.(desc);
  }

  /** Volumes were cut short (read at random: known when the set was opened); see cutSummary. */
  get cutShort(): FerryError | undefined {
    return !this.sequential && this.cuts.length > 0 ? this.cutSummary() : undefined;
  }

  /**
   * Read at random, the parts of layers the given volumes do not hold entirely
   * are asked for by no copy: each is checked here against its own digest, as
   * reading the volumes front to back does on the way (spec/bundle.md §9.3).
   */
  async checkRest(opts: OpOptions = {}): Promise<void> {
    if (this.sequential) return;
    for (const m of this.members) {
      for (const p of m.parts) {
        opts.signal?.throwIfAborted();
        if (this.held.has(p.digest) || this.badParts.has(p.digest) || !m.source?.hasPart(p)) continue;
        const verify = new VerifyStream({ digest: p.partDigest, size: p.size }, this.partLabel(m, p));
        try {
          await pipeline(m.source.partStream(p)!, verify, new PassThrough().resume(), opts.signal ? { signal: opts.signal } : {});
        } catch (e) {
          if (asFerryError(e).code === 'E_ABORTED' || opts.signal?.aborted) throw e;
          this.badParts.set(p.digest, asFerryError(e));
        }
      }
    }
  }

  listImages(): Promise<SourceImage[]> {
    return this.head.listImages();
  }

  /**
   * Each given volume's layers in volume order, each checked against its
   * digest under the volume's name. A layer cut across volumes is one stream:
   * its parts joined in order, each checked against its own digest on the
   * way, the whole against the layer's.
   */
  async *blobs(opts: OpOptions = {}): AsyncGenerator<SequentialBlob> {
    if (this.started) throw new FerryError('E_INTERNAL', `${this.where}: blobs() can be read only once`);
    this.started = true;
    if (!this.sequential) {
      // Read at random, front to back on request (a consumer joining this with a sequential input): the held layers in stored order.
      for (const b of this.metadata.blobs) {
        opts.signal?.throwIfAborted();
        if (b.kind !== 'layer' || !this.held.has(b.digest) || this.failed.has(b.digest)) continue;
        const descriptor = { digest: b.digest, size: b.size, mediaType: b.mediaType };
        const where = this.blobPlace(descriptor);
        yield { descriptor, stream: await this.getBlob('', descriptor), ...(where !== undefined ? { where } : {}) };
      }
      await this.checkRest(opts);
      if (this.cuts.length > 0) throw this.cutSummary();
      return;
    }
    const cursor = new Lookahead(this.walk(opts));
    try {
      for (let step = await cursor.next(); step; step = await cursor.next()) {
        opts.signal?.throwIfAborted();
        const { m, entry } = step;
        const { part } = entry;
        if (!part) {
          yield { descriptor: entry.descriptor, stream: entry.stream, where: this.label(m) };
          continue;
        }
        if (part.index !== 0 || !this.held.has(part.digest) || this.failed.has(part.digest)) {
          // A part that cannot be joined (its layer is not all here, or already failed) is still checked on its own.
          await this.checkPart(step, opts);
          continue;
        }
        const joined = this.join(step, cursor, opts);
        const span = [...Array(part.count).keys()].map((k) => this.members.find((x) => x.index === m.index + k));
        const where = `volumes ${m.index + 1}–${m.index + part.count} of ${this.info.count} (${span.map((x) => (x ? basename(x.file) : '?')).join(', ')})`;
        yield { descriptor: this.layer(part.digest), stream: joined.stream, where };
        // The consumer is done with the stream; the joining may still be winding down before the volumes are ours again.
        await joined.done;
      }
    } finally {
      await cursor.close();
    }
    if (this.cuts.length > 0) throw this.cutSummary();
  }

  /**
   * Volumes were cut short: each lost only its own entries (failed above, one by
   * one, through getBlob). This says so once, for the consumer, even when a volume
   * lost nothing but its end.
   */
  private cutSummary(): FerryError {
    const blobs = [...new Set(this.cuts.flatMap(({ error }) => (error.details['blobs'] as Digest[] | undefined) ?? []))];
    const images = [...new Set(blobs.flatMap((d) => this.imagesNeeding(d)))];
    const lines = this.cuts.map(({ m, error }) => (error.message.includes(`(volume ${m.index + 1} of `) ? error.message : `${this.label(m)}: ${error.message}`));
    return new FerryError('E_BUNDLE_TRUNCATED', lines.join('\n'), {
      hint: `${this.cuts.length === 1 ? 'this volume was' : 'these volumes were'} cut short (interrupted copy, full disk): copy ${this.cuts.length === 1 ? 'it' : 'them'} again from the exporting side (compare with the sha256 in the .sha256 list) and run again; the other volumes' images are not affected`,
      details: { files: this.cuts.map(({ m }) => m.file), volumes: this.cuts.map(({ m }) => m.index + 1), images, blobs },
    });
  }

  /**
   * A blob of the metadata by digest, and the given volume holding a layer
   * whole: looked up per blob read, so indexed once (a scan per read was
   * quadratic: minutes, not seconds, at 100,000 blobs, and deaf to Ctrl-C).
   */
  private blobNamed(digest: Digest): BundleBlob | undefined {
    this.blobIndex ??= new Map(this.metadata.blobs.map((b) => [b.digest, b]));
    return this.blobIndex.get(digest);
  }

  private wholeIn(digest: Digest): Member | undefined {
    if (!this.wholeIndex) {
      this.wholeIndex = new Map();
      for (const m of this.members) for (const l of m.layers) if (!this.wholeIndex.has(l.digest)) this.wholeIndex.set(l.digest, m);
    }
    return this.wholeIndex.get(digest);
  }

  private layer(digest: Digest): Descriptor {
    const b = this.blobNamed(digest)!;
    return { digest: b.digest, size: b.size, mediaType: b.mediaType };
  }

  /** Every entry of every usable given volume, in volume order; a volume that cannot be read further fails what it has not yet delivered. */
  private async *walk(opts: OpOptions): AsyncGenerator<Step> {
    for (const m of this.members) {
      opts.signal?.throwIfAborted();
      if (m.unusable) continue;
      const delivered = new Set<string>();
      const key = (digest: Digest, part?: BundlePart): string => (part ? `${digest}.${part.index}` : digest);
      let src: BundleSource | undefined;
      try {
        src = m.index === this.headIndex ? this.head as BundleSource : await BundleSource.open(m.file);
        this.open.add(src);
        if (src.metadata.bundleId !== this.metadata.bundleId) throw new FerryError('E_BUNDLE_INVALID', `${m.file} changed while it was read`, { hint: 'do not modify volumes while ferry reads them' });
        for await (const entry of src.layerEntries(opts)) {
          delivered.add(key(entry.part?.digest ?? entry.descriptor.digest, entry.part));
          yield { m, entry };
        }
        // Entries the volume's reader skipped (missing from the file) carry its own error.
        for (const l of m.layers) {
          const why = delivered.has(key(l.digest)) ? undefined : src.skippedEntry(l.digest);
          if (why) this.failLayer(m, l.digest, why);
        }
        for (const p of m.parts) {
          const why = delivered.has(key(p.digest, p)) ? undefined : src.skippedEntry(p.digest);
          if (why) this.failLayer(m, p.digest, why, p);
        }
      } catch (e) {
        const err = asFerryError(e);
        if (err.code === 'E_ABORTED' || opts.signal?.aborted) throw e;
        // A cut volume names each entry it lost (the one it ends inside included, though it was handed out).
        const why = (digest: Digest): FerryError => src?.skippedEntry(digest) ?? err;
        for (const l of m.layers) if (!delivered.has(key(l.digest)) || src?.skippedEntry(l.digest)) this.failLayer(m, l.digest, why(l.digest));
        for (const p of m.parts) if (!delivered.has(key(p.digest, p)) || src?.skippedEntry(p.digest)) this.failLayer(m, p.digest, why(p.digest), p);
        if (err.code === 'E_BUNDLE_TRUNCATED') this.cuts.push({ m, error: err });
      } finally {
        if (src && src !== this.head) {
          this.open.delete(src);
          await src.close();
        }
      }
    }
  }

  private partLabel(m: Member, p: BundlePart): string {
    return `${this.label(m)}: part ${p.index + 1} of ${p.count} of layer ${p.digest}${this.needs(p.digest)}`;
  }

  /** Reads one part against its own digest (a volume checked alone); a failure is recorded, not thrown. */
  private async checkPart({ m, entry }: Step, opts: OpOptions): Promise<void> {
    const part = entry.part!;
    const verify = new VerifyStream(entry.descriptor, this.partLabel(m, part));
    entry.stream.on('error', (e) => verify.destroy(e));
    try {
      for await (const _ of entry.stream.pipe(verify) as AsyncIterable<Buffer>) { /* hashed on the way */ }
    } catch (e) {
      if (asFerryError(e).code === 'E_ABORTED' || opts.signal?.aborted) throw e;
      // Only a part of a layer not all here is worth recording: a joined layer's own failure is already known.
      if (!this.held.has(part.digest) && !this.badParts.has(part.digest)) this.badParts.set(part.digest, asFerryError(e));
    }
  }

  /**
   * The stream of a cut layer, from its first part: each next part must be
   * the next entry, at the start of the next volume. Bytes flow part by part
   * with back-pressure, so a layer of any size takes bounded memory.
   */
  private join(first: Step, cursor: Lookahead<Step>, opts: OpOptions): { stream: Readable; done: Promise<void> } {
    const p0 = first.entry.part!;
    const digest = p0.digest;
    // The whole layer is the consumer's to verify; a consumer that gives up destroys `out`, which ends the joining (writable() wakes on close).
    const out = new PassThrough({ highWaterMark: 1 << 20 });
    let at = first;
    const done = (async () => {
      let offset = 0;
      for (let k = 0; ; k++) {
        const p = at.entry.part!;
        const verify = new VerifyStream(at.entry.descriptor, this.partLabel(at.m, p));
        at.entry.stream.on('error', (e) => verify.destroy(e));
        for await (const chunk of at.entry.stream.pipe(verify) as AsyncIterable<Buffer>) {
          if (out.destroyed) return;
          if (!out.write(chunk)) await writable(out);
        }
        offset += p.size;
        if (k === p0.count - 1) break;
        const next = await cursor.peek();
        const np = next?.entry.part;
        if (!next || np?.digest !== digest || np.index !== k + 1) {
          throw this.failed.get(digest) ?? new FerryError('E_BUNDLE_INVALID', `${this.label(at.m)}: part ${k + 2} of ${p0.count} of layer ${digest}${this.needs(digest)} does not follow at the start of the next volume`, {
            hint: 'the volumes are damaged, hand-made or from different exports', details: { digest, volume: at.m.index + 1 },
          });
        }
        if (np.offset !== offset || np.count !== p0.count) {
          throw new FerryError('E_BUNDLE_INVALID', `${this.partLabel(next.m, np)} starts at byte ${np.offset} of ${np.count} parts; the parts before end at ${offset} of ${p0.count}`, {
            hint: 'the volumes are damaged, hand-made or from different exports', details: { digest, volume: next.m.index + 1 },
          });
        }
        await cursor.next();
        at = next;
      }
      out.end();
    })().catch((e: unknown) => {
      const err = asFerryError(e);
      if (err.code !== 'E_ABORTED' && !opts.signal?.aborted && !this.failed.has(digest)) this.failed.set(digest, err);
      out.destroy(err);
    });
    return { stream: out, done };
  }

  async close(): Promise<void> {
    await Promise.all([...this.open].map((s) => s.close()));
    this.open.clear();
  }
}

/** Layers the members hold entirely: whole in one, or every part in some. */
function heldLayers(members: readonly Member[]): Set<Digest> {
  const held = new Set<Digest>();
  const parts = new Map<Digest, Set<number>>();
  for (const m of members) {
    for (const l of m.layers) held.add(l.digest);
    for (const p of m.parts) {
      const seen = parts.get(p.digest) ?? new Set<number>();
      seen.add(p.index);
      parts.set(p.digest, seen);
      if (seen.size === p.count) held.add(p.digest);
    }
  }
  return held;
}
