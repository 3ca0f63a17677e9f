// The metadata's foreignBlobs (spec/bundle.md §2.2): foreign layers named by a manifest and
// not carried. A reader takes them as absent by design — and nothing else: an ordinary layer
// cannot be declared foreign, a foreign entry must be a foreign-typed layer the manifests name
// with urls, and the bundle id covers the list.
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { type Digest, sha256Digest } from '../../../src/oci/digest.js';
import { buildMetadata, canonicalJson, parseMetadata, serialiseMetadata } from '../../../src/transports/bundle/metadata.js';
import { BundleSource } from '../../../src/transports/bundle/reader.js';
import { makeLayer, Rng, type Image } from '../../support/images.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { writeBundle } from './fixture.js';

const NONDIST = 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip';
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let tmp: TempDir;
beforeAll(() => {
  tmp = makeTempDir('ferry-foreign-unit-');
});
afterAll(async () => tmp.cleanup());

/** An OCI image whose second layer is non-distributable, with or without urls. */
async function imageWithForeign(urls: string[] | undefined): Promise<{ image: Image; foreign: Digest }> {
  const rng = new Rng(urls ? 1 : 2);
  const base = await makeLayer(rng.fork('b'), { size: 500 });
  const other = await makeLayer(rng.fork('f'), { size: 700 });
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'windows', rootfs: { type: 'layers', diff_ids: [base.diffId, other.diffId] } }));
  const blob = (mediaType: string, bytes: Buffer) => ({ mediaType, digest: sha(bytes), size: bytes.length, bytes, open: () => Readable.from([bytes]) });
  const c = blob('application/vnd.oci.image.config.v1+json', config);
  const b = blob('application/vnd.oci.image.layer.v1.tar+gzip', base.bytes!);
  const f = blob(NONDIST, other.bytes!);
  const bytes = Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: c.mediaType, digest: c.digest, size: c.size },
    layers: [{ mediaType: b.mediaType, digest: b.digest, size: b.size }, { mediaType: NONDIST, digest: f.digest, size: f.size, ...(urls ? { urls } : {}) }],
  }));
  const image: Image = { kind: 'manifest', mediaType: 'application/vnd.oci.image.manifest.v1+json', bytes, digest: sha(bytes), size: bytes.length, platform: { os: 'windows', architecture: 'amd64' }, config: c, layers: [b, f], blobs: [c, b, f] };
  return { image, foreign: f.digest as Digest };
}

describe('foreignBlobs', () => {
  it('a bundle written with a foreign layer left out holds the descriptor, not the bytes, and reads back whole without it', async () => {
    const { image, foreign } = await imageWithForeign(['https://example.com/layer']);
    const output = join(tmp.path, 'ok.tar');
    const dest = await writeBundle([{ artifact: image, repository: 'mcr.example/win', tag: '1' }], { output, storeDir: join(tmp.path, 'store-ok'), foreign: new Set([foreign]) });
    const meta = dest.metadata!;
    expect(meta.foreignBlobs).toEqual([{ digest: foreign, size: image.layers[1]!.size, mediaType: NONDIST, kind: 'layer' }]);
    expect(meta.blobs.map((b) => b.digest)).not.toContain(foreign);
    expect(meta.images[0]!.size).toBe(image.size + image.blobs.reduce((n, b) => n + b.size, 0));
    const src = await BundleSource.open(output);
    try {
      const layers: string[] = [];
      for await (const { descriptor, stream } of src.blobs()) {
        layers.push(descriptor.digest);
        stream.resume();
      }
      expect(layers).toEqual([image.layers[0]!.digest]);
    } finally {
      await src.close();
    }
  });

  it('a reader refuses a foreign entry the manifest names as an ordinary layer (no urls)', async () => {
    const { image, foreign } = await imageWithForeign(undefined);
    const output = join(tmp.path, 'no-urls.tar');
    await writeBundle([{ artifact: image, repository: 'mcr.example/win', tag: '1' }], { output, storeDir: join(tmp.path, 'store-bad'), foreign: new Set([foreign]) });
    const err = await BundleSource.open(output).then(async (s) => { await s.close(); return undefined; }, (e: unknown) => e);
    expect(isFerryError(err, 'E_BUNDLE_INVALID'), String(err)).toBe(true);
    expect((err as Error).message).toContain(foreign);
  });

  it('parseMetadata: the bundle id covers the list; only foreign-typed layers, each once, none also stored', () => {
    const d = (s: string) => sha256Digest(s);
    const base = {
      formatVersion: 1 as const, created: '2024-01-02T03:04:05Z', toolVersion: 't',
      images: [{ origin: 'x.io/a:1', repository: 'x.io/a', tag: '1', digest: d('m'), mediaType: 'application/vnd.oci.image.manifest.v1+json', platforms: [], size: 30 }],
      blobs: [{ digest: d('m'), size: 5, mediaType: 'application/vnd.oci.image.manifest.v1+json', kind: 'manifest' as const }],
      foreignBlobs: [{ digest: d('f'), size: 25, mediaType: NONDIST, kind: 'layer' as const }],
    };
    const m = buildMetadata(base);
    expect(parseMetadata(serialiseMetadata(m), 'b.tar')).toEqual(m);
    expect(m.bundleId).not.toBe(buildMetadata({ ...base, foreignBlobs: [] }).bundleId);
    const refuse = (edit: (o: Record<string, unknown> & { foreignBlobs: Record<string, unknown>[]; blobs: unknown[] }) => void, fixId = true) => {
      const o = JSON.parse(serialiseMetadata(m).toString()) as Record<string, unknown> & { foreignBlobs: Record<string, unknown>[]; blobs: unknown[] };
      edit(o);
      if (fixId) o.bundleId = sha256Digest(canonicalJson({ images: o.images, blobs: o.blobs, foreignBlobs: o.foreignBlobs }));
      let e: unknown;
      try { parseMetadata(Buffer.from(JSON.stringify(o)), 'b.tar'); } catch (x) { e = x; }
      expect(isFerryError(e, 'E_BUNDLE_INVALID'), String(e)).toBe(true);
    };
    refuse((o) => { o.foreignBlobs[0]!.size = 26; }, false);
    refuse((o) => { o.foreignBlobs[0]!.mediaType = 'application/vnd.oci.image.layer.v1.tar+gzip'; });
    refuse((o) => { o.foreignBlobs[0]!.kind = 'config'; });
    refuse((o) => { o.foreignBlobs.push({ ...o.foreignBlobs[0]! }); });
    refuse((o) => { o.foreignBlobs[0]!.digest = d('m'); });
  });
});
