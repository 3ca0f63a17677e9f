// Shared by the on-disk transport tests: fixtures from the seeded generator, the
// engine's write order, a minimal independent pusher and a skopeo runner.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { Digest } from '../../../src/oci/digest.js';
import { type Descriptor, type Manifest, manifestFromBytes } from '../../../src/oci/manifest.js';
import type { ImageDestination } from '../../../src/transports/types.js';
import {
  type Artifact, blobsOf, makeImage, makeIndex, makeLayer, manifestsOf, Rng, type Image, type Layer,
} from '../../support/images.js';

const run = promisify(execFile);

export interface Placed {
  repository: string;
  tag?: string;
  artifact: Artifact;
}

export interface Fixtures {
  shared: Layer;
  ociIndex: Artifact;
  dockerList: Artifact;
  dockerImage: Image;
  ociImage: Image;
  /** Every image placed: multi-arch OCI and Docker indexes, schema2 + OCI, a nested repo, two tags on one manifest. */
  placed: Placed[];
}

export async function makeFixtures(seed: number): Promise<Fixtures> {
  const rng = new Rng(seed);
  const shared = await makeLayer(rng, { size: 40_000 });
  const img = async (mediaTypes: 'oci' | 'docker', architecture: string, label: string): Promise<Image> =>
    makeImage({
      layers: [shared, await makeLayer(rng, { size: 20_000 + rng.int(0, 5000) })],
      mediaTypes, platform: { os: 'linux', architecture }, labels: { which: label },
    });
  const ociIndex = makeIndex([await img('oci', 'amd64', 'oi-amd64'), await img('oci', 'arm64', 'oi-arm64')], 'oci');
  const dockerList = makeIndex([await img('docker', 'amd64', 'dl-amd64'), await img('docker', 'arm64', 'dl-arm64')], 'docker');
  const dockerImage = await img('docker', 'amd64', 'single-docker');
  const ociImage = await img('oci', 'amd64', 'single-oci');
  const placed: Placed[] = [
    { repository: 'multi/oci', tag: '1.0', artifact: ociIndex },
    { repository: 'multi/docker', tag: 'v2', artifact: dockerList },
    { repository: 'plain', tag: 'latest', artifact: dockerImage },
    { repository: 'plain', tag: 'also-latest', artifact: dockerImage },
    { repository: 'a/b/c', tag: 'oci', artifact: ociImage },
  ];
  return { shared, ociIndex, dockerList, dockerImage, ociImage, placed };
}

export function descOf(b: { mediaType: string; digest: string; size: number }): Descriptor {
  return { mediaType: b.mediaType, digest: b.digest as Digest, size: b.size };
}

export function manifestOf(m: { mediaType: string; bytes: Buffer }): Manifest {
  return manifestFromBytes(m.bytes, m.mediaType);
}

/** What the copy engine does: blobs, then child manifests, then indexes, then putImage; commit at the end. */
export async function writeArtifacts(dest: ImageDestination, placed: Placed[], commit = true): Promise<void> {
  for (const p of placed) {
    for (const b of blobsOf(p.artifact)) {
      if (!(await dest.hasBlob(p.repository, descOf(b)))) await dest.putBlob(p.repository, descOf(b), b.open());
    }
    for (const m of manifestsOf(p.artifact)) await dest.putManifest(p.repository, manifestOf(m));
    await dest.putImage({ repository: p.repository, ...(p.tag !== undefined ? { tag: p.tag } : {}), manifest: manifestOf(p.artifact) });
  }
  if (commit) await dest.commit();
}

export async function sha256OfStream(s: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const c of s) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

export function sha256(b: Buffer | string): string {
  return `sha256:${createHash('sha256').update(b).digest('hex')}`;
}

export async function skopeo(args: string[]): Promise<{ stdout: string; stderr: string }> {
  try {
    return await run('skopeo', ['--insecure-policy', ...args], { maxBuffer: 64 * 1024 * 1024 });
  } catch (e) {
    const err = e as { stderr?: string; message: string };
    throw new Error(`skopeo ${args.join(' ')} failed: ${err.stderr ?? err.message}`);
  }
}

/** The manifest a registry serves, raw (skopeo inspect --raw keeps the bytes). */
export async function servedDigest(host: string, repository: string, ref: string): Promise<string> {
  const sep = ref.startsWith('sha256:') ? '@' : ':';
  const { stdout } = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${host}/${repository}${sep}${ref}`]);
  return sha256(Buffer.from(stdout, 'utf8'));
}

/** A minimal pusher over the distribution API, independent of src/: monolithic blob uploads, then manifests. */
export async function pushArtifact(url: string, p: Placed): Promise<void> {
  const base = `${url}/v2/${p.repository}`;
  for (const b of blobsOf(p.artifact)) {
    const head = await fetch(`${base}/blobs/${b.digest}`, { method: 'HEAD' });
    if (head.status === 200) continue;
    const start = await fetch(`${base}/blobs/uploads/`, { method: 'POST' });
    if (start.status !== 202) throw new Error(`upload start ${start.status}`);
    const loc = new URL(start.headers.get('location')!, url);
    loc.searchParams.set('digest', b.digest);
    const chunks: Buffer[] = [];
    for await (const c of b.open()) chunks.push(c as Buffer);
    const put = await fetch(loc, { method: 'PUT', body: Buffer.concat(chunks), headers: { 'content-type': 'application/octet-stream' } });
    if (put.status !== 201) throw new Error(`blob put ${put.status} ${await put.text()}`);
  }
  for (const m of manifestsOf(p.artifact)) {
    const ref = m === p.artifact && p.tag !== undefined ? p.tag : m.digest;
    const put = await fetch(`${base}/manifests/${ref}`, { method: 'PUT', body: m.bytes, headers: { 'content-type': m.mediaType } });
    if (put.status !== 201) throw new Error(`manifest put ${put.status} ${await put.text()}`);
  }
}
