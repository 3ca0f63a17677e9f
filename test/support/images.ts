// Seeded, deterministic generator of real container images: gzip'd tar layers of
// generated files, real image configs, OCI or Docker schema2 manifests, and indexes.
// Independent of src/ on purpose: test data must not depend on the code under test.
import { createHash } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import { fillText, Rng } from './prng.js';

export { Rng } from './prng.js';

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export type MediaTypes = 'oci' | 'docker';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** Everything needed to regenerate a layer's exact bytes. */
export interface LayerSpec {
  seed: number;
  /** Total bytes of file content (the tar is a little larger). */
  size: number;
  /** true: text-like; false: random; 'mixed' (default): half of each. */
  compressible?: boolean | 'mixed';
  /** Number of files to spread the content over (default 1–4, from the seed). */
  files?: number;
  /** gzip level; part of the identity of the bytes. Default 6 (streamed layers: 1, and 0 for random content). */
  gzipLevel?: number;
}

export interface Blob {
  mediaType: string;
  digest: string;
  size: number;
  /** Present for blobs held in memory; big streamed layers have only open(). */
  bytes?: Buffer;
  /** A fresh stream of the exact bytes, every call. */
  open(): Readable;
}

export interface Layer {
  spec: LayerSpec;
  /** Digest/size of the gzip'd bytes (what the registry stores). */
  digest: string;
  size: number;
  /** sha256 of the uncompressed tar: the config's rootfs.diff_ids entry. */
  diffId: string;
  uncompressedSize: number;
  bytes?: Buffer;
  open(): Readable;
}

export interface Image {
  kind: 'manifest';
  mediaType: string;
  /** The manifest's exact bytes. */
  bytes: Buffer;
  digest: string;
  size: number;
  platform: Platform;
  config: Blob & { bytes: Buffer };
  layers: Blob[];
  /** config then layers: what a push must upload before the manifest. */
  blobs: Blob[];
}

export interface Index {
  kind: 'index';
  mediaType: string;
  bytes: Buffer;
  digest: string;
  size: number;
  manifests: Image[];
}

export type Artifact = Image | Index;

const CHUNK = 64 * 1024;
const EPOCH = new Date('2020-01-01T00:00:00Z');

export function sha256(data: Buffer | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

function bufferBlob(mediaType: string, bytes: Buffer): Blob & { bytes: Buffer } {
  return { mediaType, digest: sha256(bytes), size: bytes.length, bytes, open: () => Readable.from([bytes]) };
}

interface FilePlan {
  name: string;
  size: number;
  text: boolean;
}

function planFiles(spec: LayerSpec): { dirs: string[]; files: FilePlan[] } {
  const rng = new Rng(spec.seed).fork('plan');
  const count = Math.max(1, spec.files ?? rng.int(1, 4));
  const base = `ferry-test/${spec.seed.toString(16).padStart(8, '0')}`;
  const dirs = ['ferry-test/', `${base}/`, `${base}/bin/`, `${base}/share/`];
  const files: FilePlan[] = [];
  let left = spec.size;
  for (let i = 0; i < count; i++) {
    const size = i === count - 1 ? left : Math.floor(spec.size / count);
    left -= size;
    const text = spec.compressible === 'mixed' || spec.compressible === undefined ? i % 2 === 0 : spec.compressible;
    files.push({ name: text ? `${base}/share/doc-${i}.txt` : `${base}/bin/blob-${i}.bin`, size, text });
  }
  return { dirs, files };
}

/** The layer's uncompressed tar, generated on the fly in 64 KiB chunks (never whole in memory). */
export function layerTarStream(spec: LayerSpec): Readable {
  const pack = tar.pack();
  const { dirs, files } = planFiles(spec);
  const common = { mtime: EPOCH, uid: 0, gid: 0, uname: 'root', gname: 'root' };
  const entryDone = (header: Partial<tar.Header> & { name: string }, write?: (sink: NodeJS.WritableStream) => Promise<void>): Promise<void> =>
    new Promise<void>((resolve, reject) => {
      const sink = pack.entry(header, (err?: Error | null) => (err ? reject(err) : resolve()));
      if (write) write(sink as unknown as NodeJS.WritableStream).catch(reject);
    });
  (async () => {
    for (const d of dirs) await entryDone({ ...common, name: d, type: 'directory', mode: 0o755 });
    let fileNo = 0;
    for (const f of files) {
      const rng = new Rng(spec.seed).fork(`file-${fileNo++}`);
      await entryDone({ ...common, name: f.name, type: 'file', mode: f.text ? 0o644 : 0o755, size: f.size }, async (sink) => {
        let left = f.size;
        while (left > 0) {
          const n = Math.min(CHUNK, left);
          const chunk = new Uint8Array(n);
          if (f.text) fillText(rng, chunk);
          else rng.fill(chunk);
          left -= n;
          if (!sink.write(chunk)) await new Promise<void>((r) => sink.once('drain', () => r()));
        }
        sink.end();
      });
    }
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  // streamx → node stream, keeping backpressure.
  return Readable.from(pack, { objectMode: false });
}

class HashTap extends Transform {
  private readonly h = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.h.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
  digest(): string {
    return `sha256:${this.h.digest('hex')}`;
  }
}

/** The layer's gzip'd bytes, generated on the fly. */
export function layerStream(spec: LayerSpec): Readable {
  const out = new PassThrough();
  pipeline(layerTarStream(spec), createGzip({ level: spec.gzipLevel ?? 6 }), out).catch((err: unknown) => out.destroy(err as Error));
  return out;
}

/** Generates the layer once, hashing both the tar and the gzip; keeps the bytes only if `keep`. */
async function measure(spec: LayerSpec, keep: boolean): Promise<Omit<Layer, 'spec' | 'open'>> {
  const tarTap = new HashTap();
  const gzTap = new HashTap();
  const chunks: Buffer[] = [];
  await pipeline(layerTarStream(spec), tarTap, createGzip({ level: spec.gzipLevel ?? 6 }), gzTap, async (src: AsyncIterable<Buffer>) => {
    for await (const c of src) if (keep) chunks.push(c);
  });
  const res = { digest: gzTap.digest(), size: gzTap.bytes, diffId: tarTap.digest(), uncompressedSize: tarTap.bytes };
  return keep ? { ...res, bytes: Buffer.concat(chunks) } : res;
}

/** A small layer held in memory. `rng` picks the layer's seed, so successive calls differ. */
export async function makeLayer(rng: Rng, opts: Omit<LayerSpec, 'seed'> & { seed?: number }): Promise<Layer> {
  const spec: LayerSpec = { ...opts, seed: opts.seed ?? rng.u32() };
  const m = await measure(spec, true);
  const bytes = m.bytes!;
  return { ...m, spec, open: () => Readable.from([bytes]) };
}

/**
 * A layer of any size (e.g. 1 GiB) that is never held in memory: generated once here to
 * learn digest and size, and again on every open(). Random content is stored (gzip level 0):
 * deflate cannot shrink it and only costs CPU (a 256 MiB layer: 7.6 s per pass at level 1,
 * 2.5 s stored); the bytes that flow are as many and as incompressible.
 */
export async function makeStreamLayer(spec: LayerSpec): Promise<Layer> {
  const full: LayerSpec = { gzipLevel: spec.compressible === false ? 0 : 1, ...spec };
  const m = await measure(full, false);
  return { ...m, spec: full, open: () => layerStream(full) };
}

function platformOf(p: Platform): Platform {
  return { architecture: p.architecture, os: p.os, ...(p.variant !== undefined ? { variant: p.variant } : {}) };
}

/**
 * Pretty-printed (2-space) JSON on purpose: a consumer that re-serialises a manifest
 * instead of keeping its bytes gets a different digest, and the tests notice.
 */
function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 2) + '\n');
}

