// Bundle files of generated images, written straight through the real BundleDestination
// (the engine's contract: blobs through VerifyStream, manifests, images last) without a
// registry: thousands of small images in seconds, configs of any size, layers of any
// size never held in memory. For memory ceilings and the read-side benchmarks.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { parseDigest } from '../../src/oci/digest.js';
import { manifestFromBytes } from '../../src/oci/manifest.js';
import { VerifyStream } from '../../src/stream/verify.js';
import { BundleDestination } from '../../src/transports/bundle/writer.js';
import { type Blob, type Image, type Layer, makeImage, makeLayer, makeStreamLayer, Rng } from './images.js';

export interface ManyImagesOptions {
  images: number;
  seed: number;
  /** Base layers every image shares one of (default 5). */
  bases?: number;
  /** Bytes of each image's own layer (default 1024); 0: images have only their base layer. */
  ownLayerBytes?: number;
  /** Bytes added to each image's config (a label): configs of that size (default 0). */
  configPadBytes?: number;
  /** Repositories the images are spread over (default: one per 10 images). */
  repositories?: number;
}

export interface WrittenBundle {
  path: string;
  images: number;
  /** Configs and layers stored. */
  blobs: number;
  /** The bundle file's size. */
  bytes: number;
  /** `repository:tag` of each image, in the order written. */
  refs: string[];
}

/** A layer of random bytes (as incompressible as gzip output): real enough for everything ferry does with layers, and cheap. */
function rawLayer(rng: Rng, size: number): Layer {
  const bytes = rng.bytes(size);
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  return { spec: { seed: rng.seed, size }, digest, size, diffId: digest, uncompressedSize: size, bytes, open: () => Readable.from([bytes]) };
}

async function put(dest: BundleDestination, repository: string, b: Blob): Promise<void> {
  const desc = { digest: parseDigest(b.digest), size: b.size, mediaType: b.mediaType };
  if (await dest.hasBlob(repository, desc)) return;
  await dest.putBlob(repository, desc, b.open().pipe(new VerifyStream(desc)));
}

/**
 * `images` small single-platform images in `repositories` repositories
 * (`gen/rNNN:vNNN`), each on one of `bases` shared base layers with a layer
 * and a config of its own: the shape of a platform's mirror.
 */
export async function writeManyImagesBundle(path: string, storeDir: string, opts: ManyImagesOptions): Promise<WrittenBundle> {
  const rng = new Rng(opts.seed);
  const bases: Layer[] = [];
  for (let i = 0; i < (opts.bases ?? 5); i++) bases.push(await makeLayer(rng.fork(`base-${i}`), { size: 16 * 1024 }));
  const repos = opts.repositories ?? Math.max(1, Math.ceil(opts.images / 10));
  const pad = opts.configPadBytes ? 'x'.repeat(opts.configPadBytes) : undefined;
  const dest = new BundleDestination({ output: path, storeDir, toolVersion: '0.0.0-test', created: new Date('2024-01-01T00:00:00Z'), concurrentBlobs: 16 });
  const refs: string[] = [];
  const records: { repository: string; tag: string; image: Image }[] = [];
  const blobs = new Set<string>();
  for (let i = 0; i < opts.images; i++) {
    const own = rng.fork(`image-${i}`);
    const layers = [bases[i % bases.length]!, ...(opts.ownLayerBytes !== 0 ? [rawLayer(own, opts.ownLayerBytes ?? 1024)] : [])];
    const image = makeImage({ layers, mediaTypes: i % 2 === 0 ? 'oci' : 'docker', labels: { n: String(i), ...(pad ? { pad } : {}) } });
    const repository = `127.0.0.1:5000/gen/r${String(i % repos).padStart(4, '0')}`;
    const tag = `v${Math.floor(i / repos)}`;
    await Promise.all(image.blobs.map((b) => put(dest, repository, b)));
    for (const b of image.blobs) blobs.add(b.digest);
    await dest.putManifest(repository, manifestFromBytes(image.bytes, image.mediaType));
    // Only what the destination needs later: big configs are not kept here.
    records.push({ repository, tag, image: { ...image, config: { ...image.config, bytes: Buffer.alloc(0) }, blobs: [], layers: [] } });
    refs.push(`${repository}:${tag}`);
  }
  for (const { repository, tag, image } of records) {
    await dest.putImage({ repository, tag, manifest: manifestFromBytes(image.bytes, image.mediaType), origin: `${repository}:${tag}` });
  }
  await dest.commit();
  await dest.close();
  const { size } = await import('node:fs/promises').then((fs) => fs.stat(path));
  return { path, images: opts.images, blobs: blobs.size, bytes: size, refs };
}

/**
 * Images with layers of the given sizes (streamed: a layer of any size is
 * never held in memory), `layersPerImage` to an image, in `gen/big`.
 */
export async function writeLayersBundle(path: string, storeDir: string, opts: { seed: number; layerSizes: number[]; layersPerImage?: number }): Promise<WrittenBundle> {
  const per = opts.layersPerImage ?? 1;
  const dest = new BundleDestination({ output: path, storeDir, toolVersion: '0.0.0-test', created: new Date('2024-01-01T00:00:00Z'), concurrentBlobs: 16 });
  const refs: string[] = [];
  let blobs = 0;
  for (let i = 0; i * per < opts.layerSizes.length; i++) {
    const sizes = opts.layerSizes.slice(i * per, (i + 1) * per);
    const layers = await Promise.all(sizes.map((size, k) => makeStreamLayer({ seed: opts.seed + i * 1000 + k, size, compressible: false, files: 1 })));
    const image = makeImage({ layers, mediaTypes: 'oci', labels: { n: String(i) } });
    const repository = '127.0.0.1:5000/gen/big';
    const tag = `v${i}`;
    for (const b of image.blobs) await put(dest, repository, b);
    blobs += image.blobs.length;
    await dest.putManifest(repository, manifestFromBytes(image.bytes, image.mediaType));
    await dest.putImage({ repository, tag, manifest: manifestFromBytes(image.bytes, image.mediaType), origin: `${repository}:${tag}` });
    refs.push(`${repository}:${tag}`);
  }
  await dest.commit();
  await dest.close();
  const { size } = await import('node:fs/promises').then((fs) => fs.stat(path));
  return { path, images: refs.length, blobs, bytes: size, refs };
}
