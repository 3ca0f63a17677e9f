// Drives BundleDestination the way the copy engine does (blobs through VerifyStream,
// manifests children first, images last), with images from test/support/images.ts.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { Readable } from 'node:stream';
import { expect } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { parseDigest, type Digest } from '../../../src/oci/digest.js';
import { manifestFromBytes } from '../../../src/oci/manifest.js';
import { VerifyStream } from '../../../src/stream/verify.js';
import { BundleDestination, type BundleWriterOptions } from '../../../src/transports/bundle/writer.js';
import { type Artifact, type Blob, blobsOf, type Image, makeImage, makeIndex, makeLayer, manifestsOf, Rng } from '../../support/images.js';

export interface Entry {
  artifact: Artifact;
  /** Full name with registry host. */
  repository: string;
  tag?: string;
}

export interface Corpus {
  entries: Entry[];
  /** Every distinct config and layer blob. */
  blobs: Map<string, Blob>;
}

/**
 * Three images across three registries: an OCI image, a Docker image sharing
 * a layer with it, and a two-platform OCI index whose amd64 child shares a
 * layer too — so dedup, ordering and index handling all get exercised.
 */
export async function smallCorpus(seed: number): Promise<Corpus> {
  const rng = new Rng(seed);
  const shared = await makeLayer(rng, { size: 20_000 });
  const l1 = await makeLayer(rng, { size: 50_000, compressible: false });
  const l2 = await makeLayer(rng, { size: 3_000 });
  const l3 = await makeLayer(rng, { size: 30_000 });
  const l4 = await makeLayer(rng, { size: 10_000 });
  const app = makeImage({ layers: [shared, l1], mediaTypes: 'oci', labels: { n: 'app' } });
  const tool = makeImage({ layers: [shared, l2], mediaTypes: 'docker', labels: { n: 'tool' } });
  const amd = makeImage({ layers: [shared, l3], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'amd64' }, labels: { n: 'web' } });
  const arm = makeImage({ layers: [l4], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, labels: { n: 'web' } });
  const web = makeIndex([amd, arm], 'oci');
  const entries: Entry[] = [
    { artifact: app, repository: '127.0.0.1:5000/team/app', tag: '1.0' },
    { artifact: tool, repository: 'quay.io/tools/tool' },
    { artifact: web, repository: 'docker.io/library/nginx', tag: '1.25' },
  ];
  const blobs = new Map<string, Blob>();
  for (const e of entries) for (const b of blobsOf(e.artifact)) blobs.set(b.digest, b);
  return { entries, blobs };
}

export function originOf(e: Entry): string {
  return e.tag !== undefined ? `${e.repository}:${e.tag}` : `${e.repository}@${e.artifact.digest}`;
}

export interface WriteOptions extends Partial<BundleWriterOptions> {
  output: string;
  storeDir: string;
  /** Put images (and their blobs) in reverse order. */
  reverse?: boolean;
}

/** Writes `entries` into a bundle through BundleDestination; returns the destination after commit. */
export async function writeBundle(entries: Entry[], opts: WriteOptions): Promise<BundleDestination> {
  const dest = new BundleDestination({ toolVersion: '0.0.0-test', ...opts });
  const list = opts.reverse ? [...entries].reverse() : entries;
  for (const e of list) {
    const blobs = blobsOf(e.artifact);
    await Promise.all((opts.reverse ? blobs.reverse() : blobs).map(async (b) => {
      const desc = { digest: parseDigest(b.digest), size: b.size, mediaType: b.mediaType };
      if (await dest.hasBlob(e.repository, desc)) return;
      await dest.putBlob(e.repository, desc, b.open().pipe(new VerifyStream(desc)));
    }));
    for (const m of manifestsOf(e.artifact)) await dest.putManifest(e.repository, manifestFromBytes(m.bytes, m.mediaType));
  }
  for (const e of list) {
    await dest.putImage({
      repository: e.repository,
      ...(e.tag !== undefined ? { tag: e.tag } : {}),
      manifest: manifestFromBytes(e.artifact.bytes, e.artifact.mediaType),
      origin: originOf(e),
    });
  }
  await dest.commit();
  await dest.close();
  return dest;
}

export interface TarEntry {
  header: tar.Header;
  body: Buffer;
}

/** Reads a tar (test-sized) with tar-stream: an implementation independent of ours. */
export async function readTar(bytes: Buffer): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  const ex = tar.extract();
  const done = (async () => {
    for await (const entry of ex) {
      const parts: Buffer[] = [];
      for await (const c of entry) parts.push(c as Buffer);
      out.push({ header: { ...entry.header }, body: Buffer.concat(parts) });
    }
  })();
  await pipeline(Readable.from([bytes]), ex as unknown as NodeJS.WritableStream);
  await done;
  return out;
}

/** Packs entries into a tar with tar-stream (for hand-made hostile bundles). */
export async function writeTar(entries: Array<{ name: string; body?: Buffer; type?: tar.Header['type']; linkname?: string; mode?: number }>): Promise<Buffer> {
  const pack = tar.pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const c of pack) chunks.push(c as Buffer);
  })();
  for (const e of entries) {
    await new Promise<void>((resolve, reject) => {
      const header: Partial<tar.Header> & { name: string } = { name: e.name, type: e.type ?? 'file', mode: e.mode ?? 0o644, mtime: new Date(0) };
      if (e.linkname !== undefined) header.linkname = e.linkname;
      if (e.body) pack.entry({ ...header, size: e.body.length }, e.body, (err) => (err ? reject(err) : resolve()));
      else (pack.entry(header, (err) => (err ? reject(err) : resolve())) as unknown as { end(): void }).end();
    });
  }
  pack.finalize();
  await collected;
  return Buffer.concat(chunks);
}

export async function readBytes(path: string): Promise<Buffer> {
  return readFile(path);
}

export function digestOf(s: string): Digest {
  return parseDigest(s);
}

export function hexPath(dir: string, digest: string): string {
  return join(dir, 'blobs', 'sha256', digest.slice(7));
}

export type { Image };

/** Runs `f` and checks it throws a FerryError with `code` whose message matches `text`. */
export function fails(f: () => unknown, code: string, text: string | RegExp): void {
  try {
    f();
  } catch (e) {
    expect(isFerryError(e) && e.code).toBe(code);
    expect((e as Error).message).toMatch(text);
    return;
  }
  throw new Error('did not throw');
}
