import { join } from 'node:path';
import { type Digest, digestHex } from '../../oci/digest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';

/**
 * Paths of distribution v2.8's filesystem storage driver (registry/storage/paths.go).
 * Every function validates the names it is given, so no caller can smuggle
 * `..` or an absolute path into the tree.
 */

export function v2Root(root: string): string {
  return join(root, 'docker', 'registry', 'v2');
}

export function blobsRoot(root: string): string {
  return join(v2Root(root), 'blobs', 'sha256');
}

export function blobDir(root: string, digest: Digest): string {
  const hex = digestHex(digest);
  return join(blobsRoot(root), hex.slice(0, 2), hex);
}

export function blobDataPath(root: string, digest: Digest): string {
  return join(blobDir(root, digest), 'data');
}

export function repositoriesRoot(root: string): string {
  return join(v2Root(root), 'repositories');
}

export function repositoryDir(root: string, repository: string): string {
  return join(repositoriesRoot(root), ...validateRepository(repository).split('/'));
}

export function layersDir(root: string, repository: string): string {
  return join(repositoryDir(root, repository), '_layers', 'sha256');
}

export function layerLinkPath(root: string, repository: string, digest: Digest): string {
  return join(layersDir(root, repository), digestHex(digest), 'link');
}

export function revisionsDir(root: string, repository: string): string {
  return join(repositoryDir(root, repository), '_manifests', 'revisions', 'sha256');
}

export function revisionLinkPath(root: string, repository: string, digest: Digest): string {
  return join(revisionsDir(root, repository), digestHex(digest), 'link');
}

export function tagsDir(root: string, repository: string): string {
  return join(repositoryDir(root, repository), '_manifests', 'tags');
}

export function tagDir(root: string, repository: string, tag: string): string {
  return join(tagsDir(root, repository), validateTag(tag));
}

export function tagCurrentLinkPath(root: string, repository: string, tag: string): string {
  return join(tagDir(root, repository, tag), 'current', 'link');
}

export function tagIndexDir(root: string, repository: string, tag: string): string {
  return join(tagDir(root, repository, tag), 'index', 'sha256');
}

export function tagIndexLinkPath(root: string, repository: string, tag: string, digest: Digest): string {
  return join(tagIndexDir(root, repository, tag), digestHex(digest), 'link');
}
