import type { Readable } from 'node:stream';
import { FerryError } from '../../errors.js';
import { type Digest, digestStream } from '../../oci/digest.js';
import { type Descriptor, type Manifest, blobsOf, isForeignLayer, parseManifest } from '../../oci/manifest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import { drain } from '../../stream/drain.js';
import type { Owner } from '../../fsys/owner.js';
import { type FileSystemPort } from '../../fsys/port.js';
import { TargetTree } from '../../fsys/target-tree.js';
import { formatBytes } from '../../format.js';
import { readLink, writeLink } from './links.js';
import {
  blobDataPath, blobDir, blobsRoot, layerLinkPath, revisionLinkPath, tagCurrentLinkPath, tagIndexLinkPath,
} from './paths.js';
import { type KeepImage, type PruneReport, pruneLayout } from './prune.js';

export interface StorageLayoutDestinationOptions {
  /** After the run, remove every repository, tag, manifest, link and blob that the run did not write or confirm. */
  prune?: boolean;
  concurrentBlobs?: number;
  /** A remote layout over SFTP; default: this machine's, written through a TargetTree. Prune works on local layouts only. */
  fs?: FileSystemPort;
  /** `--owner` for a local layout (default: the layout root's owner when running as root; fsys/owner.ts). */
  owner?: Owner | undefined;
  /** Things the user should hear about that do not fail the run: damaged files replaced, leftovers removed, prune and a live registry. */
  warn?: (message: string) => void;
}

/** What the layout holds under a digest, found by hashing it (once per run). */
type Held = { state: 'absent' } | { state: 'good'; size: number } | { state: 'damaged'; size: number; actual: Digest };

/**
 * Writes distribution v2.8's filesystem storage layout, so a registry started
 * on the directory serves the images. Data is global and shared; links are per
 * repository. Merging into a layout a live registry populated is the normal
 * case: existing data is reused — after hashing it, since a file of the right
 * size can still hold the wrong bytes; a damaged one is replaced and reported —
 * and `_uploads` is never touched.
 *
 * Durability: a revision link is written only after the data and `_layers`
 * links it relies on are on disk, a tag only after its manifest (TargetTree
 * flushes at those points); commit flushes the rest.
 */
