import type { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import type { ImageSource, OpOptions, SequentialBlob, SourceImage } from '../types.js';
import type { BundleMetadata } from './metadata.js';
import type { VolumeSetInfo } from './volume-set-check.js';

/**
 * What the user handed over as "a bundle" — one file, stdin, the volumes of a
 * split bundle (or their `.sha256` list), with repair bundles beside them — as
 * one source. Every reader command opens it through `openBundle` and asks it
 * what it holds and what it could not deliver; none needs to know which of
 * those it was given.
 *
 * Uncompressed files are read at random (`sequential` false): every blob is a
 * range of a file, read when the copy engine asks, any number at once. What can
 * be read only once — stdin, `.tar.zst` — is `sequential`: layers come through
 * `blobs()`, in stored order. Either kind offers both: a random input can also
 * be read front to back (for a consumer joining it with a sequential one).
 */
export interface BundleInput extends ImageSource {
  readonly sequential: boolean;
  readonly omittedBlobs: ReadonlySet<Digest>;
  /** Each stored layer blob in stored order; the consumer must read or drain each stream before asking for the next. */
  blobs(opts?: OpOptions): AsyncIterable<SequentialBlob>;
  /**
   * Reads what no copy asks for but the condition reports on: parts of layers
   * not all given (a volume checked alone). A sequential input did it while
   * `blobs()` ran; call it after the copy, before reading `condition`.
   */
  checkRest(opts?: OpOptions): Promise<void>;
  /** For messages: the file, `stdin`, or the set (`rel.sha256`, `rel.000.tar + rel-repair.tar`). */
  readonly where: string;
  readonly metadata: BundleMetadata;
  /** Read through zstd. */
  readonly compressed: boolean;
  /** sha256 of this file's ferry.json bytes: what a delta built on it records as its base. */
  readonly metadataDigest: Digest;
  /** For a split bundle: the digest of STEM.ferry.json, the base a delta of the whole set records; otherwise metadataDigest. */
  readonly wholeMetadataDigest: Digest;
  /** The images that need a blob, for messages. */
  imagesNeeding(digest: Digest): string[];
  listImages(): Promise<SourceImage[]>;
  /** What the input does not deliver and why; complete once the copy (blobs() for a sequential input) and checkRest() have run. */
  readonly condition: BundleCondition;
}

export interface BundleCondition {
  /** Layers not given on purpose (volumes read one by one carry only their share): neither checked nor bad. */
  readonly notGiven: ReadonlySet<Digest>;
  /** Blobs found missing or unreadable (a cut file, a missing or damaged volume), with why. */
  readonly unreadable: ReadonlyMap<Digest, FerryError>;
  /** Layers cut across volumes, not all given, whose given parts failed their own digests (checked alone). */
  readonly damagedParts: ReadonlyMap<Digest, FerryError>;
  /** A split bundle: which volumes were given, which are missing or damaged. */
  readonly volumes?: VolumeSetInfo;
  /** Repair bundles read with it (spec/repair.md), and the blobs they deliver in place of the bundle's. */
  readonly repairs: readonly string[];
  readonly repaired: ReadonlySet<Digest>;
}

export const NOTHING_MISSING: BundleCondition = { notGiven: new Set(), unreadable: new Map(), damagedParts: new Map(), repairs: [], repaired: new Set() };

/**
 * Opens what a reader command was given: whole bundles that are deltas of the
 * others' bundle carrying only its blobs are repairs; the rest is one bundle,
 * stdin, volumes, or a `.sha256` list.
 */
export async function openBundle(given: readonly string[]): Promise<BundleInput> {
  const { openWithRepairs } = await import('./repaired-source.js');
  return openWithRepairs(given);
}
