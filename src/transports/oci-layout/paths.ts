import { join } from 'node:path';
import { type Digest, digestHex } from '../../oci/digest.js';

/** OCI image layout (image-spec layout.md). */

export const LAYOUT_FILE = 'oci-layout';
export const LAYOUT_TEXT = '{"imageLayoutVersion":"1.0.0"}';
export const INDEX_FILE = 'index.json';
export const REF_NAME = 'org.opencontainers.image.ref.name';

export function blobPath(root: string, digest: Digest): string {
  return join(root, 'blobs', 'sha256', digestHex(digest));
}
