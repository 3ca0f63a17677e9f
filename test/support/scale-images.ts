// Thousands of tiny images for scale tests of the bundle format (a whole platform's
// mirror in one bundle: 20,000 images, 100,000 blobs). Real OCI manifests and
// configs, layers of a few dozen seeded bytes each (their content is never unpacked
// by a bundle writer or reader; only digests and sizes matter at this scale), a
// shared base layer per namespace so dedup happens, spread over many repositories.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import type { Placed } from './memory-transports.js';
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