export interface ImageOptions {
  layers: Layer[];
  mediaTypes: MediaTypes;
  platform?: Platform;
  /** Goes into the config (labels) so otherwise-equal images can differ. */
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}

export function makeImage(opts: ImageOptions): Image {
  const platform = platformOf(opts.platform ?? { os: 'linux', architecture: 'amd64' });
  const oci = opts.mediaTypes === 'oci';
  const config = {
    architecture: platform.architecture,
    os: platform.os,
    ...(platform.variant !== undefined ? { variant: platform.variant } : {}),
    created: EPOCH.toISOString(),
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      WorkingDir: '/',
      Labels: { 'org.example.generator': 'ferry-test', ...(opts.labels ?? {}) },
    },
    rootfs: { type: 'layers', diff_ids: opts.layers.map((l) => l.diffId) },
    history: opts.layers.map((l, i) => ({
      created: EPOCH.toISOString(),
      created_by: `/bin/sh -c #(nop) ADD ferry-test layer ${i} seed=${l.spec.seed}`,
    })),
  };
  const configBlob = bufferBlob(oci ? MT.ociConfig : MT.dockerConfig, json(config));
  const layerType = oci ? MT.ociLayerGzip : MT.dockerLayerGzip;
  const layers: Blob[] = opts.layers.map((l) => ({
    mediaType: layerType,
    digest: l.digest,
    size: l.size,
    ...(l.bytes !== undefined ? { bytes: l.bytes } : {}),
    open: l.open,
  }));
  const desc = (b: Blob) => ({ mediaType: b.mediaType, digest: b.digest, size: b.size });
  const manifest = {
    schemaVersion: 2,
    mediaType: oci ? MT.ociManifest : MT.dockerManifest,
    config: desc(configBlob),
    layers: layers.map(desc),
    ...(oci && opts.annotations ? { annotations: opts.annotations } : {}),
  };
  const bytes = json(manifest);
  return {
    kind: 'manifest',
    mediaType: manifest.mediaType,
    bytes,
    digest: sha256(bytes),
    size: bytes.length,
    platform,
    config: configBlob,
    layers,
    blobs: [configBlob, ...layers],
  };
}

export function makeIndex(images: Image[], mediaTypes: MediaTypes, annotations?: Record<string, string>): Index {
  const oci = mediaTypes === 'oci';
  const index = {
    schemaVersion: 2,
    mediaType: oci ? MT.ociIndex : MT.dockerList,
    manifests: images.map((m) => ({ mediaType: m.mediaType, digest: m.digest, size: m.size, platform: m.platform })),
    ...(oci && annotations ? { annotations } : {}),
  };
  const bytes = json(index);
  return { kind: 'index', mediaType: index.mediaType, bytes, digest: sha256(bytes), size: bytes.length, manifests: images };
}

/** Every manifest of an artifact, children before the index. */
export function manifestsOf(a: Artifact): Array<Image | Index> {
  return a.kind === 'index' ? [...a.manifests, a] : [a];
}

/** Every blob (configs and layers) of an artifact, deduplicated by digest. */
export function blobsOf(a: Artifact): Blob[] {
  const seen = new Map<string, Blob>();
  for (const m of a.kind === 'index' ? a.manifests : [a]) for (const b of m.blobs) if (!seen.has(b.digest)) seen.set(b.digest, b);
  return [...seen.values()];
}
