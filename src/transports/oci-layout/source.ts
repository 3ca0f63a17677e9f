import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, MANIFEST_MAX_BYTES, type Manifest, parseManifest } from '../../oci/manifest.js';
import { isValidRepository, isValidTag, validateRepository } from '../../oci/reference.js';
import type { ImageSource, SourceImage } from '../types.js';
import { fileSize } from '../../fsys/files.js';
import { readIndexFile } from './index-file.js';
import { blobPath, REF_NAME } from './paths.js';

export interface OciLayoutSourceOptions {
  /** Repository for entries whose ref name is a bare tag (or absent). Default: the layout directory's name, when valid. */
  repository?: string;
}

/**
 * Reads an OCI image layout. Ref names `<repository>:<tag>` (as ferry writes
 * them) give the repository; bare tags (as skopeo writes them) get the default
 * repository. Everything read is untrusted: index size-capped, manifests digest-checked.
 */
export class OciLayoutSource implements ImageSource {
  readonly description: string;
  private readonly defaultRepository: string;

  constructor(readonly root: string, opts: OciLayoutSourceOptions = {}) {
    this.description = `OCI layout ${root}`;
    const base = basename(root).toLowerCase();
    this.defaultRepository = validateRepository(opts.repository ?? (isValidRepository(base) ? base : 'image'));
  }

  private async entries(): Promise<Array<SourceImage & { mediaType: string }>> {
    const manifests = await readIndexFile(this.root);
    if (manifests === undefined) {
      throw new FerryError('E_NOT_FOUND', `${this.root}: no index.json; not an OCI image layout`, { hint: 'point at the directory that holds oci-layout and index.json' });
    }
    return manifests.map((d) => {
      const ref = d.annotations?.[REF_NAME];
      const img: SourceImage & { mediaType: string } = { repository: this.defaultRepository, digest: d.digest, mediaType: d.mediaType };
      if (ref === undefined) return img;
      const colon = ref.lastIndexOf(':');
      const slash = ref.lastIndexOf('/');
      if (colon > 0 && colon > slash) {
        const repo = ref.slice(0, colon);
        const tag = ref.slice(colon + 1);
        if (isValidRepository(repo) && isValidTag(tag)) return { ...img, repository: repo, tag };
      } else if (isValidTag(ref)) {
        return { ...img, tag: ref };
      }
      throw new FerryError('E_NAME_UNSAFE', `${this.root}/index.json: ref name ${JSON.stringify(ref.slice(0, 200))} is not <repository>:<tag> or a tag`, {
        hint: 'fix or remove that entry of index.json', details: { file: `${this.root}/index.json` },
      });
    });
  }

  async listImages(): Promise<SourceImage[]> {
    return (await this.entries()).map(({ mediaType: _m, ...rest }) => rest);
  }

  async getManifest(repository: string, reference: string): Promise<Manifest> {
    validateRepository(repository);
    let digest: Digest;
    if (isDigest(reference)) {
      digest = reference;
    } else {
      const e = (await this.entries()).find((i) => i.repository === repository && i.tag === reference);
      if (!e) throw new FerryError('E_NOT_FOUND', `${this.description}: ${repository}:${reference} not found`, { hint: 'list the layout with `ferry inventory`' });
      digest = e.digest;
    }
    const path = blobPath(this.root, digest);
    const size = await fileSize(path);
    if (size === undefined) throw new FerryError('E_NOT_FOUND', `${this.description}: manifest ${digest} not found`, { hint: 'the layout is incomplete' });
    if (size > MANIFEST_MAX_BYTES) throw new FerryError('E_MANIFEST_INVALID', `${path}: ${size} bytes is too large for a manifest`, { hint: 'the layout is damaged' });
    const bytes = await readFile(path);
    const actual = sha256Digest(bytes);
    if (actual !== digest) {
      throw new FerryError('E_DIGEST_MISMATCH', `${path}: hashes to ${actual}, not ${digest}`, { hint: 'the layout is corrupted', details: { file: path } });
    }
    return { digest, bytes, mediaType: parseManifest(bytes, undefined, path).mediaType };
  }

  async getBlob(_repository: string, desc: Descriptor): Promise<Readable> {
    const path = blobPath(this.root, desc.digest);
    if ((await fileSize(path)) === undefined) {
      throw new FerryError('E_BLOB_MISSING', `${this.description}: blob ${desc.digest} missing`, { hint: 'the layout is incomplete', details: { digest: desc.digest } });
    }
    return createReadStream(path);
  }

  async close(): Promise<void> {}
}
