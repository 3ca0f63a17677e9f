// RegistrySource against the real CNCF registry: manifests of every kind byte-exact,
// blobs streamed and verified, and the errors a user meets (not found, unknown host).
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDigest } from '../../src/oci/digest.js';
import type { Descriptor } from '../../src/oci/manifest.js';
import { VerifyStream } from '../../src/stream/verify.js';
import { openRegistrySource } from '../../src/transports/registry/open.js';
import type { RegistrySource } from '../../src/transports/registry/source.js';
import { makeImage, makeIndex, makeLayer, makeStreamLayer, Rng, type Blob, type Image, type Index } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { freePort, startRegistry, type RegistryHandle } from '../support/registry.js';
import { rejection } from '../support/rejection.js';

/** Reads a blob through the one verifier and returns its bytes' length; fails on any mismatch. */
async function pullVerified(src: RegistrySource, repo: string, b: Blob): Promise<number> {
  const desc: Descriptor = { mediaType: b.mediaType, digest: parseDigest(b.digest), size: b.size };
  let n = 0;
  await pipeline(
    await src.getBlob(repo, desc),
    new VerifyStream(desc, repo),
    new Writable({
      write(chunk: Buffer, _e, cb) {
        n += chunk.length;
        cb();
      },
    }),
  );
  return n;
}

let reg: RegistryHandle;
let src: RegistrySource;
let ociImage: Image;
let dockerImage: Image;
let ociIndex: Index;
let dockerList: Index;
let pinned: Image;
let big: Image;

beforeAll(async () => {
  reg = await startRegistry();
  const rng = new Rng(0x5eed);
  const base = await makeLayer(rng.fork('base'), { size: 50_000 });
  const top = await makeLayer(rng.fork('top'), { size: 30_000, compressible: false });
  ociImage = makeImage({ layers: [base, top], mediaTypes: 'oci', labels: { n: 'oci' } });
  dockerImage = makeImage({ layers: [base], mediaTypes: 'docker', labels: { n: 'docker' } });
  const arm = makeImage({ layers: [top], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'arm64' } });
  ociIndex = makeIndex([ociImage, arm], 'oci');
  const armDocker = makeImage({ layers: [top], mediaTypes: 'docker', platform: { os: 'linux', architecture: 'arm64' } });
  dockerList = makeIndex([dockerImage, armDocker], 'docker');
  pinned = makeImage({ layers: [top], mediaTypes: 'oci', labels: { n: 'pinned' } });
  big = makeImage({ layers: [await makeStreamLayer({ seed: 77, size: 6_000_000, compressible: false })], mediaTypes: 'oci' });

  await pushArtifact(reg.url, 'test/oci', ociImage, ['v1']);
  await pushArtifact(reg.url, 'test/docker', dockerImage, ['v1']);
  await pushArtifact(reg.url, 'test/index', ociIndex, ['multi']);
  await pushArtifact(reg.url, 'test/list', dockerList, ['multi']);
  await pushArtifact(reg.url, 'test/pinned', pinned, []);
  await pushArtifact(reg.url, 'test/big', big, ['latest']);
  src = openRegistrySource({ registry: reg.host, plainHttp: true });
});

afterAll(async () => {
  await src?.close();
  await reg?.stop();
});

