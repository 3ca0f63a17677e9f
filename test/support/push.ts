// An independent, minimal distribution push client for seeding registries in tests:
// monolithic blob upload (POST then PUT ?digest=), streamed for big layers, and
// manifest PUT with its exact bytes and media type. Does not import from src/.
import type { Readable } from 'node:stream';
import { clientFor, type RegistryClient, type RegistryTarget } from './http.js';
import type { Artifact, Blob, Image, Index } from './images.js';

export type PushTarget = RegistryTarget | RegistryClient | string;

function asClient(t: PushTarget): RegistryClient {
  return typeof t === 'object' && 'request' in t ? t : clientFor(t);
}

function fail(what: string, status: number, body: Buffer): never {
  throw new Error(`${what}: HTTP ${status} ${body.subarray(0, 500).toString('utf8')}`);
}

export interface PushBlobOptions {
  /** Skip the upload when HEAD says the registry already has it (default true). */
  skipExisting?: boolean;
}

/** Uploads one blob in a single PUT. Streams come from blob.open(), so a 1 GiB layer is never in memory. */
export async function pushBlob(target: PushTarget, repo: string, blob: Pick<Blob, 'digest' | 'size' | 'open'> & { bytes?: Buffer }, opts: PushBlobOptions = {}): Promise<void> {
  const c = asClient(target);
  if (opts.skipExisting ?? true) {
    const head = await c.request('HEAD', `/v2/${repo}/blobs/${blob.digest}`, { repo });
    if (head.status === 200) return;
  }
  const start = await c.request('POST', `/v2/${repo}/blobs/uploads/`, { repo, body: Buffer.alloc(0) });
  if (start.status !== 202) fail(`starting upload of ${blob.digest} to ${repo}`, start.status, start.body);
  const location = start.headers.location;
  if (location === undefined) throw new Error(`upload of ${blob.digest} to ${repo}: 202 without Location`);
  const put = new URL(location, c.target.url);
  put.searchParams.set('digest', blob.digest);
  const body: Buffer | Readable = blob.bytes ?? blob.open();
  const res = await c.request('PUT', put.pathname + put.search, {
    repo,
    body,
    contentLength: blob.size,
    headers: { 'Content-Type': 'application/octet-stream' },
  });
  if (res.status !== 201) fail(`uploading ${blob.digest} to ${repo}`, res.status, res.body);
}

/** PUTs a manifest under a tag or digest; returns the digest the registry reports. */
export async function pushManifest(target: PushTarget, repo: string, ref: string, bytes: Buffer, mediaType: string): Promise<string> {
  const c = asClient(target);
  const res = await c.request('PUT', `/v2/${repo}/manifests/${ref}`, { repo, body: bytes, headers: { 'Content-Type': mediaType } });
  if (res.status !== 201) fail(`putting manifest ${ref} in ${repo}`, res.status, res.body);
  const digest = res.headers['docker-content-digest'];
  return typeof digest === 'string' ? digest : '';
}

async function pushImage(c: RegistryClient, repo: string, img: Image): Promise<void> {
  for (const b of img.blobs) await pushBlob(c, repo, b);
  await pushManifest(c, repo, img.digest, img.bytes, img.mediaType);
}

/**
 * Pushes an image or index in the registry's required order — blobs, then child manifests,
 * then the top manifest by digest — and finally each tag.
 */
export async function pushArtifact(target: PushTarget, repo: string, artifact: Artifact, tags: string[] = []): Promise<void> {
  const c = asClient(target);
  if (artifact.kind === 'index') {
    for (const child of artifact.manifests) await pushImage(c, repo, child);
    await pushManifest(c, repo, artifact.digest, artifact.bytes, artifact.mediaType);
  } else {
    await pushImage(c, repo, artifact);
  }
  for (const tag of tags) await pushManifest(c, repo, tag, artifact.bytes, artifact.mediaType);
}

export type { Index, Image };
