import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { type Digest, isDigest } from '../../oci/digest.js';
import { type Descriptor, MANIFEST_MAX_BYTES, type Manifest, manifestWithDigest } from '../../oci/manifest.js';
import { isValidRepository, isValidTag, parseLocalReference, validateQualifiedName, validateRepository } from '../../oci/reference.js';
import type { ImageSource, SourceImage } from '../types.js';
import { fileSize } from '../../fsys/files.js';
import { readIndexFile } from './index-file.js';
import { blobPath, REF_NAME } from './paths.js';

export interface OciLayoutSourceOptions {
  /** Repository for entries whose ref name is a bare tag (or absent). Default: the layout directory's base name, lowercased. */
  repository?: string;
}

/**
 * Reads an OCI image layout. Each index.json entry's ref name is split by the
 * reference grammar and taken verbatim (spec/bundle.md §3.2):
 *   `127.0.0.1:5000/apps/web:v1`, `docker.io/library/x:1`, `localhost/app:1`
 *       (podman) — name with its registry, and tag;
 *   `app:1`, `team/app:1` (ferry, `skopeo copy … oci:DIR:app:1`) — a name
 *       without a registry, and tag;
 *   `name@sha256:…` — a digest-only image of that name;
 *   `1.0`, `v2` (`skopeo copy … oci:DIR:1.0`, buildah, umoci) — only a tag: the
 *       name is the layout directory's base name, lowercased (what podman
 *       names such an image after, too), so the same directory always gives
 *       the same name; an entry without a ref name is a digest-only image of
 *       that name.
 * Everything read is untrusted: index size-capped, manifests digest-checked.
 */
export class OciLayoutSource implements ImageSource {
  readonly description: string;
  private readonly namedRepository: string | undefined;

  constructor(readonly root: string, opts: OciLayoutSourceOptions = {}) {
    this.description = `OCI layout ${root}`;
    this.namedRepository = opts.repository === undefined ? undefined : validateRepository(opts.repository);
  }

  /** The name for entries that carry only a tag (or nothing): checked only when such an entry exists. */
  private defaultRepository(): string {
    if (this.namedRepository !== undefined) return this.namedRepository;
    const base = basename(this.root).toLowerCase();
    if (isValidRepository(base)) return base;
    throw new FerryError('E_NAME_UNSAFE', `${this.root}/index.json: an image is named by its tag alone, so its name is the directory's, but ${JSON.stringify(base.slice(0, 200))} is not a repository name`, {
      hint: 'copy or rename the layout to a directory named like an image (lowercase letters, digits, ".", "_" or "-"), e.g. mv ./My\\ Images ./app',
      details: { file: `${this.root}/index.json` },
    });
  }

  private async entries(): Promise<Array<SourceImage & { mediaType: string }>> {
    const manifests = await readIndexFile(this.root);
    if (manifests === undefined) {
      throw new FerryError('E_NOT_FOUND', `${this.root}: no index.json; not an OCI image layout`, { hint: await notALayoutHint(this.root) });
    }
    return manifests.map((d) => {
      const ref = d.annotations?.[REF_NAME];
      if (ref === undefined) return { repository: this.defaultRepository(), digest: d.digest, mediaType: d.mediaType };
      const named = parseLocalReference(ref);
      if (named !== undefined && (named.digest === undefined || named.digest === d.digest)) {
        const img: SourceImage & { mediaType: string } = { repository: named.name, digest: d.digest, mediaType: d.mediaType };
        if (named.tag !== undefined) img.tag = named.tag;
        return img;
      }
      if (isValidTag(ref)) return { repository: this.defaultRepository(), tag: ref, digest: d.digest, mediaType: d.mediaType };
      throw new FerryError('E_NAME_UNSAFE', `${this.root}/index.json: ref name ${JSON.stringify(ref.slice(0, 200))} of ${d.digest} is not [registry/]name:tag, name@digest or a tag`, {
        hint: 'fix or remove that entry of index.json', details: { file: `${this.root}/index.json`, digest: d.digest },
      });
    });
  }

  async listImages(): Promise<SourceImage[]> {
    return (await this.entries()).map(({ mediaType: _m, ...rest }) => rest);
  }

  async getManifest(repository: string, reference: string): Promise<Manifest> {
    validateQualifiedName(repository);
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
    return manifestWithDigest(await readFile(path), undefined, { digest, where: path, hint: 'the layout is corrupted', details: { file: path } });
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

/** What the path named instead of a layout, most likely: an archive file, or skopeo's `oci:DIR:REF`. */
async function notALayoutHint(root: string): Promise<string> {
  const kind = await stat(root).then((st) => (st.isFile() ? 'file' : st.isDirectory() ? 'dir' : 'other'), () => 'none');
  if (kind === 'file') return `${root} is a file (an oci-archive, as podman save --format oci-archive writes?): oci:DIR takes the unpacked directory (mkdir DIR && tar -xf FILE -C DIR)`;
  // skopeo's reference follows the directory's name and may hold colons itself (`oci:./l:app:1.0`).
  for (let colon = root.indexOf(':'); kind === 'none' && colon > 0; colon = root.indexOf(':', colon + 1)) {
    const dir = root.slice(0, colon);
    if ((await readIndexFile(dir).catch(() => undefined)) === undefined) continue;
    return `oci:${dir}:${root.slice(colon + 1)} is skopeo's way to name one image; ferry reads the whole layout: --from oci:${dir}, and names the images to take as arguments or in -f LIST`;
  }
  return 'point at the directory that holds oci-layout and index.json';
}
