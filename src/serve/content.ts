import type { Readable } from 'node:stream';
import type { Digest } from '../oci/digest.js';
import type { Manifest, ParsedManifest } from '../oci/manifest.js';

/**
 * What `ferry serve` serves, whatever it reads from (a bundle, its volumes and
 * bases, a registry layout, an OCI layout): the images under their served
 * names, every manifest (verified at startup, held in memory: they are small
 * and the API needs them parsed), and a way to read any config or layer by
 * byte range. The registry API (registry-api.ts) sees only this.
 */

/** An image as served: its name after mapping, the tag (absent: by digest only), the top manifest. */
export interface ServedImage {
  repository: string;
  tag?: string;
  digest: Digest;
  /** Where it came from, for the startup report (`docker.io/library/nginx:1.25`). */
  origin: string;
}

export interface ServedManifest extends Manifest {
  parsed: ParsedManifest;
}

/** A config or layer as a source holds it; bytes are read by range and verified by the caller. */
export interface StoredBlob {
  digest: Digest;
  size: number;
}

export interface BlobReader {
  /** For messages and the startup report: `bundle rel.tar`, `registry storage /var/lib/registry`. */
  readonly description: string;
  /** The blob when the source can serve it (undefined: not held). */
  blob(digest: Digest): StoredBlob | undefined;
  /**
   * Bytes [start, end] (inclusive) of a blob, unverified; rejects when the
   * source can no longer read it (the file changed or vanished).
   */
  read(blob: StoredBlob, start: number, end: number): Promise<Readable>;
  close(): Promise<void>;
}

/** Everything the server needs, assembled once at startup. */
export interface ServedContent {
  images: ServedImage[];
  /** Every manifest any served image reaches, by digest. */
  manifests: ReadonlyMap<Digest, ServedManifest>;
  blobs: BlobReader;
  /** Configs already verified at startup (they are read whole to check them). */
  verified: ReadonlySet<Digest>;
}
