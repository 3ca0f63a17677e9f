// --convert-oci as a plan transform: Docker schema 2 manifests, lists and config/layer
// descriptors get their OCI media types, children before parents, indexes re-pointed at the
// converted children; layer and config digests do not change; OCI images keep their bytes.
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { convertPlanToOci } from '../../../src/copy/convert-oci.js';
import { type ImageRequest, planCopy } from '../../../src/copy/plan.js';
import type { Digest } from '../../../src/oci/digest.js';
import { type Manifest, manifestFromBytes, parseManifest } from '../../../src/oci/manifest.js';
import type { ImageSource } from '../../../src/transports/types.js';
import { type Artifact, makeImage, makeIndex, makeLayer, manifestsOf, MT, Rng } from '../../support/images.js';

const OCI_LAYER = 'application/vnd.oci.image.layer.v1.tar+gzip';

/** A source holding `images` under repository `r`, tag = the key. */
function sourceOf(images: Record<string, Artifact>): ImageSource {
  const byDigest = new Map<string, Manifest>();
  for (const a of Object.values(images)) for (const m of manifestsOf(a)) byDigest.set(m.digest, manifestFromBytes(m.bytes, m.mediaType));
  return {
    description: 'test source',
    async getManifest(_repo, ref) {
      const m = byDigest.get(ref) ?? byDigest.get(images[ref]!.digest);
      if (!m) throw new Error(`no ${ref}`);
      return m;
    },
    async getBlob() { return Readable.from([]); },
    async close() {},
  };
}

const request = (tag: string): ImageRequest => ({ sourceRepository: 'r', sourceReference: tag, targetRepository: 'r', targetTag: tag, origin: `r:${tag}` });
const doc = (m: Manifest) => JSON.parse(m.bytes.toString('utf8')) as { mediaType: string; config?: { mediaType: string; digest: string; size: number }; layers?: { mediaType: string; digest: string }[]; manifests?: { mediaType: string; digest: string; size: number; platform?: unknown }[] };

describe('convertPlanToOci', () => {
  it('relabels a Docker image and list, re-points the list at converted children, keeps OCI images byte-exact, and reports old → new', async () => {
    const rng = new Rng(0xc0de);
    const shared = await makeLayer(rng.fork('shared'), { size: 3_000 });
    const own = await makeLayer(rng.fork('own'), { size: 2_000 });
    const docker = makeImage({ layers: [shared, own], mediaTypes: 'docker', labels: { n: 'd' } });
    const amd = makeImage({ layers: [shared], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'amd64' } });
    const arm = makeImage({ layers: [own], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    const list = makeIndex([amd, arm], 'docker');
    // An OCI index whose children are Docker manifests (and one shared with the list): new bytes too.
    const mixed = makeIndex([amd], 'oci');
    const oci = makeImage({ layers: [shared], mediaTypes: 'oci', labels: { n: 'o' } });
    const images = { docker, list, mixed, oci };
    const plan = await planCopy(sourceOf(images), Object.keys(images).map(request));
    expect(plan.failures).toEqual([]);

    const { plan: out, conversions } = convertPlanToOci(plan);
    const byTag = (tag: string) => out.images.find((i) => i.request.targetTag === tag)!;
    expect(conversions.map((c) => [c.origin, c.from])).toEqual([['r:docker', docker.digest], ['r:list', list.digest], ['r:mixed', mixed.digest]]);

    // The image: every label OCI, every digest and size of config and layers the same.
    const d = byTag('docker');
    const m = doc(d.top);
    expect(d.top.mediaType).toBe(MT.ociManifest);
    expect(m.mediaType).toBe(MT.ociManifest);
    expect(m.config).toEqual({ mediaType: MT.ociConfig, digest: docker.config.digest, size: docker.config.size });
    expect(m.layers!.map((l) => [l.mediaType, l.digest])).toEqual(docker.layers.map((l) => [OCI_LAYER, l.digest]));
    expect(d.top.digest).not.toBe(docker.digest);
    expect(conversions[0]!.to).toBe(d.top.digest);
    expect(d.sourceDigest).toBe(docker.digest);
    expect(d.blobs.map((b) => [b.digest, b.mediaType])).toEqual([[docker.config.digest, MT.ociConfig], ...docker.layers.map((l) => [l.digest, OCI_LAYER])]);
    expect(d.parsed.get(d.top.digest)).toEqual(parseManifest(d.top.bytes, d.top.mediaType));

    // The list: an OCI index whose entries are the converted children, platforms kept; children first.
    const l = byTag('list');
    const idx = doc(l.top);
    expect(idx.mediaType).toBe(MT.ociIndex);
    const children = l.manifests.slice(0, -1);
    expect(l.manifests.at(-1)!.digest).toBe(l.top.digest);
    expect(idx.manifests!.map((e) => [e.mediaType, e.digest, e.size])).toEqual(children.map((c) => [MT.ociManifest, c.digest, c.bytes.length]));
    expect(idx.manifests!.map((e) => e.platform)).toEqual([amd.platform, arm.platform]);
    for (const c of children) expect(doc(c).mediaType).toBe(MT.ociManifest);

    // The mixed index points at the same converted amd64 child as the list.
    expect(doc(byTag('mixed').top).manifests![0]!.digest).toBe(children[0]!.digest);

    // OCI through and through: the very same bytes, no sourceDigest, not reported.
    const o = byTag('oci');
    expect(o.top.bytes.equals(oci.bytes)).toBe(true);
    expect(o.sourceDigest).toBeUndefined();

    // Deterministic, and a converted plan has nothing left to convert.
    const again = convertPlanToOci(plan);
    expect(again.conversions).toEqual(conversions);
    expect(convertPlanToOci(out).conversions).toEqual([]);
  });

  it('a platform filter\'s source digest is kept as the converted image\'s sourceDigest', async () => {
    const rng = new Rng(7);
    const amd = makeImage({ layers: [await makeLayer(rng, { size: 500 })], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'amd64' } });
    const arm = makeImage({ layers: [await makeLayer(rng, { size: 600 })], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'arm64' } });
    const list = makeIndex([amd, arm], 'docker');
    const plan = await planCopy(sourceOf({ list }), [request('list')], { platforms: [{ os: 'linux', architecture: 'amd64' }] });
    expect(plan.images[0]!.top.digest).toBe(amd.digest);
    const { plan: out, conversions } = convertPlanToOci(plan);
    expect(out.images[0]!.sourceDigest).toBe(list.digest as Digest);
    expect(conversions).toEqual([{ origin: 'r:list', from: amd.digest, to: out.images[0]!.top.digest }]);
  });

  it('warns that signatures and referrers will not match when images were converted', async () => {
    const rng = new Rng(9);
    const img = makeImage({ layers: [await makeLayer(rng, { size: 500 })], mediaTypes: 'docker' });
    const sig = makeImage({ layers: [await makeLayer(rng, { size: 100 })], mediaTypes: 'oci' });
    const plan = await planCopy(sourceOf({ '1': img, [`sha256-${img.digest.slice(7)}.sig`]: sig }), [request('1'), request(`sha256-${img.digest.slice(7)}.sig`)]);
    const warnings: string[] = [];
    convertPlanToOci(plan, { warning: (w) => warnings.push(w) });
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/1 image new digests: the 1 signatures, attestations and referrers/);
    const none: string[] = [];
    convertPlanToOci({ images: plan.images.slice(1), failures: [] }, { warning: (w) => none.push(w) });
    expect(none).toEqual([]);
  });
});
