import { join } from 'node:path';
import { type Digest, digestHex } from '../../oci/digest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';

/**
 * skopeo `dir:` trees. One image per directory, named as `skopeo sync --scoped`
 * names them below the registry host: `<out>/<repository>:<tag>`, or
 * `<out>/<repository>@sha256:<hex>` for digest-only images, nested repository
 * paths becoming nested directories. (Plain `skopeo sync` keeps only the last
 * path component, which collides for `a/x` and `b/x`; we keep the whole path.)
 */

export const VERSION_FILE = 'version';
export const VERSION_TEXT = 'Directory Transport Version: 1.1\n';
/** Versions skopeo 1.9 reads. */
export const KNOWN_VERSIONS = ['Directory Transport Version: 1.0\n', VERSION_TEXT];
export const MANIFEST_FILE = 'manifest.json';

export function imageDirName(repository: string, tag: string | undefined, digest: Digest): string {
  const parts = validateRepository(repository).split('/');
  const last = parts.pop()!;
  const leaf = tag !== undefined ? `${last}:${validateTag(tag)}` : `${last}@${digest}`;
  return join(...parts, leaf);
}

export function imageDir(out: string, repository: string, tag: string | undefined, digest: Digest): string {
  return join(out, imageDirName(repository, tag, digest));
}

/** Config and layers: the bare hex, no algorithm, no extension. */
export function blobFileName(digest: Digest): string {
  return digestHex(digest);
}

/** An index's instances, beside the index in manifest.json. */
export function instanceManifestName(digest: Digest): string {
  return `${digestHex(digest)}.manifest.json`;
}

/** Splits an image directory's leaf name back into repository tail and tag or digest. */
export function parseLeaf(leaf: string): { name: string; tag?: string; digest?: string } | undefined {
  const at = leaf.indexOf('@');
  if (at > 0) return { name: leaf.slice(0, at), digest: leaf.slice(at + 1) };
  const colon = leaf.indexOf(':');
  if (colon > 0) return { name: leaf.slice(0, colon), tag: leaf.slice(colon + 1) };
  return undefined;
}
