import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import { isValidRepository, isValidTag } from '../../oci/reference.js';
import { isMissing } from '../../fsys/files.js';
import { repositoriesRoot, revisionsDir, layersDir, tagsDir } from './paths.js';

/** Enumerates what a storage layout holds. Names found on disk are untrusted and validated before use. */

async function subdirs(dir: string): Promise<string[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => e.isDirectory()).map((e) => e.name).sort();
  } catch (e) {
    if (isMissing(e)) return [];
    throw e;
  }
}

function unsafe(path: string, what: string, name: string): FerryError {
  return new FerryError('E_NAME_UNSAFE', `${path}: ${what} ${JSON.stringify(name.slice(0, 200))} found in the storage layout is not a valid name`, {
    hint: 'the layout was not written by a registry; remove or rename that directory',
    details: { file: path },
  });
}

/**
 * Repositories are nested directories; one is a repository when it holds
 * `_manifests` or `_layers` (v2.8's catalog looks at `_layers`, v3 at `_manifests`).
 * A repository may also be a prefix of another (`a` and `a/b`).
 */
export async function listRepositories(root: string): Promise<string[]> {
  const base = repositoriesRoot(root);
  const found: string[] = [];
  const visit = async (rel: string[]): Promise<void> => {
    const names = await subdirs(join(base, ...rel));
    if (rel.length > 0 && (names.includes('_manifests') || names.includes('_layers'))) {
      const repo = rel.join('/');
      if (!isValidRepository(repo)) throw unsafe(join(base, ...rel), 'repository', repo);
      found.push(repo);
    }
    for (const n of names) {
      if (n.startsWith('_')) continue;
      // Depth guard: a hostile tree could be arbitrarily deep; names are at most 255 characters anyway.
      if (rel.length >= 128) throw unsafe(join(base, ...rel), 'repository path', rel.join('/'));
      await visit([...rel, n]);
    }
  };
  await visit([]);
  return found;
}

export async function listTags(root: string, repository: string): Promise<string[]> {
  const dir = tagsDir(root, repository);
  const tags = await subdirs(dir);
  for (const t of tags) if (!isValidTag(t)) throw unsafe(join(dir, t), 'tag', t);
  return tags;
}

async function listDigestDirs(dir: string): Promise<Digest[]> {
  const out: Digest[] = [];
  for (const hex of await subdirs(dir)) {
    const d = `sha256:${hex}`;
    if (isDigest(d)) out.push(d);
  }
  return out;
}

export function listRevisions(root: string, repository: string): Promise<Digest[]> {
  return listDigestDirs(revisionsDir(root, repository));
}

export function listLayerLinks(root: string, repository: string): Promise<Digest[]> {
  return listDigestDirs(layersDir(root, repository));
}
