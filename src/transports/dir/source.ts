import { createReadStream } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import { type Descriptor, MANIFEST_MAX_BYTES, type Manifest, manifestFromBytes, manifestWithDigest } from '../../oci/manifest.js';
import { isValidQualifiedName, isValidTag, validateQualifiedName } from '../../oci/reference.js';
import type { ImageSource, SourceImage } from '../types.js';
import { fileSize, isMissing } from '../../fsys/files.js';
import { blobFileName, instanceManifestName, KNOWN_VERSIONS, MANIFEST_FILE, parseLeaf, VERSION_FILE } from './paths.js';

interface DirImage extends SourceImage {
  dir: string;
}

/**
 * Reads a tree of skopeo `dir:` images: as ferry writes them (`<repository>:<tag>`,
 * nested paths as nested directories), as `skopeo sync` writes them (the last
 * path component only: `web:v1`) and as `skopeo sync --scoped` does (registry
 * first: `127.0.0.1:5000/apps/web:v1`, `docker.io/library/nginx:1.25`). The
 * directory path is the name, registry included when the tree has one; names
 * are validated; manifests are size-capped and digest-checked. A directory
 * that is itself one image (`skopeo copy … dir:DIR`) is named after DIR.
 */
export class SkopeoDirSource implements ImageSource {
  readonly description: string;
  private scanned: Promise<DirImage[]> | undefined;

  constructor(readonly root: string) {
    this.description = `skopeo dir tree ${root}`;
  }

  private scan(): Promise<DirImage[]> {
    this.scanned ??= this.walk();
    return this.scanned;
  }

  private async walk(): Promise<DirImage[]> {
    // `skopeo copy … dir:DIR` writes one image into DIR itself: named after DIR (`web:v1`, or `web`
    // with no tag: a digest-only image), as the directories of a tree are.
    if (await holdsImage(this.root)) {
      const base = basename(this.root);
      return [await readImageDir(this.root, parseLeaf(base) ?? { name: base.toLowerCase() }, [])];
    }
    const found: DirImage[] = [];
    const visit = async (rel: string[]): Promise<void> => {
      if (rel.length > 128) return;
      let entries;
      try {
        entries = await readdir(join(this.root, ...rel), { withFileTypes: true });
      } catch (e) {
        if (isMissing(e)) return;
        throw e;
      }
      for (const e of entries) {
        if (!e.isDirectory() || e.name.startsWith('.')) continue;
        const leaf = parseLeaf(e.name);
        const dir = join(this.root, ...rel, e.name);
        // `skopeo sync --scoped` puts the registry first (`127.0.0.1:5000/apps/web:v1`): a
        // name with a colon that holds no image but further directories is a path component.
        if (leaf === undefined || (leaf.digest === undefined && !(await holdsImage(dir)) && (await hasSubdirectories(dir)))) {
          await visit([...rel, e.name]);
          continue;
        }
        found.push(await readImageDir(dir, leaf, rel));
      }
    };
    await visit([]);
    return found.sort((a, b) => a.dir.localeCompare(b.dir));
  }

  async listImages(): Promise<SourceImage[]> {
    return (await this.scan()).map(({ dir: _d, ...rest }) => rest);
  }

  private async dirsOf(repository: string): Promise<DirImage[]> {
    validateQualifiedName(repository);
    return (await this.scan()).filter((i) => i.repository === repository);
  }

  async getManifest(repository: string, reference: string): Promise<Manifest> {
    const images = await this.dirsOf(repository);
    if (!isDigest(reference)) {
      const img = images.find((i) => i.tag === reference);
      if (!img) throw notFound(this.description, `${repository}:${reference}`);
      return readManifestFile(join(img.dir, MANIFEST_FILE), img.digest);
    }
    for (const img of images) {
      if (img.digest === reference) return readManifestFile(join(img.dir, MANIFEST_FILE), reference);
      const instance = join(img.dir, instanceManifestName(reference));
      if ((await fileSize(instance)) !== undefined) return readManifestFile(instance, reference);
    }
    throw notFound(this.description, `${repository}@${reference}`);
  }

