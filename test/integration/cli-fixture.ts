// Shared set-up for the end-to-end CLI tests: one real registry holding the seeded
// corpus, helpers to run ferry with loopback flags, and an independent bundle reader
// (tar-stream + zstd-napi, nothing from src/) for checking what ferry wrote.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { DecompressStream } from 'zstd-napi';
import { expect } from 'vitest';
import { runFerry, type FerryResult, type FerryRunOptions } from '../support/cli.js';
import { sampleCorpus, type CorpusEntry, type PushedCorpus } from '../support/corpus.js';
import { clientFor } from '../support/http.js';
import { makeImage, makeLayer, Rng, type Image, type Index } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { skopeoInspectDigest, skopeoInspectRaw } from '../support/skopeo.js';
import { MANIFEST_ACCEPT, validateRegistryImage } from '../support/validate.js';
import { startRegistry, type RegistryHandle, type RegistryOptions } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

export interface CliEnv {
  reg: RegistryHandle;
  corpus: PushedCorpus;
  tmp: TempDir;
  /** `--plain-http HOST` for the corpus registry. */
  net: string[];
  /** A fresh directory name under tmp (not created). */
  path(name: string): string;
  stop(): Promise<void>;
}

export async function startCliEnv(seed: number, opts: RegistryOptions = {}): Promise<CliEnv> {
  const tmp = makeTempDir(`ferry-cli-${seed}-`);
  const reg = await startRegistry(opts);
  try {
    const corpus = await sampleCorpus(reg.auth === 'none' ? reg.url : { url: reg.url, username: 'ferry', password: reg.users['ferry']! }, seed);
    let n = 0;
    return {
      reg, corpus, tmp, net: ['--plain-http', reg.host],
      path: (name) => join(tmp.path, `${String(++n).padStart(3, '0')}-${name}`),
      async stop() {
        await reg.stop();
        await tmp.cleanup();
      },
    };
  } catch (e) {
    await reg.stop();
    throw e;
  }
}

/** Runs ferry and fails the test with its stderr unless it exits 0. */
export async function ferryOk(args: string[], opts: FerryRunOptions = {}): Promise<FerryResult> {
  const r = await runFerry(args, opts);
  if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code} (${r.signal ?? ''}):\n${r.stderr}\n${r.stdout}`);
  return r;
}

/** Parses stdout of a `--json` run (the CLI prints exactly one JSON document). */
export function jsonOf<T = Record<string, unknown>>(r: FerryResult): T {
  try {
    return JSON.parse(r.stdout) as T;
  } catch (e) {
    throw new Error(`stdout is not one JSON document: ${(e as Error).message}\n--- stdout:\n${r.stdout}\n--- stderr:\n${r.stderr}`);
  }
}

/**
 * An images.list in the format projects publish: header comments, blank lines,
 * inline comments, CRLF on one line. Each corpus ref once, prefixed with the host.
 */
export function imagesList(corpus: PushedCorpus, order: 'forward' | 'reverse' = 'forward'): string {
  const refs = order === 'forward' ? [...corpus.hostRefs] : [...corpus.hostRefs].reverse();
  const lines = ['# release 2.0 images', '#   generated for the test', ''];
  refs.forEach((r, i) => {
    if (i % 3 === 0) lines.push(`${r}   # inline comment ${i}`);
    else if (i % 3 === 1) lines.push(`  ${r}\r`);
    else lines.push(r, '', '   ');
  });
  lines.push('# end');
  return `${lines.join('\n')}\n`;
}

export async function writeList(path: string, text: string): Promise<string> {
  await writeFile(path, text);
  return path;
}

