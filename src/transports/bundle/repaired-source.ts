import { realpath } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { type FerryError as FerryErrorType, FerryError, isFerryError } from '../../errors.js';
import { expandFileGlobs } from '../../fsys/glob.js';
import type { Digest } from '../../oci/digest.js';
import type { Descriptor, Manifest } from '../../oci/manifest.js';
import { drain } from '../../stream/drain.js';
import type { FileRange } from '../../stream/verify.js';
import type { ImageSource, OpOptions, SequentialBlob, SourceImage } from '../types.js';
import type { BundleCondition, BundleInput } from './input.js';
import type { BundleMetadata } from './metadata.js';
import { FileBundleSource, randomAccessible } from './file-source.js';
import { BundleSource } from './reader.js';
import { openBundleInput, type VolumeSetSource } from './volume-set.js';
import { isUnreadableBundleError } from './volume-set-check.js';

/** A repair bundle: one whole file, read at random or front to back. */
type RepairFile = BundleSource | FileBundleSource;

/**
 * A bundle (or volume set) read together with repair bundles (spec/repair.md)
 * that supply blobs it lacks or holds damaged: each blob a repair carries is
 * taken from the repair, everything else from the bundle. So `ferry import
 * rel.sha256 rel-repair.tar` lands the whole release in one run. Read at
 * random when every file can be; front to back when any is a stream.
 */
export class RepairedSource implements BundleInput {
  readonly sequential: boolean;
  readonly immutable: boolean;
  readonly description: string;
  readonly where: string;
  readonly omittedBlobs: ReadonlySet<Digest>;
  /** Which repair carries each blob it holds (the first given, when two carry one). */
  private readonly carrier = new Map<Digest, RepairFile>();

  constructor(readonly main: BundleSource | FileBundleSource | VolumeSetSource, readonly repairs: RepairFile[]) {
    this.sequential = main.sequential || repairs.some((r) => r.sequential);
    this.immutable = !this.sequential;
    this.where = `${main.where} + ${repairs.map((r) => r.where).join(', ')}`;
    this.description = `bundle ${this.where}`;
    this.omittedBlobs = main.omittedBlobs;
    for (const r of repairs) for (const b of r.storedHere) if (b.kind === 'config' || b.kind === 'layer') if (!this.carrier.has(b.digest)) this.carrier.set(b.digest, r);
  }

  /** Digests the repairs carry. */
  get repaired(): ReadonlySet<Digest> {
    return new Set(this.carrier.keys());
  }

  get metadata(): BundleMetadata {
    return this.main.metadata;
  }

  get compressed(): boolean {
    return this.main.compressed;
  }

  get condition(): BundleCondition {
    const main = this.main.condition;
    const repaired = this.repaired;
    const without = <V>(m: ReadonlyMap<Digest, V>) => new Map([...m].filter(([d]) => !repaired.has(d)));
    return {
      ...main,
      notGiven: new Set([...main.notGiven].filter((d) => !repaired.has(d))),
      unreadable: without(main.unreadable),
      damagedParts: without(main.damagedParts),
      repairs: this.repairs.map((r) => r.where),
      repaired,
    };
  }

  get metadataDigest(): Digest {
    return this.main.metadataDigest;
  }

  get wholeMetadataDigest(): Digest {
    return this.main.wholeMetadataDigest;
  }

  imagesNeeding(digest: Digest): string[] {
    return this.main.imagesNeeding(digest);
  }

  getManifest(repository: string, reference: string): Promise<Manifest> {
    return this.main.getManifest(repository, reference);
  }

  listImages(): Promise<SourceImage[]> {
    return this.main.listImages();
  }

  getBlob(repository: string, desc: Descriptor): Promise<Readable> {
    const repair = this.carrier.get(desc.digest);
    return repair ? repair.getBlob(repository, desc) : this.main.getBlob(repository, desc);
  }

  blobFile(desc: Descriptor): FileRange | undefined {
    if (this.sequential) return undefined;
    const from: ImageSource = this.carrier.get(desc.digest) ?? this.main;
    return from.blobFile?.(desc);
  }

  blobPlace(desc: Descriptor): string | undefined {
    const repair = this.carrier.get(desc.digest);
    return repair ? repair.blobPlace?.(desc) : this.main.blobPlace?.(desc);
  }

  /** Read at random: the bundle's cut, unless the repairs carry all it lost; else a repair's own. */
  get cutShort(): FerryErrorType | undefined {
    if (this.sequential) return undefined;
    const main = this.main.cutShort;
    if (main && !this.repairsCut(main)) return main;
    return this.repairs.find((r) => r.cutShort)?.cutShort;
  }

  checkRest(opts: OpOptions = {}): Promise<void> {
    return this.main.checkRest(opts);
  }

