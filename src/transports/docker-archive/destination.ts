import { constants, createReadStream } from 'node:fs';
import { open, rename, rm } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { FerryError } from '../../errors.js';
import { type Digest, digestHex } from '../../oci/digest.js';
import { type Descriptor, type Manifest, type ParsedManifest, parseManifest } from '../../oci/manifest.js';
import type { Platform } from '../../oci/platform.js';
import { validateQualifiedName, validateTag } from '../../oci/reference.js';
import type { Admission, AdmissionRequest, DestinationCapabilities, ImageDestination, ImageRecord, OpOptions } from '../types.js';
import { fileSize, FILE_MODE, naming } from '../../fsys/files.js';
import { drain } from '../../stream/drain.js';
import { mkdirsDurable, streamToFileAtomic, tempPathFor } from '../../fsys/atomic.js';
import { syncDir } from '../../fsys/durable.js';
import { type Owner, targetOwner } from '../../fsys/owner.js';
import { type SweptEntry, sweepStaleTemps } from '../../fsys/stale-temps.js';
import { formatBytes } from '../../format.js';
import { type ArchiveEntry, configName, layerName } from './archive-manifest.js';
import { type ArchiveChoice, chooseArchiveImage } from './loadable.js';

export interface DockerArchiveDestinationOptions {
  /** The instance taken from an index: a docker-archive holds single-platform images only. Default linux/amd64. */
  platform?: Platform;
  concurrentBlobs?: number;
  /** `--owner` of the archive (default: its folder's owner when running as root; fsys/owner.ts). */
  owner?: Owner | undefined;
  /** Things the user should hear about that do not fail the run (leftovers of killed runs removed). */
  warn?: (message: string) => void;
}

interface Chosen {
  config: Descriptor;
  layers: Descriptor[];
  repoTags: string[];
}

/**
 * Writes a `docker save`-style archive for `docker load`, `podman load` and
 * `ctr import`: manifest.json, each config as `<hex>.json`, each layer once as
 * `<hex>.tar` shared between images. Only runnable images go in (loadable.ts:
 * callers leave the rest out before copying; putImage refuses them). The names
 * (`RepoTags`) are full references, registry included, as the loaders then show them. Layers are stored as they came (usually
 * gzip'd): the loaders detect compression, the archive stays as small as the
 * registry copy, and no bytes are rewritten. The archive has no place for a
 * manifest, so the loaded image's manifest digest is the loader's own; config
 * and layer contents (diff IDs) are preserved. Blobs are spooled in a hidden
 * directory beside the file; the tar is streamed at commit to a temp name and renamed.
 */
export class DockerArchiveDestination implements ImageDestination {
  readonly description: string;
  readonly capabilities: DestinationCapabilities;
  readonly platform: Platform;
  private readonly spool: string;
  private readonly manifests = new Map<Digest, Manifest>();
  private readonly images = new Map<Digest, Chosen>();
  private readonly opts: DockerArchiveDestinationOptions;
  private swept: Promise<SweptEntry[]> | undefined;

  constructor(readonly file: string, opts: DockerArchiveDestinationOptions = {}) {
    this.description = `docker archive ${file}`;
    this.capabilities = { concurrentBlobs: opts.concurrentBlobs ?? 16, globalBlobs: true };
    this.platform = opts.platform ?? { os: 'linux', architecture: 'amd64' };
    // A temp name (pid and host in it): a killed run's spool, as large as the archive, is removed by the next run.
    this.spool = tempPathFor(resolve(file));
    this.opts = opts;
  }

  private spoolPath(d: Digest): string {
    return join(this.spool, digestHex(d));
  }

  /** Before this run's first byte lands beside the archive: its folder exists (durably), and what killed runs left there goes. */
  private sweep(): Promise<SweptEntry[]> {
    this.swept ??= (async () => {
      await mkdirsDurable(dirname(resolve(this.file)));
      return sweepStaleTemps(dirname(resolve(this.file)));
    })();
    return this.swept;
  }

  async hasBlob(_repository: string, desc: Descriptor): Promise<boolean> {
    await this.sweep();
    return (await fileSize(this.spoolPath(desc.digest))) === desc.size;
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    if (await this.hasBlob(repository, desc)) return drain(data, { signal: opts.signal });
    // The spool is scratch (removed at the end); the archive made from it is what gets fsynced.
    try {
      await streamToFileAtomic(this.spoolPath(desc.digest), data, opts.signal, { scratch: true });
    } catch (e) {
      // The user knows the archive, not its spool.
      throw naming(e, this.file);
    }
  }

  async hasManifest(_repository: string, digest: Digest): Promise<boolean> {
    return this.manifests.has(digest);
  }

  async putManifest(repository: string, manifest: Manifest): Promise<void> {
    parseManifest(manifest.bytes, manifest.mediaType, `${repository}@${manifest.digest}`);
    this.manifests.set(manifest.digest, manifest);
  }

  /**
   * What this archive would take for an image (`top` and its parsed manifests, children
   * included): the manifest it loads, or why it is left out. Throws E_NOT_FOUND for an
   * index of images without this archive's platform.
   */
  choose(top: Digest, parsed: ReadonlyMap<Digest, ParsedManifest>, where: string): ArchiveChoice {
    return chooseArchiveImage(top, parsed, this.platform, where);
  }