/** Every digest (blobs ∪ manifests) the corpus entries reference: what a bundle of them must hold. */
export function expectedDigests(corpus: PushedCorpus, entries: CorpusEntry[] = corpus.entries): Map<string, number> {
  const out = new Map<string, number>();
  const addImage = (m: Image) => {
    out.set(m.digest, m.size);
    for (const b of m.blobs) out.set(b.digest, b.size);
  };
  for (const e of entries) {
    const a = e.artifact;
    if (a.kind === 'index') {
      out.set(a.digest, a.size);
      a.manifests.forEach(addImage);
    } else addImage(a);
  }
  return out;
}

export function entry(corpus: PushedCorpus, repo: string, tagged = true): CorpusEntry {
  const e = corpus.entries.find((x) => x.repo === repo && (x.tags.length > 0) === tagged);
  if (!e) throw new Error(`corpus has no ${tagged ? 'tagged' : 'digest-only'} entry in ${repo}`);
  return e;
}

export function childFor(index: Index, architecture: string): Image {
  const c = index.manifests.find((m) => m.platform.architecture === architecture);
  if (!c) throw new Error(`index ${index.digest} has no ${architecture} child`);
  return c;
}

export interface TarEntryInfo {
  name: string;
  type: string;
  size: number;
  /** `sha256:<hex>` of the entry's content. */
  digest: string;
  body?: Buffer;
}

function isZstd(head: Buffer): boolean {
  return head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528;
}

/** Reads a bundle file entry by entry (decompressing zstd), hashing every entry; keeps bodies of small JSON entries. */
export async function readBundleTar(file: string): Promise<TarEntryInfo[]> {
  const head = Buffer.alloc(4);
  const fh = await import('node:fs/promises').then((m) => m.open(file, 'r'));
  try {
    await fh.read(head, 0, 4, 0);
  } finally {
    await fh.close();
  }
  let src: Readable = createReadStream(file);
  if (isZstd(head)) src = src.pipe(new DecompressStream());
  const extract = tar.extract();
  const entries: TarEntryInfo[] = [];
  const done = (async () => {
    for await (const e of extract) {
      const h = createHash('sha256');
      const chunks: Buffer[] = [];
      let size = 0;
      const keep = !e.header.name.startsWith('blobs/') || (e.header.size ?? 0) < 64 * 1024;
      for await (const c of e as AsyncIterable<Buffer>) {
        h.update(c);
        size += c.length;
        if (keep) chunks.push(c);
      }
      entries.push({ name: e.header.name, type: e.header.type ?? 'file', size, digest: `sha256:${h.digest('hex')}`, ...(keep ? { body: Buffer.concat(chunks) } : {}) });
    }
  })();
  await Promise.all([pipeline(src, extract), done]);
  return entries;
}

