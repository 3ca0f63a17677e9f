import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { FerryError } from '../../errors.js';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, blobsOf, isForeignLayer, parseManifest } from '../../oci/manifest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import { drain, fileSize } from '../../fsys/files.js';
import { writeFileAtomic, streamToFileAtomic } from '../../fsys/atomic.js';
import { indexFileBytes, readIndexFile } from './index-file.js';
import { blobPath, INDEX_FILE, LAYOUT_FILE, LAYOUT_TEXT, REF_NAME } from './paths.js';

export interface OciLayoutDestinationOptions {
  /**
   * What goes into `org.opencontainers.image.ref.name`: `full` (default) writes
   * `<repository>:<tag>` so several repositories can share one layout; `tag`
   * writes the bare tag, as `skopeo copy … oci:DIR:TAG` does.
   */
  refNames?: 'full' | 'tag';
  concurrentBlobs?: number;
}

/**
 * Writes an OCI image layout. Blobs and manifests go to `blobs/sha256/<hex>`;
 * index.json is rewritten once, at commit, merged with the entries an existing
 * layout already had (an entry with the same ref name is replaced).
 */
export class OciLayoutDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  private readonly entries: Descriptor[] = [];

  constructor(readonly root: string, private readonly opts: OciLayoutDestinationOptions = {}) {
    this.description = `OCI layout ${root}`;
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 4, globalBlobs: true };
  }

  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    return (await fileSize(blobPath(this.root, desc.digest))) === desc.size;
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    if (await this.hasBlob(repository, desc)) return drain(data, opts.signal);
    await streamToFileAtomic(blobPath(this.root, desc.digest), data, opts.signal);
  }

  async hasManifest(_repository: string, digest: Digest): Promise<boolean> {
    return (await fileSize(blobPath(this.root, digest))) !== undefined;
  }

  async putManifest(repository: string, manifest: Manifest): Promise<void> {
    const where = `${repository}@${manifest.digest}`;
    if (sha256Digest(manifest.bytes) !== manifest.digest) {
      throw new FerryError('E_DIGEST_MISMATCH', `${where}: manifest bytes do not hash to their digest`, { hint: 'this is a bug or a damaged source' });
    }
    const parsed = parseManifest(manifest.bytes, manifest.mediaType, where);
    for (const d of [...blobsOf(parsed), ...parsed.manifests]) {
      // A foreign layer a bundle does not carry stays out, as skopeo leaves it out of an oci: layout.
      if ((await fileSize(blobPath(this.root, d.digest))) === undefined && !isForeignLayer(d)) {
        throw new FerryError('E_BLOB_MISSING', `${where}: ${d.digest} has not been written yet`, { hint: 'blobs must be written before the manifests that reference them; this is a bug in the caller' });
      }
    }
    if ((await fileSize(blobPath(this.root, manifest.digest))) !== manifest.bytes.length) {
      await writeFileAtomic(blobPath(this.root, manifest.digest), manifest.bytes);
    }
  }

  async putImage(image: ImageRecord): Promise<void> {
    const repository = validateRepository(image.repository);
    const m = image.manifest;
    if (!(await this.hasManifest(repository, m.digest))) await this.putManifest(repository, m);
    const desc: Descriptor = { mediaType: m.mediaType, digest: m.digest, size: m.bytes.length };
    if (image.tag !== undefined) {
      const tag = validateTag(image.tag);
      desc.annotations = { [REF_NAME]: this.opts.refNames === 'tag' ? tag : `${repository}:${tag}` };
    }
    this.entries.push(desc);
  }

  async commit(): Promise<void> {
    const existing = (await readIndexFile(this.root)) ?? [];
    const refOf = (d: Descriptor) => d.annotations?.[REF_NAME];
    const replaced = new Set(this.entries.map(refOf).filter((r) => r !== undefined));
    const digestsOnly = new Set(this.entries.filter((d) => refOf(d) === undefined).map((d) => d.digest));
    const kept = existing.filter((d) => {
      const r = refOf(d);
      return r !== undefined ? !replaced.has(r) : !digestsOnly.has(d.digest);
    });
    await writeFileAtomic(join(this.root, LAYOUT_FILE), LAYOUT_TEXT);
    await writeFileAtomic(join(this.root, INDEX_FILE), indexFileBytes([...kept, ...this.entries.map(clean)]));
  }

  async close(): Promise<void> {}
}

/** Index entries carry only spec fields, in spec order. */
function clean(d: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.annotations) out.annotations = d.annotations;
  return out;
}
