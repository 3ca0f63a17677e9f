// An in-memory source and a recording destination for driving the REAL copy engine in
// unit tests: images from the seeded generator (test/support/images.ts) go in, and every
// call the engine makes comes out in order, with the engine's contract checked as it
// happens (a manifest only after what it references, an index only after its children,
// a tag only after its whole image, nothing after commit).
import { Readable } from 'node:stream';
import { copyImages, type CopyOptions, type CopyReport } from '../../src/copy/engine.js';
import { type ImageRequest, planCopy } from '../../src/copy/plan.js';
import { FerryError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { type Descriptor, type Manifest, manifestFromBytes, parseManifest } from '../../src/oci/manifest.js';
import type { DestinationCapabilities, ImageDestination, ImageRecord, ImageSource, OpOptions, SequentialBlob, SequentialSource } from '../../src/transports/types.js';
import { type Artifact, type Blob, blobsOf, manifestsOf } from './images.js';

export interface Placed {
  repository: string;
  tag?: string;
  artifact: Artifact;
}

/** A random-access source holding `placed`; `tamper` returns other bytes for a digest (a damaged blob). */
export class MemorySource implements ImageSource {
  readonly description = 'memory source';
  protected readonly held = new Map<string, Blob>();
  private readonly manifests = new Map<string, Manifest>();
  private readonly tags = new Map<string, string>();
  readonly fetched: string[] = [];

  constructor(placed: Placed[], private readonly tamper: (digest: string) => Buffer | undefined = () => undefined) {
    for (const p of placed) {
      for (const b of blobsOf(p.artifact)) this.held.set(b.digest, b);
      for (const m of manifestsOf(p.artifact)) this.manifests.set(`${p.repository}@${m.digest}`, manifestFromBytes(m.bytes, m.mediaType));
      if (p.tag !== undefined) this.tags.set(`${p.repository}:${p.tag}`, p.artifact.digest);
    }
  }

  async getManifest(repository: string, reference: string): Promise<Manifest> {
    const digest = reference.startsWith('sha256:') ? reference : this.tags.get(`${repository}:${reference}`);
    const m = digest === undefined ? undefined : this.manifests.get(`${repository}@${digest}`);
    if (!m) throw new FerryError('E_NOT_FOUND', `${repository}:${reference} not in the memory source`);
    return m;
  }

  async getBlob(_repository: string, desc: Descriptor): Promise<Readable> {
    this.fetched.push(desc.digest);
    const bad = this.tamper(desc.digest);
    if (bad) return Readable.from([bad]);
    const b = this.held.get(desc.digest);
    if (!b) throw new FerryError('E_NOT_FOUND', `blob ${desc.digest} not in the memory source`);
    return b.open();
  }

  async close(): Promise<void> {}
}

/** The same, read front to back like a bundle: configs from memory, layers once through blobs() in `order`. */
export class MemorySequentialSource extends MemorySource implements SequentialSource {
  readonly sequential = true as const;
  readonly omittedBlobs: ReadonlySet<Digest>;
  private started = false;

  constructor(placed: Placed[], private readonly order: string[], omitted: string[] = [], tamper?: (digest: string) => Buffer | undefined) {
    super(placed, tamper);
    this.omittedBlobs = new Set(omitted as Digest[]);
  }

  override async getBlob(repository: string, desc: Descriptor): Promise<Readable> {
    if (this.order.includes(desc.digest)) throw new FerryError('E_INTERNAL', `layer ${desc.digest} asked for at random from a sequential source`);
    return super.getBlob(repository, desc);
  }

  async *blobs(): AsyncGenerator<SequentialBlob> {
    if (this.started) throw new Error('blobs() read twice');
    this.started = true;
    for (const digest of this.order) {
      const b = this.held.get(digest)!;
      yield { descriptor: { digest: digest as Digest, size: b.size, mediaType: b.mediaType }, stream: await super.getBlob('', { digest: digest as Digest, size: b.size, mediaType: b.mediaType }) };
    }
  }
}

export type Call =
  | { op: 'putBlob'; repository: string; digest: string }
  | { op: 'mountBlob'; repository: string; digest: string; from: string }
  | { op: 'putManifest'; repository: string; digest: string }
  | { op: 'putImage'; repository: string; tag?: string; digest: string }
  | { op: 'commit' };

export interface RecordingOptions {
  capabilities?: Partial<DestinationCapabilities>;
  /** Can make a blob held in one repository visible in another. */
  canMount?: boolean;
  /** putBlob fails for these digests (after reading the stream to its end). */
  failBlobs?: string[];
  /** Blobs already there, per repository (`repo@digest`) or everywhere (`digest`). */
  present?: string[];
}

/**
 * Records every call and throws on any breach of the destination contract the
 * engine promises (transports/types.ts): that is what these tests pin.
 */
export class RecordingDestination implements ImageDestination {
  readonly description = 'recording destination';
  readonly capabilities: DestinationCapabilities;
  readonly calls: Call[] = [];
  private readonly blobsIn = new Set<string>();
  private readonly manifestsIn = new Set<string>();
  private committed = false;

  constructor(private readonly opts: RecordingOptions = {}) {
    this.capabilities = { concurrentBlobs: 8, globalBlobs: false, ...opts.capabilities };
    for (const p of opts.present ?? []) this.blobsIn.add(p);
  }

  private has(repository: string, digest: string): boolean {
    return this.blobsIn.has(digest) || this.blobsIn.has(`${repository}@${digest}`) || (this.capabilities.globalBlobs && [...this.blobsIn].some((k) => k.endsWith(`@${digest}`)));
  }

  private live(): void {
    if (this.committed) throw new Error('contract: a call after commit');
  }

  async hasBlob(repository: string, desc: Descriptor): Promise<boolean> {
    return this.has(repository, desc.digest);
  }

  async putBlob(repository: string, desc: Descriptor, data: Readable, opts: OpOptions = {}): Promise<void> {
    this.live();
    let size = 0;
    for await (const chunk of data) {
      opts.signal?.throwIfAborted();
      size += (chunk as Buffer).length;
    }
    if (size !== desc.size) throw new Error(`contract: putBlob got ${size} bytes for ${desc.size}`);
    if (this.opts.failBlobs?.includes(desc.digest)) throw new FerryError('E_IO', `disk refused ${desc.digest}`);
    this.blobsIn.add(`${repository}@${desc.digest}`);
    this.calls.push({ op: 'putBlob', repository, digest: desc.digest });
  }

  async mountBlob(repository: string, desc: Descriptor, from: string): Promise<boolean> {
    if (!this.opts.canMount || !this.has(from, desc.digest)) return false;
    this.live();
    this.blobsIn.add(`${repository}@${desc.digest}`);
    this.calls.push({ op: 'mountBlob', repository, digest: desc.digest, from });
    return true;
  }

  async putManifest(repository: string, manifest: Manifest): Promise<void> {
    this.live();
    const parsed = parseManifest(manifest.bytes, manifest.mediaType, manifest.digest);
    for (const child of parsed.manifests) {
      if (!this.manifestsIn.has(`${repository}@${child.digest}`)) throw new Error(`contract: index ${manifest.digest} before its child ${child.digest} in ${repository}`);
    }
    for (const b of [...(parsed.config ? [parsed.config] : []), ...parsed.layers]) {
      if (!this.has(repository, b.digest)) throw new Error(`contract: manifest ${manifest.digest} before its blob ${b.digest} in ${repository}`);
    }
    this.manifestsIn.add(`${repository}@${manifest.digest}`);
    this.calls.push({ op: 'putManifest', repository, digest: manifest.digest });
  }

  async putImage(image: ImageRecord): Promise<void> {
    this.live();
    if (!this.manifestsIn.has(`${image.repository}@${image.manifest.digest}`)) throw new Error(`contract: tag ${image.repository}:${image.tag} before its manifest`);
    this.calls.push({ op: 'putImage', repository: image.repository, ...(image.tag !== undefined ? { tag: image.tag } : {}), digest: image.manifest.digest });
  }

  async commit(): Promise<void> {
    this.live();
    this.committed = true;
    this.calls.push({ op: 'commit' });
  }

  async close(): Promise<void> {}
}

/** A request per placed image, target = source. */
export function requestsOf(placed: Placed[]): ImageRequest[] {
  return placed.map((p) => ({
    sourceRepository: p.repository, sourceReference: p.tag ?? p.artifact.digest, targetRepository: p.repository,
    ...(p.tag !== undefined ? { targetTag: p.tag } : {}), origin: `${p.repository}${p.tag !== undefined ? `:${p.tag}` : `@${p.artifact.digest}`}`,
  }));
}

/** Plans and copies `placed` from `source` into `destination` with the real engine, then commits when anything landed. */
export async function copyPlaced(source: ImageSource, destination: ImageDestination, placed: Placed[], opts: CopyOptions = {}): Promise<CopyReport> {
  const plan = await planCopy(source, requestsOf(placed), { jobs: opts.jobs ?? 4 });
  const report = await copyImages(source, destination, plan, opts);
  if (report.images.some((i) => i.status === 'done')) await destination.commit(opts.signal ? { signal: opts.signal } : {});
  return report;
}