/** Exact byte offsets of each entry's content in an uncompressed tar (headers are 512-byte blocks, no pax here). */
export async function tarOffsets(file: string): Promise<Map<string, { offset: number; size: number }>> {
  const buf = await readFile(file);
  const out = new Map<string, { offset: number; size: number }>();
  let pos = 0;
  while (pos + 512 <= buf.length) {
    const header = buf.subarray(pos, pos + 512);
    if (header.every((b) => b === 0)) break;
    const name = header.subarray(0, 100).toString('utf8').replace(/\0.*$/s, '');
    const prefix = header.subarray(345, 500).toString('utf8').replace(/\0.*$/s, '');
    const size = parseInt(header.subarray(124, 136).toString('utf8').replace(/\0.*$/s, '').trim() || '0', 8);
    const full = prefix ? `${prefix}/${name}` : name;
    out.set(full, { offset: pos + 512, size });
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Rewrites an uncompressed bundle, dropping the entries `drop` selects (tar-stream pack, independent of src/). */
export async function rewriteTar(input: string, output: string, drop: (name: string) => boolean): Promise<void> {
  const { createWriteStream } = await import('node:fs');
  const extract = tar.extract();
  const pack = tar.pack();
  const out = pipeline(pack, createWriteStream(output));
  const copy = (async () => {
    for await (const e of extract) {
      if (drop(e.header.name)) {
        e.resume();
        continue;
      }
      const entryStream = pack.entry(e.header);
      await pipeline(e, entryStream);
    }
    pack.finalize();
  })();
  await Promise.all([pipeline(createReadStream(input), extract), copy, out]);
}

export function expectNoSecret(r: FerryResult, secret: string): void {
  expect(r.stdout.includes(secret), 'password leaked to stdout').toBe(false);
  expect(r.stderr.includes(secret), 'password leaked to stderr').toBe(false);
}

export interface Expectation {
  repo: string;
  /** Tag or digest. */
  ref: string;
  digest: string;
}

/** What the corpus entries should look like in a registry after a plain import (host dropped). */
export function expectationsOf(corpus: PushedCorpus, entries: CorpusEntry[] = corpus.entries): Expectation[] {
  return entries.flatMap((e) => (e.tags.length > 0 ? e.tags : [e.digest]).map((ref) => ({ repo: e.repo, ref, digest: e.digest })));
}

/** The registry's catalog (every repository), sorted. */
export async function catalog(url: string): Promise<string[]> {
  const res = await clientFor(url).request('GET', '/v2/_catalog?n=1000');
  if (res.status !== 200) throw new Error(`catalog: HTTP ${res.status}`);
  return ((JSON.parse(res.body.toString('utf8')) as { repositories?: string[] }).repositories ?? []).sort();
}

export async function manifestStatus(url: string, repo: string, ref: string): Promise<number> {
  const res = await clientFor(url).request('HEAD', `/v2/${repo}/manifests/${ref}`, { headers: { Accept: MANIFEST_ACCEPT } });
  return res.status;
}

/**
 * Starts the real registry on a storage root ferry wrote and checks every
 * expectation with skopeo (digest) and the deep validator (every blob hashed).
 */
export async function serveAndCheck(storageDir: string, expected: Expectation[], more?: (reg: RegistryHandle) => Promise<void>): Promise<void> {
  const reg = await startRegistry({ storageDir });
  try {
    for (const x of expected) {
      const sep = x.ref.startsWith('sha256:') ? '@' : ':';
      // `skopeo inspect` without --raw also lists tags, which 404s in a repository holding only untagged images.
      const got = sep === '@' ? (await skopeoInspectRaw(`${reg.host}/${x.repo}@${x.ref}`)).digest : await skopeoInspectDigest(`${reg.host}/${x.repo}:${x.ref}`);
      expect(got, `${x.repo}${sep}${x.ref}`).toBe(x.digest);
      const walked = await validateRegistryImage(reg.url, x.repo, x.ref);
      expect(walked.digest).toBe(x.digest);
    }
    await more?.(reg);
  } catch (e) {
    throw new Error(`${(e as Error).message}\n--- registry log:\n${reg.logTail(15)}`, { cause: e });
  } finally {
    await reg.stop();
  }
}

/** Flips one byte in the middle of a blob entry of an uncompressed bundle. */
export async function flipByteInBlob(file: string, digest: string): Promise<void> {
  const at = (await tarOffsets(file)).get(`blobs/sha256/${digest.slice(7)}`);
  if (!at) throw new Error(`${digest} not in ${file}`);
  const { open } = await import('node:fs/promises');
  const fh = await open(file, 'r+');
  try {
    const b = Buffer.alloc(1);
    const pos = at.offset + Math.floor(at.size / 2);
    await fh.read(b, 0, 1, pos);
    b[0] = b[0]! ^ 0x01;
    await fh.write(b, 0, 1, pos);
  } finally {
    await fh.close();
  }
}

/** Pushes an extra single-layer image that is not part of the corpus (an "older release" only a site has). */
export async function pushExtraImage(url: string, repo: string, tag: string, seed: number): Promise<Image> {
  const layer = await makeLayer(new Rng(seed), { size: 50_000, compressible: true });
  const img = makeImage({ layers: [layer], mediaTypes: 'docker', labels: { name: repo } });
  await pushArtifact(url, repo, img, [tag]);
  return img;
}