  async getBlob(repository: string, desc: Descriptor): Promise<Readable> {
    for (const img of await this.dirsOf(repository)) {
      const p = join(img.dir, blobFileName(desc.digest));
      if ((await fileSize(p)) !== undefined) return createReadStream(p);
    }
    throw new FerryError('E_BLOB_MISSING', `${this.description}: blob ${desc.digest} of ${repository} is in none of its image directories`, {
      hint: 'the dir tree is incomplete; copy the image again', details: { digest: desc.digest },
    });
  }

  async close(): Promise<void> {}
}

/** One image directory: `leaf` from its name, `rel` the directories above it in the tree (the rest of the name). */
async function readImageDir(dir: string, leaf: { name: string; tag?: string; digest?: string }, rel: string[]): Promise<DirImage> {
  const repository = [...rel, leaf.name].join('/');
  if (!isValidQualifiedName(repository) || (leaf.tag !== undefined && !isValidTag(leaf.tag)) || (leaf.digest !== undefined && !isDigest(leaf.digest))) {
    throw new FerryError('E_NAME_UNSAFE', `${dir}: directory name is not <repository>:<tag> or <repository>@sha256:<hex>`, {
      hint: 'rename or remove that directory', details: { file: dir },
    });
  }
  await checkVersion(dir);
  const manifest = await readManifestFile(join(dir, MANIFEST_FILE), undefined);
  if (leaf.digest !== undefined && manifest.digest !== leaf.digest) {
    throw new FerryError('E_DIGEST_MISMATCH', `${dir}: manifest.json hashes to ${manifest.digest}, not the digest the directory is named after`, {
      hint: 'the directory was altered; copy the image again', details: { file: dir },
    });
  }
  const img: DirImage = { repository, digest: manifest.digest, dir };
  if (leaf.tag !== undefined) img.tag = leaf.tag;
  return img;
}

/** An image directory has skopeo's `version` or a `manifest.json`; one that lacks both is refused by checkVersion. */
async function holdsImage(dir: string): Promise<boolean> {
  return (await fileSize(join(dir, VERSION_FILE))) !== undefined || (await fileSize(join(dir, MANIFEST_FILE))) !== undefined;
}

async function hasSubdirectories(dir: string): Promise<boolean> {
  return (await readdir(dir, { withFileTypes: true })).some((e) => e.isDirectory());
}

async function checkVersion(dir: string): Promise<void> {
  let text: string | undefined;
  try {
    const p = join(dir, VERSION_FILE);
    if (((await fileSize(p)) ?? 0) <= 64) text = await readFile(p, 'utf8');
  } catch (e) {
    if (!isMissing(e)) throw e;
  }
  if (text === undefined || !KNOWN_VERSIONS.includes(text)) {
    throw new FerryError('E_MANIFEST_INVALID', `${dir}: not a skopeo dir image (missing or unknown "version" file)`, {
      hint: 'only directories written by `skopeo copy … dir:` or ferry can be read', details: { file: dir },
    });
  }
}

async function readManifestFile(path: string, expected: Digest | undefined): Promise<Manifest> {
  const size = await fileSize(path);
  if (size === undefined) throw new FerryError('E_BLOB_MISSING', `${path}: manifest file missing`, { hint: 'the image directory is incomplete; copy it again' });
  if (size > MANIFEST_MAX_BYTES) throw new FerryError('E_MANIFEST_INVALID', `${path}: ${size} bytes is too large for a manifest`, { hint: 'the file is not a manifest' });
  const bytes = await readFile(path);
  if (expected === undefined) return manifestFromBytes(bytes, undefined, path);
  return manifestWithDigest(bytes, undefined, { digest: expected, where: path, hint: 'the image directory was altered; copy it again', details: { file: path } });
}

function notFound(where: string, what: string): FerryError {
  return new FerryError('E_NOT_FOUND', `${where}: ${what} not found`, { hint: 'list the tree with `ferry inventory`' });
}
