// metadataCostFloor is what an export refuses on before it builds its metadata
// (app/bundle-limits.ts): it must never exceed the real cost, or a bundle readers
// would take is refused. Checked against the real serialised metadata at its
// tightest (one-digit sizes, one media type) and for ordinary shapes.
import { describe, expect, it } from 'vitest';
import { type BundleBlob, type BundleImage, buildMetadata, metadataCost, metadataCostFloor, serialiseMetadata } from '../../../src/transports/bundle/metadata.js';
import { sha256Digest } from '../../../src/oci/digest.js';

const MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

function metadata(images: number, layersEach: number, layerSize: (i: number) => number): { blobs: number; bytes: Buffer } {
  const blobs: BundleBlob[] = [];
  const list: BundleImage[] = [];
  for (let i = 0; i < images; i++) {
    const manifest = sha256Digest(`m${i}`);
    blobs.push({ digest: manifest, size: 9, mediaType: MANIFEST, kind: 'manifest' });
    for (let l = 0; l < layersEach; l++) blobs.push({ digest: sha256Digest(`l${i} ${l}`), size: layerSize(l), mediaType: 'application/vnd.oci.image.layer.v1.tar', kind: 'layer' });
    list.push({ origin: `r/a${i}:1`, repository: `r/a${i}`, tag: '1', digest: manifest, mediaType: MANIFEST, platforms: [], size: 9 });
  }
  return { blobs: blobs.length, bytes: serialiseMetadata(buildMetadata({ created: '2024-01-02T03:04:05Z', toolVersion: '1', images: list, blobs })) };
}

describe('metadataCostFloor', () => {
  for (const [what, images, layers, size] of [
    ['one image, 20,000 one-digit layers (the tightest tuples)', 1, 20_000, (l: number) => l % 10],
    ['2,000 images of 5 layers of real sizes', 2_000, 5, (l: number) => 1_000_000 + l],
    ['one image, no layers', 1, 0, () => 0],
  ] as const) {
    it(`is below the real cost: ${what}`, () => {
      const m = metadata(images, layers, size);
      const real = metadataCost(m.bytes);
      const floor = metadataCostFloor(m.blobs);
      expect(floor.bytes).toBeLessThanOrEqual(real.bytes);
      expect(floor.parseBytes).toBeLessThanOrEqual(real.parseBytes);
      // And close enough to matter: at its tightest it is the tuples' own cost.
      if (layers === 20_000) expect(floor.parseBytes / real.parseBytes).toBeGreaterThan(0.95);
    });
  }
});
