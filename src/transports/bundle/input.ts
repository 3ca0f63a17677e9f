import type { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import type { SequentialSource, SourceImage } from '../types.js';
import type { BundleMetadata } from './metadata.js';
import type { VolumeSetInfo } from './volume-set.js';

/**
 * What the user handed over as "a bundle" — one file, stdin, the volumes of a
 * split bundle (or their `.sha256` list), with repair bundles beside them — as
 * one source. Every reader command opens it through `openBundle` and asks it
 * what it holds and what it could not deliver; none needs to know which of
 * those it was given.
 */
export interface BundleInput extends SequentialSource {
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
  /** What the input does not deliver and why; complete once blobs() has run. */
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
