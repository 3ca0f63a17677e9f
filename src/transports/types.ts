import type { Readable } from 'node:stream';
import type { FerryError } from '../errors.js';
import type { Digest } from '../oci/digest.js';
import type { Descriptor, Manifest, ParsedManifest } from '../oci/manifest.js';
import type { FileRange } from '../stream/verify.js';

/**
 * The one interface for every place images live: a registry over HTTP, a ferry
 * bundle, a registry storage layout, a skopeo dir tree, an OCI layout. The copy
 * engine (src/copy) moves images between any source and any destination and is
 * the only caller of these methods.
 *
 * Repository names passed in and out are validated by oci/reference before they
 * get here; transports that build paths from them may rely on that, but must
 * still validate names they read from their own storage (it may be hostile).
 */

export interface OpOptions {
  signal?: AbortSignal;
}

/** An image a source can enumerate. */
export interface SourceImage {
  repository: string;
  tag?: string;
  digest: Digest;
  /** The reference the image was first pulled from, when the source remembers it (bundles do). */
  origin?: string;
}

export interface ImageSource {
  /** For messages: `registry 127.0.0.1:5000`, `bundle release.tar.zst`. */
  readonly description: string;
  /** Exact manifest bytes for a tag or digest. Sources that were asked for a digest must check it. */
  getManifest(repository: string, reference: string, opts?: OpOptions): Promise<Manifest>;
  /**
   * The parse of a manifest this source already checked (a bundle's head parses
   * every manifest), so a plan need not parse it again; undefined: parse it.
   */
  parsedManifest?(digest: Digest): ParsedManifest | undefined;
  /** The blob's bytes, unverified: the engine verifies them in flight. */
  getBlob(repository: string, desc: Descriptor, opts?: OpOptions): Promise<Readable>;
  /** Every image the source holds (layouts, dirs, bundles); registries may not implement it. */
  listImages?(opts?: OpOptions): Promise<SourceImage[]>;
  close(): Promise<void>;
  /** True when layers come only through `blobs()`, once, in stored order (SequentialSource). */
  readonly sequential?: boolean;
  /** Digests the source deliberately lacks (a delta bundle's base blobs): the destination must already hold them. */
  readonly omittedBlobs?: ReadonlySet<Digest>;
  /** Where a blob's bytes lie, for the verifier's messages (`rel.001.tar (volume 2 of 3)`); default: the images that need it. */
  blobPlace?(desc: Descriptor): string | undefined;
  /**
   * A source read at random that was cut short (a bundle file shorter than its
   * metadata says, E_BUNDLE_TRUNCATED): what it lost fails through getBlob, one
   * blob at a time; this says the source is not whole even when it lost nothing
   * an image needs, so the caller still exits non-zero.
   */
  readonly cutShort?: FerryError | undefined;
  /** Reading a blob again gives the same bytes (a file): one that failed verification is not read twice. */
  readonly immutable?: boolean;
  /** Where a blob lies whole in an open file (a bundle read at random): it can be verified in place, by a worker. */
  blobFile?(desc: Descriptor): FileRange | undefined;
}

/**
 * A source that can only be read front to back (a bundle on a pipe, a zstd
 * stream). Manifests and configs come first and are served from memory by
 * getManifest/getBlob; layer blobs only through `blobs()`, once, in stored order.
 */
export interface SequentialSource extends ImageSource {
  readonly sequential: true;
  /** Digests the source deliberately lacks (a delta bundle's base blobs). */
  readonly omittedBlobs: ReadonlySet<Digest>;
  /** Yields each stored layer blob; the consumer must read or drain each stream before asking for the next. */
  blobs(opts?: OpOptions): AsyncIterable<SequentialBlob>;
}

/** A blob as a sequential source yields it: unverified (the consumer's one verifier checks it). */
export interface SequentialBlob {
  descriptor: Descriptor;
  stream: Readable;
  /** Where the bytes lie, for the verifier's messages (e.g. `volume 2 of 3 (rel.001.tar)`); default: the images that need it. */
  where?: string;
}

export function isSequentialSource(s: ImageSource): s is SequentialSource {
  return (s as Partial<SequentialSource>).sequential === true;
}

export interface DestinationCapabilities {
  /** How many putBlob calls may run at once. */
  concurrentBlobs: number;
  /** A blob stored once is visible in every repository (bundles, OCI layouts, dir trees). */
  globalBlobs: boolean;
}

