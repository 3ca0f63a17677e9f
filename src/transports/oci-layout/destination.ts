import type { Readable } from 'node:stream';
import { join } from 'node:path';
import { FerryError } from '../../errors.js';
import type { Digest } from '../../oci/digest.js';
import { type Descriptor, type Manifest, blobsOf, isForeignLayer, parseManifest } from '../../oci/manifest.js';
import { validateRepository, validateTag } from '../../oci/reference.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import { drain } from '../../stream/drain.js';
import type { Owner } from '../../fsys/owner.js';
import { TargetTree } from '../../fsys/target-tree.js';
import { formatBytes } from '../../format.js';
import { indexFileBytes, readIndexFile, withIndexLock } from './index-file.js';
import { blobPath, INDEX_FILE, LAYOUT_FILE, LAYOUT_TEXT, REF_NAME } from './paths.js';

export interface OciLayoutDestinationOptions {
  /**
   * What goes into `org.opencontainers.image.ref.name`: `full` (default) writes
   * `<repository>:<tag>` so several repositories can share one layout; `tag`
   * writes the bare tag, as `skopeo copy … oci:DIR:TAG` does.
   */
  refNames?: 'full' | 'tag';
  concurrentBlobs?: number;
  /** `--owner` (default: the layout root's owner when running as root; fsys/owner.ts). */
  owner?: Owner | undefined;
  /** Things the user should hear about that do not fail the run (damaged files replaced, leftovers removed). */
  warn?: (message: string) => void;
}

/** What the layout holds under a digest, found by hashing it (once per run). */
type Held = { state: 'absent' } | { state: 'good'; size: number } | { state: 'damaged'; size: number; actual: Digest };
/** One answer for every digest not there yet (most of them, on a first import). */
const ABSENT: Held = Object.freeze({ state: 'absent' });

/**
 * Writes an OCI image layout. Blobs and manifests go to `blobs/sha256/<hex>`;
 * index.json is rewritten once, at commit, under the layout's index lock,
 * merged with the entries the layout holds at that moment (an entry with the
 * same ref name is replaced). Blobs already there are hashed before they are
 * relied on; a damaged one is replaced and reported. Everything is on disk
 * before index.json points at it.
 */