  admit(image: AdmissionRequest): Admission {
    const choice = this.choose(image.top, image.parsed, image.origin);
    if (!choice.load) return { admit: false, reason: `${choice.reason}: a docker archive holds runnable images only` };
    const lacking = choice.image.layers.find((l) => image.absent?.has(l.digest));
    if (lacking) return { admit: false, reason: `its foreign (non-distributable) layer ${lacking.digest} is not in the bundle, and a docker archive must hold every layer: export with --include-foreign` };
    return choice.image.zstd ? { admit: true, warning: 'its layers are zstd-compressed; docker before 23.0 cannot load them (podman and containerd can)' } : { admit: true };
  }

  async putImage(image: ImageRecord): Promise<void> {
    const name = validateQualifiedName(image.repository);
    const where = `${name}${image.tag !== undefined ? `:${image.tag}` : `@${image.manifest.digest}`}`;
    const parsed = new Map<Digest, ParsedManifest>();
    const top = parseManifest(image.manifest.bytes, image.manifest.mediaType, where);
    parsed.set(image.manifest.digest, top);
    for (const c of top.manifests) {
      const cm = this.manifests.get(c.digest);
      if (!cm) throw missing(where, 'manifest', c.digest);
      parsed.set(c.digest, parseManifest(cm.bytes, cm.mediaType, `${where} child ${c.digest}`));
    }
    const choice = this.choose(image.manifest.digest, parsed, where);
    if (!choice.load) {
      throw new FerryError('E_UNSUPPORTED_MEDIA_TYPE', `${where}: ${choice.reason}; a docker archive holds runnable images only`, {
        hint: 'leave it out of the archive, or import it with --to oci or --to registry-layout', details: { image: where },
      });
    }
    const { manifest, config, layers } = choice.image;
    for (const b of [config, ...layers]) if (!(await this.hasBlob(name, b))) throw missing(where, 'blob', b.digest);
    const chosen = this.images.get(manifest) ?? { config, layers, repoTags: [] };
    if (image.tag !== undefined) {
      const ref = `${name}:${validateTag(image.tag)}`;
      if (!chosen.repoTags.includes(ref)) chosen.repoTags.push(ref);
    }
    this.images.set(manifest, chosen);
  }

  async commit(opts: OpOptions = {}): Promise<void> {
    const entries: ArchiveEntry[] = [];
    const files = new Map<string, Descriptor>();
    for (const img of this.images.values()) {
      files.set(configName(img.config.digest), img.config);
      for (const l of img.layers) files.set(layerName(l.digest), l);
      entries.push({
        Config: configName(img.config.digest),
        RepoTags: img.repoTags.length > 0 ? img.repoTags : null,
        Layers: img.layers.map((l) => layerName(l.digest)),
      });
    }
    await this.sweep();
    const owner = await targetOwner(dirname(resolve(this.file)), this.opts.owner);
    const tmp = tempPathFor(this.file);
    const pack = tar.pack();
    const mtime = new Date(0);
    const feed = (async () => {
      for (const [name, desc] of files) {
        await new Promise<void>((resolve, reject) => {
          const entry = pack.entry({ name, size: desc.size, mode: 0o644, mtime }, (err) => (err ? reject(err) : resolve()));
          pipeline(createReadStream(this.spoolPath(desc.digest)), entry).catch(reject);
        });
      }
      pack.entry({ name: 'manifest.json', mode: 0o644, mtime }, JSON.stringify(entries));
      pack.finalize();
    })();
    feed.catch((e: unknown) => pack.destroy(e as Error));
    try {
      const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
      try {
        await fh.chmod(FILE_MODE);
        if (owner) await fh.chown(owner.uid, owner.gid);
        // On disk before the rename publishes it (`flush`: fsync as the stream closes the handle), the rename on disk before we report success.
        await Promise.all([
          pipeline(pack, fh.createWriteStream({ highWaterMark: 1 << 20, flush: true }), opts.signal ? { signal: opts.signal } : {}),
          feed,
        ]);
      } finally {
        await fh.close();
      }
      await rename(tmp, this.file);
      await syncDir(dirname(resolve(this.file)));
    } catch (e) {
      pack.destroy();
      await rm(tmp, { force: true });
      throw naming(e, this.file);
    }
    await rm(this.spool, { recursive: true, force: true });
    const removed = await this.sweep();
    if (removed.length > 0) {
      this.opts.warn?.(`removed ${removed.length} leftovers of interrupted ferry runs (${formatBytes(removed.reduce((n, r) => n + r.bytes, 0))}) beside ${this.file}`);
    }
  }

  async close(): Promise<void> {
    await rm(this.spool, { recursive: true, force: true });
  }
}

function missing(where: string, what: string, digest: Digest): FerryError {
  return new FerryError('E_BLOB_MISSING', `${where}: ${what} ${digest} has not been written yet`, {
    hint: 'blobs must be written before the manifests that reference them; this is a bug in the caller', details: { digest },
  });
}
