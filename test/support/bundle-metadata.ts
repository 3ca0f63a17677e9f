// A bundle's ferry.json as ferry reads it, in whatever format version it is encoded:
// tests look at what the metadata says (images, blobs, delta, volumes), not at how a
// version lays it out in JSON (spec/bundle.md §4, §4.5).
import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { type BundleMetadata, parseMetadata } from '../../src/transports/bundle/metadata.js';

export type { BundleMetadata };

/** Parses ferry.json bytes (a sidecar, or the first entry of a bundle). */
export function metadataOf(bytes: Buffer | string, where = 'ferry.json'): BundleMetadata {
  return parseMetadata(typeof bytes === 'string' ? Buffer.from(bytes) : bytes, where);
}

/** The `.ferry.json` beside a bundle (`<bundle>.ferry.json`), or any ferry.json file given by its own path. */
export async function readMetadata(path: string): Promise<BundleMetadata> {
  return parseMetadata(await readFile(path), path);
}

export function readMetadataSync(path: string): BundleMetadata {
  return parseMetadata(readFileSync(path), path);
}
