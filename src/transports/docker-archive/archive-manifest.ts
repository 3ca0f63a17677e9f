import { type Digest, digestHex } from '../../oci/digest.js';

/** docker save's manifest.json: one entry per image, paths relative to the archive root. */
export interface ArchiveEntry {
  Config: string;
  RepoTags: string[] | null;
  Layers: string[];
}

/** Same names containers/image's docker-archive writer uses; loaders sniff layer compression, so `.tar` is kept for gzip'd layers too. */
export function configName(digest: Digest): string {
  return `${digestHex(digest)}.json`;
}

export function layerName(digest: Digest): string {
  return `${digestHex(digest)}.tar`;
}
