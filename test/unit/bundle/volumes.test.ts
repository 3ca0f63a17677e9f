import { describe, expect, it } from 'vitest';
import { sha256Digest } from '../../../src/oci/digest.js';
import { type BundleBlob, buildMetadata, parseMetadata, serialiseMetadata } from '../../../src/transports/bundle/metadata.js';
import { fails } from './fixture.js';
import { parseSidecar, planVolumes, volumeHeadBytes, volumeName, volumeStem } from '../../../src/transports/bundle/volumes.js';

const d = (s: string) => sha256Digest(s);
const OCI = 'application/vnd.oci.image.manifest.v1+json';

function sample(layerSizes: number[]): ReturnType<typeof buildMetadata> {
  const layers: BundleBlob[] = layerSizes.map((size, i) => ({ digest: d(`l${i}`), size, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', kind: 'layer' }));
  return buildMetadata({
    created: '2024-01-02T03:04:05Z', toolVersion: '1', formatVersion: 1,
    images: [{ origin: 'quay.io/a/b:1', repository: 'quay.io/a/b', tag: '1', digest: d('m'), mediaType: OCI, platforms: [], size: 1 }],
    blobs: [{ digest: d('m'), size: 300, mediaType: OCI, kind: 'manifest' }, { digest: d('c'), size: 200, mediaType: 'application/vnd.oci.image.config.v1+json', kind: 'config' }, ...layers],
  });
}

describe('volume names', () => {
  it('names volumes STEM.NNN.tar[.zst], wider when there are more than 1000', () => {
    expect(volumeStem('/x/release.tar.zst')).toBe('/x/release');
    expect(volumeStem('/x/release.tar')).toBe('/x/release');
    expect(volumeStem('/x/release')).toBe('/x/release');
    expect(volumeName('/x/r', 2, 7, false)).toBe('/x/r.002.tar');
    expect(volumeName('/x/r', 2, 7, true)).toBe('/x/r.002.tar.zst');
    expect(volumeName('r', 12, 1001, false)).toBe('r.0012.tar');
  });

  it('cuts layers in stored order at the cap; head in every volume; a layer that fits a volume is never cut', () => {
    const meta = sample([3000, 3000, 3000, 100]);
    const stored = meta.blobs;
    const fixedOf = (): number => {
      try {
        planVolumes(meta, stored, 400, 1, 'b');
      } catch (e) {
        return (e as { details: { headBytes: number } }).details.headBytes;
      }
      throw new Error('no error');
    };
    const fixed = fixedOf();
    const entry = 512 + 3072;
    const cut = planVolumes(meta, stored, 400, fixed + entry + 1100, 'b');
    expect(cut.map((v) => v.map((p) => p.blob.size))).toEqual([[3000], [3000], [3000, 100]]);
    expect(cut.flat().every((p) => p.part === undefined)).toBe(true);
    expect(planVolumes(meta, stored, 400, fixed + 4 * entry, 'b')).toHaveLength(1);
    // One byte short of a layer's entry: every large layer is cut (the old refusal). Every volume then also
    // carries the record of the whole cut (spec §9.2): its head allows for as many part records as the cut makes.
    const big = sample([30_000, 30_000, 30_000, 100]);
    const bigHead = volumeHeadBytes(big, big.blobs, 400);
    const cap = bigHead + 512 + 30_208 - 1;
    const tight = planVolumes(big, big.blobs, 400, cap, 'b');
    const parts = tight.flat().filter((p) => p.part);
    expect(new Set(parts.map((p) => p.blob.size))).toEqual(new Set([30_000]));
    expect(tight.flat().filter((p) => !p.part).map((p) => p.blob.size)).toEqual([100]);
    const head = volumeHeadBytes(big, big.blobs, 400, parts.length);
    expect(head).toBeGreaterThan(bigHead);
    for (const v of tight) expect(head + v.reduce((n, p) => n + 512 + Math.ceil((p.part?.size ?? p.blob.size) / 512) * 512, 0)).toBeLessThanOrEqual(cap);
    for (const l of new Set(parts.map((p) => p.blob))) {
      const mine = parts.filter((p) => p.blob === l).map((p) => p.part!);
      expect(mine.reduce((n, p) => n + p.size, 0)).toBe(30_000);
      expect(mine.map((p) => p.index)).toEqual([...mine.keys()]);
    }
    // No layers at all: one volume.
    expect(planVolumes(sample([]), sample([]).blobs, 400, 1 << 20, 'b')).toEqual([[]]);
    fails(() => planVolumes(meta, stored, 400, fixed - 1, 'b'), 'E_USAGE', /too small/);
  });

  it('parses sha256sum lists, refusing names that leave the directory', () => {
    const h = 'a'.repeat(64);
    expect(parseSidecar(`${h}  r.000.tar\n${h} *r.001.tar\n`, '/s/r.sha256')).toEqual([{ sha256: h, path: '/s/r.000.tar' }, { sha256: h, path: '/s/r.001.tar' }]);
    fails(() => parseSidecar(`${h}  ../etc/passwd\n`, '/s/r.sha256'), 'E_BUNDLE_INVALID', /line 1/);
    fails(() => parseSidecar(`${h}  ..\n`, '/s/r.sha256'), 'E_BUNDLE_INVALID', /line 1/);
    fails(() => parseSidecar('xyz  r.000.tar\n', '/s/r.sha256'), 'E_BUNDLE_INVALID', /line 1/);
    fails(() => parseSidecar('\n', '/s/r.sha256'), 'E_BUNDLE_INVALID', /lists no volumes/);
  });
});

describe('the volume section of ferry.json', () => {
  const meta = sample([10, 20, 30]);
  const [m, c, l0, l1, l2] = meta.blobs.map((b) => b.digest);
  const withVolume = (volume: unknown): Buffer => serialiseMetadata({ ...meta, volume } as typeof meta);

  it('round-trips, and leaves the bundle id alone', () => {
    const back = parseMetadata(withVolume({ index: 1, count: 3, bundleId: meta.bundleId, blobs: [m, c, l1] }), 'v');
    expect(back.volume).toEqual({ index: 1, count: 3, bundleId: meta.bundleId, blobs: [m, c, l1] });
    expect(back.bundleId).toBe(meta.bundleId);
  });

  it('refuses what would make a volume lie about its content', () => {
    const base = { index: 0, count: 2, bundleId: meta.bundleId, blobs: [m, c, l0] };
    fails(() => parseMetadata(withVolume({ ...base, index: 2 }), 'v'), 'E_BUNDLE_INVALID', /out of range/);
    fails(() => parseMetadata(withVolume({ ...base, bundleId: d('other') }), 'v'), 'E_BUNDLE_INVALID', /bundleId/);
    fails(() => parseMetadata(withVolume({ ...base, blobs: [m, c, d('stranger')] }), 'v'), 'E_BUNDLE_INVALID', /not a blob of the bundle/);
    fails(() => parseMetadata(withVolume({ ...base, blobs: [m, c, l2, l0] }), 'v'), 'E_BUNDLE_INVALID', /out of stored order/);
    fails(() => parseMetadata(withVolume({ ...base, blobs: [m, c, l0, l0] }), 'v'), 'E_BUNDLE_INVALID', /twice/);
    fails(() => parseMetadata(withVolume({ ...base, blobs: [m, l0] }), 'v'), 'E_BUNDLE_INVALID', /lacks config/);
  });
});
