import { createReadStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import type { Descriptor, Manifest } from '../../oci/manifest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';
import type { ImageSource, SourceImage } from '../types.js';
import { fileSize } from '../../fsys/files.js';
import { readLink } from './links.js';
import { readManifestData } from './manifests.js';
import { blobDataPath, layerLinkPath, revisionLinkPath, tagCurrentLinkPath } from './paths.js';
import { listRepositories, listTags } from './walk.js';

/**
 * Reads a registry storage layout the way the registry serves it: a tag through
 * its current link, a manifest only with a revision link in that repository, a
 * blob only with a `_layers` link there. The layout is untrusted: names are
 * validated, manifests size-capped and digest-checked.
 */
export class StorageLayoutSource implements ImageSource {
  readonly description: string;

  constructor(readonly root: string) {
    this.description = `registry storage ${root}`;
  }

  async listImages(): Promise<SourceImage[]> {
    const out: SourceImage[] = [];
    for (const repository of await listRepositories(this.root)) {
      for (const tag of await listTags(this.root, repository)) {
        // A deleted tag keeps its directory without a current link.
        const digest = await readLink(tagCurrentLinkPath(this.root, repository, tag));
        if (digest !== undefined) out.push({ repository, tag, digest });
      }
    }
    return out;
  }

  async getManifest(repository: string, reference: string): Promise<Manifest> {
    validateRepository(repository);
    const where = `${this.description}: ${repository}${isDigest(reference) ? '@' : ':'}${reference}`;
    let digest: Digest;
    if (isDigest(reference)) {
      digest = reference;
    } else {
      const d = await readLink(tagCurrentLinkPath(this.root, repository, validateTag(reference)));
      if (d === undefined) throw notFound(where, 'tag');
      digest = d;
    }
    if ((await readLink(revisionLinkPath(this.root, repository, digest))) !== digest) throw notFound(where, 'manifest');
    return readManifestData(this.root, digest, where);
  }

  async getBlob(repository: string, desc: Descriptor): Promise<Readable> {
    validateRepository(repository);
    const where = `${this.description}: ${repository}@${desc.digest}`;
    const linked = (await readLink(layerLinkPath(this.root, repository, desc.digest))) === desc.digest
      || (await readLink(revisionLinkPath(this.root, repository, desc.digest))) === desc.digest;
    const path = blobDataPath(this.root, desc.digest);
    if (!linked || (await fileSize(path)) === undefined) {
      throw new FerryError('E_BLOB_MISSING', `${where}: blob is not in this repository`, {
        hint: 'the layout is incomplete (garbage-collected or partly copied); re-import the image', details: { digest: desc.digest, file: path },
      });
    }
    return createReadStream(path);
  }

  async close(): Promise<void> {}
}

function notFound(where: string, what: string): FerryError {
  return new FerryError('E_NOT_FOUND', `${where}: ${what} not found in the storage layout`, {
    hint: 'list what the layout holds with `ferry inventory`, or check the repository and tag spelling', details: { where },
  });
}