export class StorageLayoutDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  private readonly images: KeepImage[] = [];
  lastPrune: PruneReport | undefined;
  private readonly fs: FileSystemPort;
  /** The local tree (confined, durable, owned); undefined for a remote layout. */
  private readonly tree: TargetTree | undefined;
  /**
   * What each digest's data file holds, once known: a good file's size alone (a
   * small integer in the map, no object), else its state. 60,000 digests held as
   * a promise and an object each were ~6 MB; the digest strings are the plan's.
   */
  private readonly known = new Map<Digest, number | Held>();
  /** Digests being hashed now: concurrent askers share one hash. */
  private readonly inspecting = new Map<Digest, Promise<Held>>();
  private readonly warn: (message: string) => void;

  constructor(readonly root: string, private readonly opts: StorageLayoutDestinationOptions = {}) {
    this.tree = opts.fs ? undefined : new TargetTree(root, { owner: opts.owner });
    this.fs = opts.fs ?? this.tree!;
    this.description = `registry storage ${this.tree ? '' : `${this.fs.description}:`}${root}`;
    if (opts.prune && !this.tree) {
      throw new FerryError('E_USAGE', `${this.description}: --prune works on a local layout only`, { hint: 'run the import without --prune, or run ferry on the registry host' });
    }
    this.warn = opts.warn ?? (() => {});
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 16, globalBlobs: false };
  }

  private inspect(digest: Digest): Promise<Held> {
    const known = this.known.get(digest);
    if (known !== undefined) return Promise.resolve(typeof known === 'number' ? { state: 'good', size: known } : known);
    let p = this.inspecting.get(digest);
    if (!p) {
      p = this.inspectNow(digest);
      this.inspecting.set(digest, p);
      // Settled, the answer moves to `known` (or is forgotten on failure, to be asked again).
      p.then((h) => {
        if (this.inspecting.get(digest) === p) this.known.set(digest, h.state === 'good' ? h.size : h);
      }, () => undefined).finally(() => {
        if (this.inspecting.get(digest) === p) this.inspecting.delete(digest);
      });
    }
    return p;
  }

  private async inspectNow(digest: Digest): Promise<Held> {
    const path = blobDataPath(this.root, digest);
    let got: { digest: Digest; size: number } | undefined;
    if (this.tree) got = await this.tree.hashFile(path);
    else if ((await this.fs.fileSize(path)) !== undefined) got = await digestStream(this.fs.createReadStream(path));
    if (!got) return { state: 'absent' };
    return got.digest === digest ? { state: 'good', size: got.size } : { state: 'damaged', size: got.size, actual: got.digest };
  }

  private async hasData(desc: { digest: Digest; size?: number }): Promise<boolean> {
    const h = await this.inspect(desc.digest);
    return h.state === 'good' && (desc.size === undefined || h.size === desc.size);
  }

  /** Records freshly written data as good, and says so when it replaced a damaged file. */
  private async landed(digest: Digest, size: number): Promise<void> {
    const before = await this.inspect(digest).catch(() => undefined);
    this.inspecting.delete(digest);
    this.known.set(digest, size);
    if (before?.state === 'damaged') {
      this.warn(`${blobDataPath(this.root, digest)}: replaced a damaged file (${formatBytes(before.size)} hashing to ${before.actual}) with the verified ${digest}`);
    }
  }

  private async ensureLink(path: string, digest: Digest): Promise<void> {
    if ((await readLink(path, this.fs).catch(() => undefined)) !== digest) await writeLink(path, digest, this.fs);
  }

  /** Everything written so far is on disk before what comes next points at it. */
  private async barrier(): Promise<void> {
    await this.tree?.flush();
  }

  async hasBlob(repository: string, desc: Descriptor): Promise<boolean> {
    validateRepository(repository);
    if (!(await this.hasData(desc))) return false;
    return (await readLink(layerLinkPath(this.root, repository, desc.digest), this.fs).catch(() => undefined)) === desc.digest;
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    validateRepository(repository);
    if (await this.hasData(desc)) {
      await drain(data, { signal: opts.signal });
    } else {
      try {
        await this.fs.streamToFileAtomic(blobDataPath(this.root, desc.digest), data, opts.signal);
      } catch (e) {
        await this.fs.removeEmptyDirs(blobDir(this.root, desc.digest), blobsRoot(this.root));
        throw e;
      }
      await this.landed(desc.digest, desc.size);
    }
    await this.ensureLink(layerLinkPath(this.root, repository, desc.digest), desc.digest);
  }

  /** A local layout takes a verified copy of a range of the bundle file (no stream per blob); a remote one over SFTP does not. */
  copiesFiles(): boolean {
    return this.tree !== undefined;
  }

  async putBlobCopy(repository: string, desc: Descriptor, copy: (fd: number) => Promise<void>): Promise<void> {
    validateRepository(repository);
    if (!this.tree) throw new FerryError('E_INTERNAL', `${this.description}: a verified file copy asked of a remote layout`);
    if (!(await this.hasData(desc))) {
      try {
        await this.tree.fillFileAtomic(blobDataPath(this.root, desc.digest), copy);
      } catch (e) {
        await this.fs.removeEmptyDirs(blobDir(this.root, desc.digest), blobsRoot(this.root));
        throw e;
      }
      await this.landed(desc.digest, desc.size);
    }
    await this.ensureLink(layerLinkPath(this.root, repository, desc.digest), desc.digest);
  }

  async mountBlob(repository: string, desc: Descriptor, _fromRepository: string): Promise<boolean> {
    validateRepository(repository);
    if (!(await this.hasData(desc))) return false;
    await this.ensureLink(layerLinkPath(this.root, repository, desc.digest), desc.digest);
    return true;
  }

  async hasManifest(repository: string, digest: Digest): Promise<boolean> {
    validateRepository(repository);
    if (!(await this.hasData({ digest }))) return false;
    return (await readLink(revisionLinkPath(this.root, repository, digest), this.fs).catch(() => undefined)) === digest;
  }

  async putManifest(repository: string, manifest: Manifest): Promise<void> {
    validateRepository(repository);
    const where = `${repository}@${manifest.digest}`;
    // Read once: a bundle file's manifest is read from the file and checked again at each ask.
    const bytes = manifest.bytes;
    const parsed = parseManifest(bytes, manifest.mediaType, where);
    // The registry serves a manifest only if everything it references is linked in the same repository.
    for (const b of blobsOf(parsed)) {
      // A foreign layer a bundle does not carry: the registry serves the manifest without it, as one it was pushed to does.
      if (isForeignLayer(b) && !(await this.hasData(b))) continue;
      if (!(await this.hasData(b))) throw missing(where, 'blob', b.digest);
      await this.ensureLink(layerLinkPath(this.root, repository, b.digest), b.digest);
    }
    for (const child of parsed.manifests) {
      if (!(await this.hasManifest(repository, child.digest))) throw missing(where, 'child manifest', child.digest);
    }
    if (!(await this.hasData({ digest: manifest.digest, size: bytes.length }))) {
      await this.fs.writeFileAtomic(blobDataPath(this.root, manifest.digest), bytes);
      await this.landed(manifest.digest, bytes.length);
    }
    await this.barrier();
    await this.ensureLink(revisionLinkPath(this.root, repository, manifest.digest), manifest.digest);
  }

  async putImage(image: ImageRecord): Promise<void> {
    const repository = validateRepository(image.repository);
    if (!(await this.hasManifest(repository, image.manifest.digest))) await this.putManifest(repository, image.manifest);
    if (image.tag !== undefined) {
      const tag = validateTag(image.tag);
      await this.barrier();
      // distribution's tagStore.Tag order: history entry first, then the current pointer.
      await this.ensureLink(tagIndexLinkPath(this.root, repository, tag, image.manifest.digest), image.manifest.digest);
      // A tag already on this digest is left as it is: a rerun writes (and fsyncs) nothing it does not change.
      await this.ensureLink(tagCurrentLinkPath(this.root, repository, tag), image.manifest.digest);
    }
    // Only --prune asks what the run wrote: without it, 20,000 images' records are not kept.
    if (this.opts.prune) {
      const keep: KeepImage = { repository, digest: image.manifest.digest };
      if (image.tag !== undefined) keep.tag = image.tag;
      this.images.push(keep);
    }
  }

  /** Removes everything not reachable from `keep` (see pruneLayout). */
  async prune(keep: KeepImage[]): Promise<PruneReport> {
    await this.barrier();
    this.lastPrune = await pruneLayout(this.root, keep);
    if (this.lastPrune.blobs.length > 0) {
      this.warn(`--prune removed ${this.lastPrune.blobs.length} blobs: a registry already running on ${this.root} keeps answering 200 with an empty body for them until it is restarted (it caches what it has seen); restart it now`);
    }
    return this.lastPrune;
  }

  async commit(): Promise<void> {
    await this.barrier();
    if (this.opts.prune) await this.prune(this.images);
    await this.barrier();
    const removed = this.tree?.removedTemps ?? [];
    if (removed.length > 0) {
      this.warn(`removed ${removed.length} leftovers of interrupted ferry runs (${formatBytes(removed.reduce((n, r) => n + r.bytes, 0))}) from ${this.root}`);
    }
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
