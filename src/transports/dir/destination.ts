import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, blobsOf, isForeignLayer, parseManifest } from '../../oci/manifest.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import { naming } from '../../fsys/files.js';
import { drain } from '../../stream/drain.js';
import type { Owner } from '../../fsys/owner.js';
import { TargetTree } from '../../fsys/target-tree.js';
import { tempPathFor } from '../../fsys/temp-names.js';
import { formatBytes } from '../../format.js';
import { blobFileName, imageDir, instanceManifestName, KNOWN_VERSIONS, MANIFEST_FILE, VERSION_FILE, VERSION_TEXT } from './paths.js';

export interface SkopeoDirDestinationOptions {
  concurrentBlobs?: number;
  /** `--owner` (default: the tree root's owner when running as root; fsys/owner.ts). */
  owner?: Owner | undefined;
  /** Things the user should hear about that do not fail the run (leftovers of killed runs removed). */
  warn?: (message: string) => void;
}

/**
 * Writes one skopeo `dir:` image per tag under `out`. Blobs are spooled once in
 * a hidden staging directory inside `out` (same file system, so hard links
 * work) and linked into every image directory that needs them at putImage;
 * the staging directory goes at commit. Everything goes through a TargetTree:
 * no write or delete through a link planted in the tree, each file fsynced
 * before its rename, and an image's files on disk before its manifest.json.
 */
export class SkopeoDirDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  readonly staging: string;
  private readonly manifests = new Map<Digest, Manifest>();
  /** Image directories written in this run: two tags must not name the same one. */
  private readonly written = new Set<string>();
  private readonly tree: TargetTree;
  private readonly warn: (message: string) => void;

  constructor(readonly out: string, opts: SkopeoDirDestinationOptions = {}) {
    this.description = `skopeo dir tree ${out}`;
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 16, globalBlobs: true };
    this.tree = new TargetTree(out, { owner: opts.owner });
    // A temp name (pid and host in it): a killed run's staging directory is removed by the next run (stale-temps.ts).
    this.staging = tempPathFor(join(this.tree.root, 'staging'));
    this.warn = opts.warn ?? (() => {});
  }

  private stagedPath(digest: Digest): string {
    return join(this.staging, blobFileName(digest));
  }

  /** Only this run's staging directory is looked at: blobs it holds were verified as they arrived. */
  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    return (await this.tree.fileSize(this.stagedPath(desc.digest))) === desc.size;
  }

  async putBlob(_repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    if (await this.hasBlob(_repository, desc)) return drain(data, { signal: opts.signal });
    // Killed runs' staging directories sit in the tree's root, where no file of ours is written.
    await this.tree.sweepOnce(this.tree.root);
    try {
      await this.tree.streamToFileAtomic(this.stagedPath(desc.digest), data, opts.signal);
    } catch (e) {
      // The user knows the tree, not its staging directory.
      throw naming(e, this.out);
    }
  }

  async hasManifest(_repository: string, digest: Digest): Promise<boolean> {
    return this.manifests.has(digest);
  }

  async putManifest(repository: string, manifest: Manifest): Promise<void> {
    const where = `${repository}@${manifest.digest}`;
    const parsed = parseManifest(manifest.bytes, manifest.mediaType, where);
    for (const b of blobsOf(parsed)) if (!(await this.hasBlob(repository, b)) && !isForeignLayer(b)) throw missing(where, 'blob', b.digest);
    for (const c of parsed.manifests) if (!this.manifests.has(c.digest)) throw missing(where, 'child manifest', c.digest);
    this.manifests.set(manifest.digest, manifest);
  }

  async putImage(image: ImageRecord): Promise<void> {
    const top = image.manifest;
    if (!this.manifests.has(top.digest)) await this.putManifest(image.repository, top);
    const dir = imageDir(this.out, image.repository, image.tag, top.digest);
    if (this.written.has(dir)) {
      throw new FerryError('E_USAGE', `${dir}: two images in this run map to the same directory`, { hint: 'give each image its own tag' });
    }
    await this.prepareImageDir(dir);
    this.written.add(dir);
    // version first, manifest.json last: a directory with manifest.json is complete, and an
    // interrupted one still has its version file so the next run may empty and rewrite it.
    await this.tree.writeFileAtomic(join(dir, VERSION_FILE), VERSION_TEXT);
    const parsed = parseManifest(top.bytes, top.mediaType, `${image.repository}@${top.digest}`);
    const children = parsed.manifests.map((c) => this.manifests.get(c.digest)!);
    const blobs = new Map<Digest, Descriptor>();
    for (const m of [top, ...children]) {
      for (const b of blobsOf(parseManifest(m.bytes, m.mediaType, `${image.repository}@${m.digest}`))) blobs.set(b.digest, b);
    }
    for (const b of blobs.values()) {
      // A foreign layer a bundle does not carry stays out of the directory (skopeo and podman fetch it from its URLs).
      if (isForeignLayer(b) && !(await this.hasBlob(image.repository, b))) continue;
      await this.tree.linkFile(this.stagedPath(b.digest), join(dir, blobFileName(b.digest)));
    }
    for (const c of children) await this.tree.writeFileAtomic(join(dir, instanceManifestName(c.digest)), c.bytes);
    await this.tree.flush();
    await this.tree.writeFileAtomic(join(dir, MANIFEST_FILE), top.bytes);
  }

  async commit(): Promise<void> {
    await this.tree.flush();
    await this.tree.rm(this.staging);
    const removed = this.tree.removedTemps;
    if (removed.length > 0) {
      this.warn(`removed ${removed.length} leftovers of interrupted ferry runs (${formatBytes(removed.reduce((n, r) => n + r.bytes, 0))}) from ${this.out}`);
    }
  }

  async close(): Promise<void> {
    await this.tree.rm(this.staging);
  }

  /** Like skopeo: refuse a non-empty directory without a version file; empty one that has it. */
  private async prepareImageDir(dir: string): Promise<void> {
    const entries = await this.tree.readdir(dir);
    if (entries.length === 0) {
      await this.tree.mkdirs(dir);
      return;
    }
    const version = (await this.tree.readFileHead(join(dir, VERSION_FILE), 128))?.toString('utf8');
    if (version === undefined || !KNOWN_VERSIONS.includes(version)) {
      throw new FerryError('E_USAGE', `${dir}: directory is not empty and is not a skopeo dir image (no valid "version" file); refusing to overwrite it`, {
        hint: 'choose an empty output directory, or remove that directory first', details: { file: dir },
      });
    }
    for (const e of entries) await this.tree.rm(join(dir, e.name));
  }
}

function missing(where: string, what: string, digest: Digest): FerryError {
  return new FerryError('E_BLOB_MISSING', `${where}: ${what} ${digest} has not been written yet`, {
    hint: 'blobs must be written before the manifests that reference them; this is a bug in the caller', details: { digest },
  });
}
