import { readFile } from 'node:fs/promises';
import { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import { MANIFEST_MAX_BYTES, type Manifest, manifestWithDigest } from '../../oci/manifest.js';
import { fileSize } from '../../fsys/files.js';
import { blobDataPath } from './paths.js';

/** Reads a manifest's `data` from the layout: size-capped, digest-checked, media type taken from the document. */
export async function readManifestData(root: string, digest: Digest, where: string): Promise<Manifest> {
  const path = blobDataPath(root, digest);
  const size = await fileSize(path);
  if (size === undefined) {
    throw new FerryError('E_BLOB_MISSING', `${where}: manifest ${digest} has no data file (${path})`, {
      hint: 'the storage layout is incomplete; re-import the image', details: { digest, file: path },
    });
  }
  if (size > MANIFEST_MAX_BYTES) {
    throw new FerryError('E_MANIFEST_INVALID', `${where}: manifest ${digest} is ${size} bytes, more than the ${MANIFEST_MAX_BYTES} allowed`, {
      hint: 'the file is not a manifest, or the layout is damaged', details: { digest, file: path },
    });
  }
  return manifestWithDigest(await readFile(path), undefined, {
    digest, where: `${where}: ${path}`, hint: 'the storage layout is corrupted; re-import the image', details: { digest, file: path },
  });
}
