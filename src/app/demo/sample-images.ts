import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { type Digest, sha256Digest } from '../../oci/digest.js';
import { type Descriptor, manifestFromBytes } from '../../oci/manifest.js';
import { MT } from '../../oci/media-types.js';
import type { ImageDestination } from '../../transports/types.js';

/**
 * The demo's sample images: a shared base layer, a few apps on it in different
 * repositories, and a two-platform index — the shape of a real product
 * release, a few MB in all, generated on the spot (nothing downloaded).
 */

interface Blob {
  desc: Descriptor;
  bytes: Buffer;
}

function seededBytes(seed: string, size: number, text: boolean): Buffer {
  const out = Buffer.alloc(size);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < size; off += block.length) {
    block = createHash('sha256').update(block).digest();
    block.copy(out, off);
  }
  if (text) for (let i = 0; i < size; i++) out[i] = 97 + (out[i]! % 8) + (i % 64 === 63 ? -87 : 0);
  return out;
}

async function layer(seed: string, files: { name: string; size: number; text: boolean }[]): Promise<{ blob: Blob; diffId: Digest }> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const done = new Promise<void>((resolve, reject) => {
    pack.on('data', (c: unknown) => chunks.push(c as Buffer)).on('end', resolve).on('error', reject);
  });
  for (const f of files) pack.entry({ name: f.name, mtime: new Date(0), mode: 0o644, uid: 0, gid: 0 }, seededBytes(`${seed}/${f.name}`, f.size, f.text));
  pack.finalize();
  await done;
  const raw = Buffer.concat(chunks);
  const gz = gzipSync(raw, { level: 6 });
  return { blob: { bytes: gz, desc: { mediaType: MT.ociLayerGzip, digest: sha256Digest(gz), size: gz.length } }, diffId: sha256Digest(raw) };
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value, null, 2));
}

async function image(name: string, base: { blob: Blob; diffId: Digest }, arch: string, sizeKiB: number) {
  const app = await layer(`${name}-${arch}`, [
    { name: `opt/${name}/bin/${name}`, size: sizeKiB * 1024, text: false },
    { name: `opt/${name}/etc/${name}.conf`, size: 16 * 1024, text: true },
  ]);
  const configBytes = json({
    architecture: arch, os: 'linux', created: '2026-01-01T00:00:00Z',
    config: { Cmd: [`/opt/${name}/bin/${name}`] },
    rootfs: { type: 'layers', diff_ids: [base.diffId, app.diffId] },
    history: [{ created_by: 'ferry demo base' }, { created_by: `ferry demo ${name}` }],
  });
  const config: Blob = { bytes: configBytes, desc: { mediaType: MT.ociConfig, digest: sha256Digest(configBytes), size: configBytes.length } };
  const manifestBytes = json({ schemaVersion: 2, mediaType: MT.ociManifest, config: config.desc, layers: [base.blob.desc, app.blob.desc] });
  const manifest = manifestFromBytes(manifestBytes, MT.ociManifest);
  return { blobs: [base.blob, config, app.blob], manifest };
}

/** Pushes the sample set into `destination` and returns the references, ready for an images.list. */
export async function pushSampleImages(destination: ImageDestination, registryHost: string): Promise<string[]> {
  const base = await layer('base-os', [
    { name: 'usr/lib/libbase.so', size: 1536 * 1024, text: false },
    { name: 'etc/os-release', size: 64 * 1024, text: true },
  ]);
  const refs: string[] = [];
  const put = async (repository: string, tag: string, img: Awaited<ReturnType<typeof image>>) => {
    for (const b of img.blobs) {
      if (!(await destination.hasBlob(repository, b.desc))) await destination.putBlob(repository, b.desc, Readable.from([b.bytes]));
    }
    await destination.putManifest(repository, img.manifest);
    await destination.putImage({ repository, tag, manifest: img.manifest });
    refs.push(`${registryHost}/${repository}:${tag}`);
  };
  await put('product/api', '2.0', await image('api', base, 'amd64', 512));
  await put('product/web', '2.0', await image('web', base, 'amd64', 768));
  await put('product/tools/migrate', '2.0', await image('migrate', base, 'amd64', 256));

  // A two-platform agent: both images, then the index over them.
  const amd = await image('agent', base, 'amd64', 384);
  const arm = await image('agent', base, 'arm64', 384);
  for (const img of [amd, arm]) {
    for (const b of img.blobs) if (!(await destination.hasBlob('product/agent', b.desc))) await destination.putBlob('product/agent', b.desc, Readable.from([b.bytes]));
    await destination.putManifest('product/agent', img.manifest);
  }
  const indexBytes = json({
    schemaVersion: 2, mediaType: MT.ociIndex,
    manifests: [
      { mediaType: MT.ociManifest, digest: amd.manifest.digest, size: amd.manifest.bytes.length, platform: { os: 'linux', architecture: 'amd64' } },
      { mediaType: MT.ociManifest, digest: arm.manifest.digest, size: arm.manifest.bytes.length, platform: { os: 'linux', architecture: 'arm64' } },
    ],
  });
  const index = manifestFromBytes(indexBytes, MT.ociIndex);
  await destination.putManifest('product/agent', index);
  await destination.putImage({ repository: 'product/agent', tag: '2.0', manifest: index });
  refs.push(`${registryHost}/product/agent:2.0`);
  return refs;
}
