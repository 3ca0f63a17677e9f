import { readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { type Digest, isDigest } from '../../oci/digest.js';
import { blobsOf, parseManifest } from '../../oci/manifest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';
import { isMissing, removeEmptyDirs } from '../../fsys/files.js';
import { readManifestData } from './manifests.js';
import { blobsRoot, layersDir, repositoriesRoot, repositoryDir, revisionsDir, tagDir, tagIndexDir, tagsDir } from './paths.js';
import { listRepositories, listLayerLinks, listRevisions, listTags } from './walk.js';

export interface KeepImage {
  repository: string;
  tag?: string;
  digest: Digest;
}

export interface PruneReport {
  repositories: string[];
  tags: number;
  revisions: number;
  layerLinks: number;
  blobs: number;
}

interface RepoKeep {
  tags: Map<string, Digest>;
  manifests: Set<Digest>;
  blobs: Set<Digest>;
}

/** Everything reachable from the kept images, per repository, read from the layout itself. */
async function reachable(root: string, keep: KeepImage[]): Promise<Map<string, RepoKeep>> {
  const repos = new Map<string, RepoKeep>();
  for (const img of keep) {
    const repository = validateRepository(img.repository);
    let rk = repos.get(repository);
    if (!rk) repos.set(repository, (rk = { tags: new Map(), manifests: new Set(), blobs: new Set() }));
    if (img.tag !== undefined) rk.tags.set(validateTag(img.tag), img.digest);
    const todo: Digest[] = [img.digest];
    while (todo.length > 0) {
      const d = todo.pop()!;
      if (rk.manifests.has(d)) continue;
      rk.manifests.add(d);
      const m = await readManifestData(root, d, `prune ${repository}`);
      const parsed = parseManifest(m.bytes, m.mediaType, `${repository}@${d}`);
      for (const b of blobsOf(parsed)) rk.blobs.add(b.digest);
      for (const c of parsed.manifests) todo.push(c.digest);
    }
  }
  return repos;
}

async function entries(dir: string): Promise<string[]> {
  try {
    return await readdir(dir);
  } catch (e) {
    if (isMissing(e)) return [];
    throw e;
  }
}

/**
 * Makes the layout hold exactly the kept images: other repositories lose their
 * `_manifests`, `_layers` and `_uploads` (nested repositories under them stay if
 * kept); kept repositories lose other tags, tag history, revisions and `_layers`
 * links — including the stale links distribution's garbage collector leaves —
 * and blob data no kept repository references is deleted. `_uploads` of kept
 * repositories is left alone: a live registry may be using it.
 */
export async function pruneLayout(root: string, keep: KeepImage[]): Promise<PruneReport> {
  const want = await reachable(root, keep);
  const report: PruneReport = { repositories: [], tags: 0, revisions: 0, layerLinks: 0, blobs: 0 };
  const reposRoot = repositoriesRoot(root);

  for (const repo of await listRepositories(root)) {
    const dir = repositoryDir(root, repo);
    const rk = want.get(repo);
    if (!rk) {
      for (const special of ['_manifests', '_layers', '_uploads']) await rm(join(dir, special), { recursive: true, force: true });
      await removeEmptyDirs(dir, reposRoot);
      report.repositories.push(repo);
      continue;
    }
    for (const tag of await listTags(root, repo)) {
      const digest = rk.tags.get(tag);
      if (digest === undefined) {
        await rm(tagDir(root, repo, tag), { recursive: true, force: true });
        report.tags++;
        continue;
      }
      // A moved tag's history would point at manifests that are about to go.
      for (const hex of await entries(tagIndexDir(root, repo, tag))) {
        if (`sha256:${hex}` !== digest) await rm(join(tagIndexDir(root, repo, tag), hex), { recursive: true, force: true });
      }
    }
    await removeEmptyDirs(tagsDir(root, repo), dir);
    for (const d of await listRevisions(root, repo)) {
      if (!rk.manifests.has(d)) {
        await rm(join(revisionsDir(root, repo), d.slice(7)), { recursive: true, force: true });
        report.revisions++;
      }
    }
    for (const d of await listLayerLinks(root, repo)) {
      if (!rk.blobs.has(d)) {
        await rm(join(layersDir(root, repo), d.slice(7)), { recursive: true, force: true });
        report.layerLinks++;
      }
    }
  }

  const live = new Set<Digest>();
  for (const rk of want.values()) {
    for (const d of rk.manifests) live.add(d);
    for (const d of rk.blobs) live.add(d);
  }
  const broot = blobsRoot(root);
  for (const xx of await entries(broot)) {
    for (const hex of await entries(join(broot, xx))) {
      const d = `sha256:${hex}`;
      if (isDigest(d) && live.has(d)) continue;
      await rm(join(broot, xx, hex), { recursive: true, force: true });
      report.blobs++;
    }
    await removeEmptyDirs(join(broot, xx), broot);
  }
  return report;
}
