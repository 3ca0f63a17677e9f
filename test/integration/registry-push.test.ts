// RegistryDestination against the real registry, checked by skopeo as the independent peer:
// generated images and indexes pushed into an empty registry read back byte-identical.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseDigest } from '../../src/oci/digest.js';
import { type Descriptor, manifestFromBytes } from '../../src/oci/manifest.js';
import type { RegistryDestination } from '../../src/transports/registry/destination.js';
import { openRegistryDestination } from '../../src/transports/registry/open.js';
import { type Blob, type Image, type Index, makeImage, makeIndex, makeLayer, makeStreamLayer, Rng, sha256 } from '../support/images.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { startProxy } from './registry-proxy.js';

const run = promisify(execFile);

async function skopeoRaw(ref: string): Promise<Buffer> {
  const { stdout } = await run('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${ref}`], { encoding: 'buffer', maxBuffer: 8 << 20 });
  return stdout;
}

async function skopeoDigest(ref: string): Promise<string> {
  const { stdout } = await run('skopeo', ['inspect', '--tls-verify=false', '--format', '{{.Digest}}', `docker://${ref}`]);
  return stdout.trim();
}

async function skopeoTags(repoRef: string): Promise<string[]> {
  const { stdout } = await run('skopeo', ['list-tags', '--tls-verify=false', `docker://${repoRef}`]);
  return (JSON.parse(stdout) as { Tags: string[] }).Tags;
}

const descOf = (b: Blob): Descriptor => ({ mediaType: b.mediaType, digest: parseDigest(b.digest), size: b.size });

/** What the copy engine does, in its order: blobs, child manifests, top manifest, tag. */
async function push(dst: RegistryDestination, repo: string, artifact: Image | Index, tag?: string): Promise<void> {
  const images = artifact.kind === 'index' ? artifact.manifests : [artifact];
  for (const img of images) {
    for (const b of img.blobs) if (!(await dst.hasBlob(repo, descOf(b)))) await dst.putBlob(repo, descOf(b), b.open());
    await dst.putManifest(repo, manifestFromBytes(img.bytes, img.mediaType));
  }
  const top = manifestFromBytes(artifact.bytes, artifact.mediaType);
  if (artifact.kind === 'index') await dst.putManifest(repo, top);
  await dst.putImage({ repository: repo, manifest: top, ...(tag !== undefined ? { tag } : {}) });
}

let reg: RegistryHandle;
let dst: RegistryDestination;
let oci: Image;
let docker: Image;
let index: Index;
let big: Image;

beforeAll(async () => {
  reg = await startRegistry();
  dst = openRegistryDestination({ registry: reg.host, plainHttp: true });
  const rng = new Rng(0xb0b);
  const base = await makeLayer(rng.fork('base'), { size: 80_000 });
  const extra = await makeLayer(rng.fork('extra'), { size: 50_000, compressible: false });
  oci = makeImage({ layers: [base, extra], mediaTypes: 'oci', labels: { n: 'oci' } });
  docker = makeImage({ layers: [base], mediaTypes: 'docker', labels: { n: 'docker' } });
  const arm = makeImage({ layers: [extra], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } });
  index = makeIndex([oci, arm], 'oci');
  big = makeImage({ layers: [await makeStreamLayer({ seed: 99, size: 3_000_000, compressible: false })], mediaTypes: 'oci' });
});

afterAll(async () => {
  await dst?.close();
  await reg?.stop();
});

describe('RegistryDestination', () => {
  it('pushes OCI and Docker images that skopeo reads back with the same digest and bytes', async () => {
    await push(dst, 'push/oci', oci, 'v1');
    await push(dst, 'push/docker', docker, 'v1');
    for (const [repo, img] of [['push/oci', oci], ['push/docker', docker]] as const) {
      expect(await skopeoDigest(`${reg.host}/${repo}:v1`)).toBe(img.digest);
      expect((await skopeoRaw(`${reg.host}/${repo}:v1`)).equals(img.bytes)).toBe(true);
    }
  });

  it('pushes an index with its children', async () => {
    await push(dst, 'push/multi', index, 'multi');
    const raw = await skopeoRaw(`${reg.host}/push/multi:multi`);
    expect(sha256(raw)).toBe(index.digest);
    for (const child of index.manifests) expect((await skopeoRaw(`${reg.host}/push/multi@${child.digest}`)).equals(child.bytes)).toBe(true);
    expect(await dst.hasManifest('push/multi', parseDigest(index.digest))).toBe(true);
    expect(await dst.hasManifest('push/oci', parseDigest(index.digest))).toBe(false);
  });

  it('pushes a digest-only image without creating a tag', async () => {
    await push(dst, 'push/pinned', docker);
    expect((await skopeoRaw(`${reg.host}/push/pinned@${docker.digest}`)).equals(docker.bytes)).toBe(true);
    expect(existsSync(join(reg.storageDir, 'docker/registry/v2/repositories/push/pinned/_manifests/tags'))).toBe(false);
    expect(await skopeoTags(`${reg.host}/push/oci`)).toEqual(['v1']);
  });

  it('mounts a blob from another repository (201) and reports a failed mount (202) as false', async () => {
    const layer = oci.layers[1]!;
    expect(await dst.hasBlob('push/mounted', descOf(layer))).toBe(false);
    expect(await dst.mountBlob('push/mounted', descOf(layer), 'push/oci')).toBe(true);
    expect(await dst.hasBlob('push/mounted', descOf(layer))).toBe(true);
    // push/docker never held this layer, so the registry opens an upload instead of mounting.
    expect(await dst.mountBlob('push/mounted2', descOf(layer), 'push/docker')).toBe(false);
    expect(await dst.hasBlob('push/mounted2', descOf(layer))).toBe(false);
  });

  it('streams a 3 MB layer in one PUT', async () => {
    await push(dst, 'push/big', big, 'latest');
    expect(await skopeoDigest(`${reg.host}/push/big:latest`)).toBe(big.digest);
  });

  it('uploads in PATCH chunks with Content-Range when chunkSize is set', async () => {
    const proxy = await startProxy(reg.url);
    const chunked = openRegistryDestination({ registry: proxy.host, plainHttp: true, chunkSize: 1_000_000 });
    try {
      await push(chunked, 'push/chunked', big, 'latest');
    } finally {
      await chunked.close();
      await proxy.stop();
    }
    const patches = proxy.log.filter((l) => l.method === 'PATCH');
    expect(patches.length).toBeGreaterThanOrEqual(2);
    // Contiguous ranges from 0, each at least chunkSize, the rest left for the closing PUT.
    let next = 0;
    for (const p of patches) {
      const [from, to] = String(p.headers['content-range']).split('-').map(Number) as [number, number];
      expect(from).toBe(next);
      expect(to - from + 1).toBeGreaterThanOrEqual(1_000_000);
      next = to + 1;
    }
    expect(next).toBeLessThan(big.layers[0]!.size);
    expect(await skopeoDigest(`${reg.host}/push/chunked:latest`)).toBe(big.digest);
  });

  it('does not commit a blob whose stream fails, and rethrows the stream error', async () => {
    const layer = big.layers[0]!;
    let sent = 0;
    const broken = layer.open().pipe(
      new Transform({
        transform(chunk: Buffer, _e, cb) {
          sent += chunk.length;
          cb(sent > 1_000_000 ? new Error('source broke') : null, chunk);
        },
      }),
    );
    await expect(dst.putBlob('push/broken', descOf(layer), broken)).rejects.toThrow('source broke');
    expect(await dst.hasBlob('push/broken', descOf(layer))).toBe(false);
  });
});
