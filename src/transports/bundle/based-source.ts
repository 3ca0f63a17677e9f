import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import type { Descriptor, Manifest } from '../../oci/manifest.js';
import type { FileRange } from '../../stream/verify.js';
import type { OpOptions, SequentialBlob, SourceImage } from '../types.js';
import { type BundleCondition, type BundleInput, openBundle } from './input.js';
import type { BundleMetadata } from './metadata.js';

/**
 * A delta bundle read together with bundles that hold what it leaves out (its
 * base, earlier releases): one source, so importing a delta into an empty
 * target (`import --base`) or rebuilding a full bundle (`merge`) is one copy by
 * the one engine. The delta's own blobs come from the delta; each blob it omits
 * comes from the first base that stores it: configs from that base's head,
 * layers as that base is read front to back once, only as far as it still has
 * something the delta lacks. Every byte goes through the engine's verifier like
 * any other: a base is a file we did not write this run. Read at random when
 * the delta and every base can be (a layer from a base is then a range of
 * it, like any other); front to back when any is a stream.
 */
export class BasedSource implements BundleInput {
  readonly sequential: boolean;
  readonly immutable: boolean;
  readonly description: string;
  readonly where: string;
  /** What neither the delta nor any base stores: must already be at the destination. */
  readonly omittedBlobs: ReadonlySet<Digest>;
  /** Omitted by the delta, stored by a base: which base. */
  private readonly supplier = new Map<Digest, BundleInput>();
  /** Layers a base should have given but could not (cut short, damaged), with why. */
  private readonly lost = new Map<Digest, FerryError>();

  private constructor(private readonly delta: BundleInput, private readonly bases: BundleInput[]) {
    this.sequential = delta.sequential || bases.some((b) => b.sequential);
    this.immutable = !this.sequential;
    this.where = `${delta.where} on ${bases.map((b) => b.where).join(', ')}`;
    this.description = `bundle ${this.where}`;
    for (const base of bases) {
      const stored = new Set<string>(base.metadata.blobs.map((b) => b.digest));
      for (const d of delta.omittedBlobs) if (stored.has(d) && !base.omittedBlobs.has(d) && !this.supplier.has(d)) this.supplier.set(d, base);
    }
    this.omittedBlobs = new Set([...delta.omittedBlobs].filter((d) => !this.supplier.has(d)));
  }

  /** Opens the bases (any bundle input: a file, a split bundle's list) and joins them to `delta`; closes all on failure. */
  static async open(delta: BundleInput, bases: readonly string[]): Promise<BasedSource> {
    const opened: BundleInput[] = [];
    try {
      for (const path of bases) opened.push(await openBundle([path]));
      return new BasedSource(delta, opened);
    } catch (e) {
      await Promise.all(opened.map((b) => b.close()));
      throw e;
    }
  }

  /** How many of the delta's omitted blobs the bases supply. */
  get supplied(): number {
    return this.supplier.size;
  }

  get metadata(): BundleMetadata {
    return this.delta.metadata;
  }

  get compressed(): boolean {
    return this.delta.compressed;
  }

  get metadataDigest(): Digest {
    return this.delta.metadataDigest;
  }

  get wholeMetadataDigest(): Digest {
    return this.delta.wholeMetadataDigest;
  }

  get condition(): BundleCondition {
    return this.delta.condition;
  }

  imagesNeeding(digest: Digest): string[] {
    return this.delta.imagesNeeding(digest);
  }

  getManifest(repository: string, reference: string, opts?: OpOptions): Promise<Manifest> {
    return this.delta.getManifest(repository, reference, opts);
  }

  listImages(): Promise<SourceImage[]> {
    return this.delta.listImages();
  }

  /** The delta's blobs, and what it omits from the base that stores it (read front to back: an omitted layer only through blobs()). */
  getBlob(repository: string, desc: Descriptor, opts?: OpOptions): Promise<Readable> {
    const lost = this.lost.get(desc.digest);
    if (lost) return Promise.reject(lost);
    const base = this.supplier.get(desc.digest);
    return base ? base.getBlob(repository, desc, opts) : this.delta.getBlob(repository, desc, opts);
  }

  blobFile(desc: Descriptor): FileRange | undefined {
    if (this.sequential || this.lost.has(desc.digest)) return undefined;
    const base = this.supplier.get(desc.digest);
    return base ? base.blobFile?.(desc) : this.delta.blobFile?.(desc);
  }

  blobPlace(desc: Descriptor): string | undefined {
    const base = this.supplier.get(desc.digest);
    return base ? `base ${base.blobPlace?.(desc) ?? base.where}` : this.delta.blobPlace?.(desc);
  }

  /** Read at random: the delta's cut (a base's lost blobs fail alone, through getBlob). */
  get cutShort(): FerryError | undefined {
    return this.sequential ? undefined : this.delta.cutShort;
  }

  checkRest(opts: OpOptions = {}): Promise<void> {
    return this.delta.checkRest(opts);
  }

  /** The delta's layers, then each base's layers the delta omits (each base read until it has given all it can). */
  async *blobs(opts: OpOptions = {}): AsyncGenerator<SequentialBlob> {
    yield* this.delta.blobs(opts);
    const pending = new Set([...this.supplier].filter(([d]) => this.layer(d)).map(([d]) => d));
    for (const base of this.bases) {
      const wanted = () => [...pending].some((d) => this.supplier.get(d) === base);
      if (!wanted()) continue;
      try {
        for await (const item of base.blobs(opts)) {
          if (this.supplier.get(item.descriptor.digest) === base && pending.delete(item.descriptor.digest)) {
            yield { ...item, where: `base ${base.where}` };
          } else {
            item.stream.resume();
          }
          if (!wanted()) break;
        }
      } catch (e) {
        if (opts.signal?.aborted || !(e instanceof FerryError)) throw e;
        // A base cut short or damaged loses what it had not given; getBlob answers for those with why.
        for (const d of pending) if (this.supplier.get(d) === base) this.lost.set(d, e);
      }
    }
  }

  private layer(digest: Digest): boolean {
    return this.delta.metadata.delta?.omittedBlobs.some((b) => b.digest === digest && b.kind === 'layer') ?? false;
  }

  async close(): Promise<void> {
    await Promise.all([this.delta.close(), ...this.bases.map((b) => b.close())]);
  }
}
