import { lstat, readdir, rm } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import { blobsOf, parseManifest } from '../../oci/manifest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';
import { walkManifests, type WalkNode } from '../../oci/walk.js';
import { isMissing, removeEmptyDirs } from '../../fsys/files.js';
import { readManifestData } from './manifests.js';
import { blobsRoot, layersDir, repositoriesRoot, repositoryDir, revisionsDir, tagDir, tagIndexDir, tagsDir, v2Root } from './paths.js';
import { listRepositories, listLayerLinks, listRevisions, listTags } from './walk.js';

export interface KeepImage {
  repository: string;
  tag?: string;
  digest: Digest;
}

/** What a prune removed, for the receipt: an audit must be able to say what went. */
export interface PruneReport {
  /** Repositories removed whole. */
  repositories: string[];
  /** `repository:tag` of every tag removed (those of removed repositories included). */
  tags: string[];
  /** `repository@sha256:…` of every manifest unlinked from a repository that stays. */
  revisions: string[];
  layerLinks: number;
  /** Blobs (manifests, configs, layers) whose data was deleted. */
  blobs: Digest[];
}

interface RepoKeep {
  tags: Map<string, Digest>;
  manifests: Set<Digest>;
  blobs: Set<Digest>;
}

/** Everything reachable from the kept images, per repository, read from the layout itself. */
async function reachable(root: string, keep: KeepImage[]): Promise<Map<string, RepoKeep>> {
  const repos = new Map<string, RepoKeep>();
  // Images share manifests (a base index, the same platform image): each is read and parsed once.
  const read = new Map<Digest, WalkNode>();
  const load = async (digest: Digest, where: string): Promise<WalkNode> => {
    let node = read.get(digest);
    if (!node) {
      const m = await readManifestData(root, digest, where);
      node = { digest, parsed: parseManifest(m.bytes, m.mediaType, `${where}@${digest}`) };
      read.set(digest, node);
    }
    return node;
  };
  for (const img of keep) {
    const repository = validateRepository(img.repository);
    let rk = repos.get(repository);
    if (!rk) repos.set(repository, (rk = { tags: new Map(), manifests: new Set(), blobs: new Set() }));
    if (img.tag !== undefined) rk.tags.set(validateTag(img.tag), img.digest);
    const where = `prune ${repository}`;
    for (const { node } of await walkManifests(await load(img.digest, where), (child) => load(child.digest, where), `${where}@${img.digest}`)) {
      rk.manifests.add(node.digest);
      for (const b of blobsOf(node.parsed)) rk.blobs.add(b.digest);
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
 * Refuses a layout with a symbolic link anywhere under `repositories/` or
 * `blobs/` (or as one of them), before anything is deleted: neither the
 * registry nor ferry makes links there, and deleting through a planted one
 * (`blobs/sha256/ab` → `/home`) would delete outside the target. The walk
 * uses lstat only, so it never follows one itself.
 */
async function refuseLinks(root: string): Promise<void> {
  const v2 = v2Root(root);
  const found: string[] = [];
  const visit = async (path: string): Promise<void> => {
    let st;
    try {
      st = await lstat(path);
    } catch (e) {
      if (isMissing(e)) return;
      throw e;
    }
    if (st.isSymbolicLink()) {
      found.push(path);
      return;
    }
    if (!st.isDirectory()) return;
    for (const e of await readdir(path, { withFileTypes: true })) {
      if (e.isSymbolicLink()) found.push(join(path, e.name));
      else if (e.isDirectory()) await visit(join(path, e.name));
    }
  };
  for (const d of ['docker', 'docker/registry', 'docker/registry/v2']) {
    const p = join(root, d);
    if ((await lstat(p).catch(() => undefined))?.isSymbolicLink()) found.push(p);
  }
  if (found.length === 0) {
    await visit(join(v2, 'repositories'));
    await visit(join(v2, 'blobs'));
  }
  if (found.length > 0) {
    const shown = found.slice(0, 5).map((p) => relative(root, p)).join(', ');
    throw new FerryError('E_NAME_UNSAFE', `${root}: --prune refused: the layout holds ${found.length === 1 ? 'a symbolic link' : `${found.length} symbolic links`} (${shown}${found.length > 5 ? ', …' : ''}); nothing was deleted`, {
      hint: 'neither the registry nor ferry makes links in a layout, and pruning through one could delete files outside it; remove the links (or replace them with the real directories) and run the import again',
      details: { target: root, file: found[0], links: found.slice(0, 100) },
    });
  }
}

/**
 * Makes the layout hold exactly the kept images: other repositories lose their
 * `_manifests`, `_layers` and `_uploads` (nested repositories under them stay if
 * kept); kept repositories lose other tags, tag history, revisions and `_layers`
 * links — including the stale links distribution's garbage collector leaves —
 * and blob data no kept repository references is deleted. `_uploads` of kept
 * repositories is left alone: a live registry may be using it. A layout with
 * a symbolic link in it is refused before anything is deleted.
 */
export async function pruneLayout(root: string, keep: KeepImage[]): Promise<PruneReport> {
  await refuseLinks(root);
  const want = await reachable(root, keep);
  const report: PruneReport = { repositories: [], tags: [], revisions: [], layerLinks: 0, blobs: [] };
  const reposRoot = repositoriesRoot(root);

  for (const repo of await listRepositories(root)) {
    const dir = repositoryDir(root, repo);
    const rk = want.get(repo);
    if (!rk) {
      for (const tag of await listTags(root, repo)) report.tags.push(`${repo}:${tag}`);
      for (const special of ['_manifests', '_layers', '_uploads']) await rm(join(dir, special), { recursive: true, force: true });
      await removeEmptyDirs(dir, reposRoot);
      report.repositories.push(repo);
      continue;
    }
    for (const tag of await listTags(root, repo)) {
      const digest = rk.tags.get(tag);
      if (digest === undefined) {
        await rm(tagDir(root, repo, tag), { recursive: true, force: true });
        report.tags.push(`${repo}:${tag}`);
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
        report.revisions.push(`${repo}@${d}`);
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
      if (isDigest(d)) report.blobs.push(d);
    }
    await removeEmptyDirs(join(broot, xx), broot);
  }
  report.blobs.sort();
  return report;
}
