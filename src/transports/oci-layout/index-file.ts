import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../errors.js';
import { MANIFEST_MAX_BYTES, type Descriptor, parseManifest } from '../../oci/manifest.js';
import { MT } from '../../oci/media-types.js';
import { fileSize } from '../../fsys/files.js';
import { INDEX_FILE } from './paths.js';

/** Reads a layout's index.json (untrusted: size-capped, every descriptor validated). Undefined when absent. */
export async function readIndexFile(root: string): Promise<Descriptor[] | undefined> {
  const path = join(root, INDEX_FILE);
  const size = await fileSize(path);
  if (size === undefined) return undefined;
  if (size > MANIFEST_MAX_BYTES) {
    throw new FerryError('E_MANIFEST_INVALID', `${path}: ${size} bytes is too large for an index`, { hint: 'the layout is damaged', details: { file: path } });
  }
  const parsed = parseManifest(await readFile(path), MT.ociIndex, path);
  if (parsed.kind !== 'index') throw new FerryError('E_MANIFEST_INVALID', `${path}: not an image index`, { hint: 'the layout is damaged', details: { file: path } });
  return parsed.manifests;
}

export function indexFileBytes(manifests: Descriptor[]): Buffer {
  return Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests }));
}