describe('RegistrySource.getManifest', () => {
  it.each([
    ['OCI image manifest', 'test/oci', () => ociImage],
    ['Docker schema2 manifest', 'test/docker', () => dockerImage],
    ['OCI index', 'test/index', () => ociIndex],
    ['Docker manifest list', 'test/list', () => dockerList],
  ])('returns the exact bytes, media type and digest of a %s by tag', async (_kind, repo, artifact) => {
    const want = artifact();
    const tag = repo.endsWith('index') || repo.endsWith('list') ? 'multi' : 'v1';
    const m = await src.getManifest(repo, tag);
    expect(m.bytes.equals(want.bytes)).toBe(true);
    expect(m.mediaType).toBe(want.mediaType);
    expect(m.digest).toBe(want.digest);
  });

  it('fetches index children and digest-only images by digest', async () => {
    for (const child of ociIndex.manifests) {
      const m = await src.getManifest('test/index', child.digest);
      expect(m.digest).toBe(child.digest);
      expect(m.bytes.equals(child.bytes)).toBe(true);
    }
    const m = await src.getManifest('test/pinned', pinned.digest);
    expect(m.bytes.equals(pinned.bytes)).toBe(true);
  });

  it('gives E_NOT_FOUND naming the image for an unknown tag, digest or repository', async () => {
    const tag = await rejection(src.getManifest('test/oci', 'nope'));
    expect(tag.code).toBe('E_NOT_FOUND');
    expect(tag.message).toContain(`${reg.host}/test/oci:nope`);
    expect(tag.message).toContain('MANIFEST_UNKNOWN');

    const digest = await rejection(src.getManifest('test/oci', pinned.digest));
    expect(digest.code).toBe('E_NOT_FOUND');
    expect(digest.message).toContain(`${reg.host}/test/oci@${pinned.digest}`);

    const repo = await rejection(src.getManifest('no/such/repo', 'v1'));
    expect(repo.code).toBe('E_NOT_FOUND');
    expect(repo.message).toContain(`${reg.host}/no/such/repo:v1`);
  });
});

describe('RegistrySource.getBlob', () => {
  it('streams configs and layers that pass verification', async () => {
    for (const b of ociImage.blobs) expect(await pullVerified(src, 'test/oci', b)).toBe(b.size);
  });

  it('streams a 6 MB layer', async () => {
    const layer = big.layers[0]!;
    expect(await pullVerified(src, 'test/big', layer)).toBe(layer.size);
  });

  it('gives E_NOT_FOUND naming blob and repository for a blob the repository lacks', async () => {
    const b = big.layers[0]!;
    const err = await rejection(src.getBlob('test/oci', { mediaType: b.mediaType, digest: parseDigest(b.digest), size: b.size }));
    expect(err.code).toBe('E_NOT_FOUND');
    expect(err.message).toContain(b.digest);
    expect(err.message).toContain(`${reg.host}/test/oci`);
  });
});

describe('connecting', () => {
  it('falls back from https to http for a loopback registry without plainHttp', async () => {
    const s = openRegistrySource({ registry: reg.host });
    try {
      expect((await s.getManifest('test/oci', 'v1')).digest).toBe(ociImage.digest);
    } finally {
      await s.close();
    }
  });

  it('gives E_NETWORK naming the host with a DNS hint for an unknown host', async () => {
    const s = openRegistrySource({ registry: 'registry.invalid:5000' });
    const err = await rejection(s.getManifest('a/b', 'v1'));
    await s.close();
    expect(err.code).toBe('E_NETWORK');
    expect(err.message).toContain('registry.invalid');
    expect(err.hint).toMatch(/DNS/);
  });

  it('gives E_NETWORK "refused" for a port nobody listens on', async () => {
    const s = openRegistrySource({ registry: `127.0.0.1:${await freePort()}`, plainHttp: true });
    const err = await rejection(s.getManifest('a/b', 'v1'));
    await s.close();
    expect(err.code).toBe('E_NETWORK');
    expect(err.message).toMatch(/refused/);
  });

  it('gives E_REGISTRY for an address that serves something other than a registry', async () => {
    const web = createServer((_req, res) => res.writeHead(404).end('<html>not here</html>'));
    await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
    const s = openRegistrySource({ registry: `127.0.0.1:${(web.address() as AddressInfo).port}`, plainHttp: true });
    const err = await rejection(s.getManifest('a/b', 'v1'));
    await s.close();
    web.close();
    expect(err.code).toBe('E_REGISTRY');
    expect(err.message).toContain('GET /v2/');
    expect(err.hint).toMatch(/host and port/);
  });
});
