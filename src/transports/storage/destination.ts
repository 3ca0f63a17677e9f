import { rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, blobsOf, isForeignLayer, parseManifest } from '../../oci/manifest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import { drain } from '../../fsys/files.js';
import { type FileSystemPort, localFileSystem } from '../../fsys/port.js';
import { readLink, writeLink } from './links.js';
import {
  blobDataPath, blobDir, blobsRoot, layerLinkPath, revisionLinkPath, tagCurrentLinkPath, tagIndexLinkPath,
} from './paths.js';
import { type KeepImage, type PruneReport, pruneLayout } from './prune.js';

export interface StorageLayoutDestinationOptions {
  /** After the run, remove every repository, tag, manifest, link and blob that the run did not write or confirm. */
  prune?: boolean;
  concurrentBlobs?: number;
  /** Where the layout lives: this machine (default) or a remote one over SFTP. Prune works on local layouts only. */
  fs?: FileSystemPort;
}

/**
 * Writes distribution v2.8's filesystem storage layout, so a registry started
 * on the directory serves the images. Data is global and shared; links are per
 * repository. Merging into a layout a live registry populated is the normal
 * case: existing data is reused, never rewritten, and `_uploads` is never touched.
 */
export class StorageLayoutDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  private readonly images: KeepImage[] = [];
  lastPrune: PruneReport | undefined;
  private readonly fs: FileSystemPort;

  constructor(readonly root: string, private readonly opts: StorageLayoutDestinationOptions = {}) {
    this.fs = opts.fs ?? localFileSystem;
    this.description = `registry storage ${this.fs === localFileSystem ? '' : `${this.fs.description}:`}${root}`;
    if (opts.prune && this.fs !== localFileSystem) {
      throw new FerryError('E_USAGE', `${this.description}: --prune works on a local layout only`, { hint: 'run the import without --prune, or run ferry on the registry host' });
    }
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 4, globalBlobs: false };
  }

  private async hasData(desc: Pick<Descriptor, 'digest' | 'size'>): Promise<boolean> {
    return (await this.fs.fileSize(blobDataPath(this.root, desc.digest))) === desc.size;
  }

  private async ensureLink(path: string, digest: Digest): Promise<void> {
    if ((await readLink(path, this.fs).catch(() => undefined)) !== digest) await writeLink(path, digest, this.fs);
  }

  async hasBlob(repository: string, desc: Descriptor): Promise<boolean> {
    validateRepository(repository);
    if (!(await this.hasData(desc))) return false;
    return (await readLink(layerLinkPath(this.root, repository, desc.digest), this.fs).catch(() => undefined)) === desc.digest;
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    validateRepository(repository);
    if (await this.hasData(desc)) {
      await drain(data, opts.signal);
    } else {
      try {
        await this.fs.streamToFileAtomic(blobDataPath(this.root, desc.digest), data, opts.signal);
      } catch (e) {
        await this.fs.removeEmptyDirs(blobDir(this.root, desc.digest), blobsRoot(this.root));
        throw e;
      }
    }
    await writeLink(layerLinkPath(this.root, repository, desc.digest), desc.digest, this.fs);
  }

  async mountBlob(repository: string, desc: Descriptor, _fromRepository: string): Promise<boolean> {
    validateRepository(repository);
    if (!(await this.hasData(desc))) return false;
    await this.ensureLink(layerLinkPath(this.root, repository, desc.digest), desc.digest);
    return true;
  }

  async hasManifest(repository: string, digest: Digest): Promise<boolean> {
    validateRepository(repository);
    if ((await this.fs.fileSize(blobDataPath(this.root, digest))) === undefined) return false;
    return (await readLink(revisionLinkPath(this.root, repository, digest), this.fs).catch(() => undefined)) === digest;
  }

  async putManifest(repository: string, manifest: Manifest): Promise<void> {
    validateRepository(repository);
    const where = `${repository}@${manifest.digest}`;
    const actual = sha256Digest(manifest.bytes);
    if (actual !== manifest.digest) {
      throw new FerryError('E_DIGEST_MISMATCH', `${where}: manifest bytes hash to ${actual}`, {
        hint: 'the manifest was altered after it was read; this is a bug or a damaged source', details: { digest: manifest.digest, actual },
      });
    }
    const parsed = parseManifest(manifest.bytes, manifest.mediaType, where);
    // The registry serves a manifest only if everything it references is linked in the same repository.
    for (const b of blobsOf(parsed)) {
      const present = (await this.fs.fileSize(blobDataPath(this.root, b.digest))) !== undefined;
      // A foreign layer a bundle does not carry: the registry serves the manifest without it, as one it was pushed to does.
      if (!present && isForeignLayer(b)) continue;
      if (!present) throw missing(where, 'blob', b.digest);
      await this.ensureLink(layerLinkPath(this.root, repository, b.digest), b.digest);
    }
    for (const child of parsed.manifests) {
      if (!(await this.hasManifest(repository, child.digest))) throw missing(where, 'child manifest', child.digest);
    }
    if ((await this.fs.fileSize(blobDataPath(this.root, manifest.digest))) !== manifest.bytes.length) {
      await this.fs.writeFileAtomic(blobDataPath(this.root, manifest.digest), manifest.bytes);
    }
    await this.ensureLink(revisionLinkPath(this.root, repository, manifest.digest), manifest.digest);
  }

  async putImage(image: ImageRecord): Promise<void> {
    const repository = validateRepository(image.repository);
    if (!(await this.hasManifest(repository, image.manifest.digest))) await this.putManifest(repository, image.manifest);
    if (image.tag !== undefined) {
      const tag = validateTag(image.tag);
      // distribution's tagStore.Tag order: history entry first, then the current pointer.
      await this.ensureLink(tagIndexLinkPath(this.root, repository, tag, image.manifest.digest), image.manifest.digest);
      await writeLink(tagCurrentLinkPath(this.root, repository, tag), image.manifest.digest, this.fs);
    }
    const keep: KeepImage = { repository, digest: image.manifest.digest };
    if (image.tag !== undefined) keep.tag = image.tag;
    this.images.push(keep);
  }

  /** Removes everything not reachable from `keep` (see pruneLayout). */
  async prune(keep: KeepImage[]): Promise<PruneReport> {
    this.lastPrune = await pruneLayout(this.root, keep);
    return this.lastPrune;
  }

  async commit(): Promise<void> {
    if (this.opts.prune) await this.prune(this.images);
  }

  async close(): Promise<void> {
    // Every write removes its own temp file on failure; nothing is held open.
  }
}

function missing(where: string, what: string, digest: Digest): FerryError {
  return new FerryError('E_BLOB_MISSING', `${where}: ${what} ${digest} is not in the layout yet`, {
    hint: 'blobs must be written before the manifests that reference them; this is a bug in the caller', details: { digest },
  });
}

/** Removes a blob's data; used by prune and by tests that simulate damage. */
export async function removeBlobData(root: string, digest: Digest): Promise<void> {
  await rm(blobDir(root, digest), { recursive: true, force: true });
}