export class OciLayoutDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  private readonly entries: Descriptor[] = [];
  private readonly tree: TargetTree;
  /**
   * What each digest's file holds, once known: a good file's size alone (a small
   * integer in the map, no object), else its state. 80,000 digests held as a
   * settled promise and an object each were ~12 MB at bundle C (a promise made
   * inside an AsyncLocalStorage context, as in-process test runs are, carries a
   * property array of its own).
   */
  private readonly known = new Map<Digest, number | Held>();
  /** Digests being hashed now: concurrent askers share one hash. */
  private readonly inspecting = new Map<Digest, Promise<Held>>();
  private readonly warn: (message: string) => void;

  constructor(readonly root: string, private readonly opts: OciLayoutDestinationOptions = {}) {
    this.description = `OCI layout ${root}`;
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 16, globalBlobs: true };
    this.tree = new TargetTree(root, { owner: opts.owner });
    this.warn = opts.warn ?? (() => {});
  }

  private inspect(digest: Digest): Promise<Held> {
    const known = this.known.get(digest);
    if (known !== undefined) return Promise.resolve(typeof known === 'number' ? { state: 'good', size: known } : known);
    let p = this.inspecting.get(digest);
    if (!p) {
      p = (async (): Promise<Held> => {
        const got = await this.tree.hashFile(blobPath(this.root, digest));
        if (!got) return ABSENT;
        return got.digest === digest ? { state: 'good', size: got.size } : { state: 'damaged', size: got.size, actual: got.digest };
      })();
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

  private async hasData(desc: { digest: Digest; size?: number }): Promise<boolean> {
    const h = await this.inspect(desc.digest);
    return h.state === 'good' && (desc.size === undefined || h.size === desc.size);
  }

  private async landed(digest: Digest, size: number): Promise<void> {
    const before = await this.inspect(digest).catch(() => undefined);
    this.inspecting.delete(digest);
    this.known.set(digest, size);
    if (before?.state === 'damaged') {
      this.warn(`${blobPath(this.root, digest)}: replaced a damaged file (${formatBytes(before.size)} hashing to ${before.actual}) with the verified ${digest}`);
    }
  }

  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    return this.hasData(desc);
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    if (await this.hasBlob(repository, desc)) return drain(data, { signal: opts.signal });
    await this.tree.streamToFileAtomic(blobPath(this.root, desc.digest), data, opts.signal);
    await this.landed(desc.digest, desc.size);
  }

  /** Blobs that lie whole in the bundle file are copied by a worker, verified on the way (no stream per blob). */
  copiesFiles(): boolean {
    return true;
  }

  async putBlobCopy(repository: string, desc: Descriptor, copy: (fd: number) => Promise<void>): Promise<void> {
    if (await this.hasBlob(repository, desc)) return;
    await this.tree.fillFileAtomic(blobPath(this.root, desc.digest), copy);
    await this.landed(desc.digest, desc.size);
  }

  async hasManifest(_repository: string, digest: Digest): Promise<boolean> {
    return this.hasData({ digest });
  }

  async putManifest(repository: string, manifest: Manifest): Promise<void> {
    const where = `${repository}@${manifest.digest}`;
    // Read once: a bundle file's manifest is read from the file and checked again at each ask.
    const bytes = manifest.bytes;
    const parsed = parseManifest(bytes, manifest.mediaType, where);
    for (const d of [...blobsOf(parsed), ...parsed.manifests]) {
      // A foreign layer a bundle does not carry stays out, as skopeo leaves it out of an oci: layout.
      if (!isForeignLayer(d) && !(await this.hasData(d))) {
        throw new FerryError('E_BLOB_MISSING', `${where}: ${d.digest} has not been written yet`, { hint: 'blobs must be written before the manifests that reference them; this is a bug in the caller' });
      }
    }
    if (!(await this.hasData({ digest: manifest.digest, size: bytes.length }))) {
      await this.tree.writeFileAtomic(blobPath(this.root, manifest.digest), bytes);
      await this.landed(manifest.digest, bytes.length);
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

  async commit(opts: OpOptions = {}): Promise<void> {
    // Blobs and manifests on disk before the index names them.
    await this.tree.mkdirs(this.root);
    await this.tree.flush();
    await withIndexLock(this.root, async () => {
      const existing = (await readIndexFile(this.root, this.tree)) ?? [];
      const refOf = (d: Descriptor) => d.annotations?.[REF_NAME];
      const replaced = new Set(this.entries.map(refOf).filter((r) => r !== undefined));
      const digestsOnly = new Set(this.entries.filter((d) => refOf(d) === undefined).map((d) => d.digest));
      const kept = existing.filter((d) => {
        const r = refOf(d);
        return r !== undefined ? !replaced.has(r) : !digestsOnly.has(d.digest);
      });
      if ((await this.tree.readFileHead(join(this.root, LAYOUT_FILE), 64))?.toString('utf8') !== LAYOUT_TEXT) {
        await this.tree.writeFileAtomic(join(this.root, LAYOUT_FILE), LAYOUT_TEXT);
      }
      await this.tree.writeFileAtomic(join(this.root, INDEX_FILE), indexFileBytes([...kept, ...this.entries.map(clean)]));
      await this.tree.flush();
    }, opts.signal);
    const removed = this.tree.removedTemps;
    if (removed.length > 0) {
      this.warn(`removed ${removed.length} leftovers of interrupted ferry runs (${formatBytes(removed.reduce((n, r) => n + r.bytes, 0))}) from ${this.root}`);
    }
  }

  async close(): Promise<void> {}
}

/** Index entries carry only spec fields, in spec order. */
function clean(d: Descriptor): Descriptor {
  const out: Descriptor = { mediaType: d.mediaType, digest: d.digest, size: d.size };
  if (d.annotations) out.annotations = d.annotations;
  return out;
}