  /** The bundle's layers except those a repair carries (their bytes there may be bad), then each repair's. */
  async *blobs(opts: OpOptions = {}): AsyncGenerator<SequentialBlob> {
    // A bundle cut short still leaves its repairs to read; its error then fails whatever nothing carried.
    let cutShort: unknown;
    try {
      for await (const item of this.main.blobs(opts)) {
        if (!this.carrier.has(item.descriptor.digest)) {
          yield item;
          continue;
        }
        await drain(item.stream, { ignoreErrors: true });
      }
    } catch (e) {
      if (opts.signal?.aborted) throw e;
      cutShort = e;
    }
    for (const r of this.repairs) {
      for await (const item of r.blobs(opts)) {
        if (this.carrier.get(item.descriptor.digest) === r) yield item;
        else await drain(item.stream, { ignoreErrors: true });
      }
    }
    if (cutShort !== undefined && !this.repairsCut(cutShort)) throw cutShort as Error;
  }

  /**
   * A bundle cut short whose every lost blob a repair carries is whole again
   * (spec/repair.md §3). One that lost nothing but its end has nothing a repair
   * could carry: it stays an incomplete file.
   */
  private repairsCut(e: unknown): boolean {
    if (!isFerryError(e, 'E_BUNDLE_TRUNCATED')) return false;
    const lost = e.details['blobs'];
    return Array.isArray(lost) && lost.length > 0 && lost.every((d) => this.carrier.has(d as Digest));
  }

  async close(): Promise<void> {
    await Promise.all([this.main.close(), ...this.repairs.map((r) => r.close())]);
  }

}

/**
 * Opens what a reader command was given (see input.ts openBundle). Whole
 * bundles that are deltas of the others' bundle and carry only blobs of it are
 * repairs; the rest is opened as always (one bundle, volumes, or a .sha256 list).
 */
export async function openWithRepairs(given: readonly string[]): Promise<BundleInput> {
  {
    const inputs = await expandFileGlobs(given);
    await refuseRepeats(inputs);
    if (inputs.length < 2 || inputs.includes('-')) return openBundleInput(inputs);
    // A file whose metadata cannot be read (a volume cut short) is no repair: the volume reader says what it lost.
    const peek = (file: string): Promise<BundleMetadata | undefined> => BundleSource.peekMetadata(file).catch((e: unknown) => {
      if (isUnreadableBundleError(e)) return undefined;
      throw e;
    });
    const peeked = await Promise.all(inputs.map(async (file) => ({ file, meta: file.endsWith('.sha256') ? undefined : await peek(file) })));
    const candidates = peeked.filter((p) => p.meta && !p.meta.volume && p.meta.delta);
    const rest = peeked.filter((p) => !candidates.includes(p));
    // Two whole bundles where neither is a delta, or only deltas: not a repair, let the volume reader say what is wrong.
    if (candidates.length === 0) return openBundleInput(inputs);
    const mainInputs = rest.length > 0 ? rest : candidates.slice(0, 1);
    const repairInputs = candidates.filter((c) => !mainInputs.includes(c));
    if (repairInputs.length === 0) return openBundleInput(inputs);
    const main = await openBundleInput(mainInputs.map((p) => p.file));
    const repairs: RepairFile[] = [];
    try {
      const known = new Set<string>(main.metadata.blobs.map((b) => b.digest));
      for (const { file, meta } of repairInputs) {
        if (!meta!.delta!.bases.some((b) => b.bundleId === main.metadata.bundleId)) {
          throw new FerryError('E_USAGE', `${file} is a delta of bundle ${meta!.delta!.bases.map((b) => b.bundleId).join(', ')}, not a repair of bundle ${main.metadata.bundleId} (${main.where})`, {
            hint: 'give a bundle with the repair bundles `ferry export --repair` made for it; import other deltas one after the other', details: { file, bundleId: meta!.bundleId },
          });
        }
        const strays = meta!.blobs.filter((b) => (b.kind === 'config' || b.kind === 'layer') && !known.has(b.digest));
        if (strays.length > 0) {
          throw new FerryError('E_USAGE', `${file} carries ${strays.length} blobs bundle ${main.metadata.bundleId} does not have (${strays[0]!.digest}${strays.length > 1 ? ', …' : ''}): it is a delta with new content, not a repair`, {
            hint: 'import the bundle first and then this delta, in two runs', details: { file, digests: strays.map((b) => b.digest) },
          });
        }
        repairs.push(!main.sequential && (await randomAccessible(file)) ? await FileBundleSource.open(file) : await BundleSource.open(file));
      }
    } catch (e) {
      await Promise.all([main.close(), ...repairs.map((r) => r.close())]);
      throw e;
    }
    return new RepairedSource(main, repairs);
  }
}

/**
 * One file named twice (`ferry verify b.tar b.tar`, a volume and its own
 * path again, a link and its target) is a slip on the command line: said as
 * such before anything is read, not as whatever reading it twice would look like.
 */
export async function refuseRepeats(inputs: readonly string[]): Promise<void> {
  const seen = new Map<string, string>();
  for (const input of inputs) {
    const key = input === '-' ? '-' : await realpath(input).catch(() => resolve(input));
    const first = seen.get(key);
    if (first !== undefined) {
      const what = input === '-' ? 'stdin (-)' : first === input ? input : `${input} (the same file as ${first})`;
      throw new FerryError('E_USAGE', `${what} is given twice`, {
        hint: 'name each bundle file, volume or .sha256 list once', details: { file: first, files: [first, input] },
      });
    }
    seen.set(key, input);
  }
}
