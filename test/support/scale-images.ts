// Thousands of tiny images for scale tests of the bundle format (a whole platform's
// mirror in one bundle: 20,000 images, 100,000 blobs). Real OCI manifests and
// configs, layers of a few dozen seeded bytes each (their content is never unpacked
// by a bundle writer or reader; only digests and sizes matter at this scale), a
// shared base layer per namespace so dedup happens, spread over many repositories.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { fetchConfigs, layoutRequest } from '../../src/app/bundle-layout.js';
import { copyImages } from '../../src/copy/engine.js';
import { planCopy } from '../../src/copy/plan.js';
import { BundleDestination } from '../../src/transports/bundle/writer.js';
import { MemorySource, type Placed, requestsOf } from './memory-transports.js';
import { type Layer, makeImage } from './images.js';
import { Rng } from './prng.js';

export interface ScaleOptions {
  images: number;
  /** Layers of each image besides the shared base (default 3). */
  layers?: number;
  /** Repositories the images are spread over (default images / 50, at least 1). */
  repositories?: number;
  seed?: number;
}

function tinyLayer(bytes: Buffer): Layer {
  const digest = `sha256:${createHash('sha256').update(bytes).digest('hex')}`;
  return {
    spec: { seed: 0, size: bytes.length },
    digest,
    size: bytes.length,
    // Not a tar: nothing here unpacks layers. The config still names one diff id per layer.
    diffId: digest,
    uncompressedSize: bytes.length,
    bytes,
    open: () => Readable.from([bytes]),
  };
}

/**
 * `images` images, each an OCI image manifest with its own config, one base layer
 * shared by its namespace (20 namespaces) and `layers` layers of its own: blobs =
 * images × (2 + layers) + 20. Deterministic for a seed.
 */
export function scaleImages(opts: ScaleOptions): Placed[] {
  const rng = new Rng(opts.seed ?? 0x5ca1e);
  const perImage = opts.layers ?? 3;
  const repositories = opts.repositories ?? Math.max(1, Math.floor(opts.images / 50));
  const bases = Array.from({ length: 20 }, (_, i) => tinyLayer(Buffer.from(`base layer ${i} ${rng.u32()}`)));
  const placed: Placed[] = [];
  for (let i = 0; i < opts.images; i++) {
    const ns = i % bases.length;
    const own = Array.from({ length: perImage }, (_, j) => tinyLayer(Buffer.from(`image ${i} layer ${j} ${rng.u32()} ${rng.u32()}`)));
    const artifact = makeImage({ layers: [bases[ns]!, ...own], mediaTypes: 'oci', labels: { n: String(i) } });
    placed.push({ repository: `registry.example.com/ns${ns}/app${i % repositories}`, tag: `v${Math.floor(i / repositories)}`, artifact });
  }
  return placed;
}

/**
 * Writes scaleImages(opts) to `output` with the real bundle writer, the way export
 * drives it: configs first, the layout, every blob at its offset through the engine.
 * Returns the number of images.
 */
export async function writeScaleBundle(output: string, opts: ScaleOptions): Promise<number> {
  const placed = scaleImages(opts);
  const source = new MemorySource(placed);
  const plan = await planCopy(source, requestsOf(placed), { jobs: 16 });
  const dest = new BundleDestination({ toolVersion: '0.0.0-test', output });
  try {
    await fetchConfigs(source, dest.configSink(), plan, () => false, 'export', {});
    dest.layOut(layoutRequest(plan));
    await dest.open({});
    const report = await copyImages(source, dest, plan, { jobs: 16 });
    if (report.failures.length > 0) throw new Error(`${report.failures.length} images failed: ${report.failures[0]!.error.message}`);
    await dest.commit({});
  } finally {
    await dest.close();
  }
  return placed.length;
}