/** What the engine hands the destination last, once the image's blobs and manifests have all landed. */
export interface ImageRecord {
  repository: string;
  /** Absent for images referenced by digest only. */
  tag?: string;
  /** The top manifest: an index or an image manifest. */
  manifest: Manifest;
  /** The reference it was copied from, e.g. `docker.io/library/nginx:1.25`. */
  origin?: string;
  /**
   * When a platform filter replaced the top manifest (one platform picked out of
   * an index, or a new index holding only the wanted entries): the digest of the
   * index the origin reference resolved to. Bundles record it.
   */
  sourceDigest?: Digest;
}

/** An image as planned, as a destination judges it before the first byte. */
export interface AdmissionRequest {
  top: Digest;
  /** Every manifest of the image (children included), parsed. */
  parsed: ReadonlyMap<Digest, ParsedManifest>;
  /** For messages. */
  origin: string;
  /** Blobs known absent by design (foreign layers a bundle does not carry): never written, never copied. */
  absent?: ReadonlySet<Digest>;
}

/** Take the image (perhaps with a warning for the user), or leave it out with why. */
export type Admission = { admit: true; warning?: string } | { admit: false; reason: string };

export interface ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  /**
   * For destinations that cannot hold every image (a docker archive takes
   * runnable images only): asked once per planned image before any byte moves.
   * May throw a FerryError (E_NOT_FOUND) to fail that image alone.
   */
  admit?(image: AdmissionRequest): Admission;
  hasBlob(repository: string, desc: Descriptor, opts?: OpOptions): Promise<boolean>;
  /**
   * Reads `data` to its end. The blob becomes visible only if the stream ended
   * cleanly (temp name + rename); on any error partial data is removed and the
   * error is rethrown. The stream is already verified by the engine: an error
   * from it means the bytes were wrong.
   */
  putBlob(repository: string, desc: Descriptor, data: Readable, opts?: OpOptions): Promise<void>;
  /**
   * A destination that keeps nothing of a blob but whether it is good (`ferry
   * verify`): true when the verdict may stand in for the bytes of `desc`. The
   * engine then verifies a blob that lies whole in a file where it lies
   * (hashed by a worker, stream/verify.ts verifyInPlace) and calls putVerdict
   * instead of putBlob.
   */
  takesVerdict?(desc: Descriptor): boolean;
  /** Settles as putBlob would have: resolves when the verdict is good, rejects with the verifier's error. */
  putVerdict?(repository: string, desc: Descriptor, verdict: Promise<void>, opts?: OpOptions): Promise<void>;
  /** A destination writing files on this machine: true when it can land `desc` through putBlobCopy. */
  copiesFiles?(desc: Descriptor): boolean;
  /**
   * Lands a blob that lies whole in a file (a bundle read at random) as putBlob
   * would, without a stream: the destination opens its temp file and calls
   * `copy` with its descriptor; `copy` (the engine's: stream/verify.ts
   * copyVerified) writes the bytes there while a worker hashes them, and
   * resolves only when size and digest are right. The file is published
   * (fsync, rename) only then, and removed when `copy` rejects. Data the
   * destination already holds (hashed) is not copied again.
   */
  putBlobCopy?(repository: string, desc: Descriptor, copy: (fd: number) => Promise<void>, opts?: OpOptions): Promise<void>;
  /** Makes a blob held in `fromRepository` visible in `repository` without sending bytes; false when it cannot. */
  mountBlob?(repository: string, desc: Descriptor, fromRepository: string, opts?: OpOptions): Promise<boolean>;
  hasManifest?(repository: string, digest: Digest, opts?: OpOptions): Promise<boolean>;
  /**
   * True when the image is whole here already, named as `image` names it (its
   * tag, or its digest), so nothing of it needs sending: one cheap question per
   * image instead of one per blob and manifest. Only a destination that
   * guarantees a manifest is there only with everything it references (a
   * registry) may answer it; asked before any blob moves.
   */
  hasImage?(image: ImageRecord, opts?: OpOptions): Promise<boolean>;
  /** Called only after every blob (or child manifest) the manifest references has landed. */
  putManifest(repository: string, manifest: Manifest, opts?: OpOptions): Promise<void>;
  /** Called last for each image: tags it (or records it, for digest-only images). */
  putImage(image: ImageRecord, opts?: OpOptions): Promise<void>;
  /** Called once after all images: bundles write their archive here, layouts flush receipts. */
  commit(opts?: OpOptions): Promise<void>;
  /** Releases resources; after a failed run, removes temp files. Safe to call twice. */
  close(): Promise<void>;
}
