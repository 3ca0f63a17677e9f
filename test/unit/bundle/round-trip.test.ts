import { readFile, writeFile, stat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { parseDigest, sha256Digest } from '../../../src/oci/digest.js';
import { digestStream, VerifyStream } from '../../../src/stream/verify.js';
import { hasZstdMagic } from '../../../src/stream/zstd.js';
import { BundleSource } from '../../../src/transports/bundle/reader.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Corpus, hexPath, originOf, readTar, smallCorpus, writeBundle } from './fixture.js';

let tmp: TempDir;
let corpus: Corpus;

beforeAll(async () => {
  tmp = makeTempDir('ferry-bundle-rt-');
  corpus = await smallCorpus(0xb0b);
});
afterAll(async () => tmp.cleanup());

let n = 0;
function paths(): { output: string; storeDir: string } {
  n += 1;
  return { output: join(tmp.path, `b${n}.tar`), storeDir: join(tmp.path, `store${n}`) };
}

/** Reads every layer through VerifyStream, as the engine does; returns digest → size. */
async function drain(src: BundleSource): Promise<Map<string, number>> {
  const got = new Map<string, number>();
  for await (const { descriptor, stream } of src.blobs()) {
    let result = { digest: '', size: 0 };
    await pipeline(stream, new VerifyStream(descriptor, src.description), async (verifiedStream: AsyncIterable<Buffer>) => {
      result = await digestStream(Readable.from(verifiedStream));
    });
    const { digest, size } = result;
    expect(got.has(digest)).toBe(false);
    got.set(digest, size);
  }
  return got;
}

describe('bundle writer + reader', () => {
  it('round-trips images from three registries, deduplicating shared layers', async () => {
    const p = paths();
    const dest = await writeBundle(corpus.entries, p);
    const src = await BundleSource.open(p.output);
    try {
      const meta = src.metadata;
      expect(meta.format).toBe('ferry-bundle');
      expect(meta.formatVersion).toBe(2);
      expect(meta.bundleId).toBe(dest.metadata!.bundleId);
      expect(meta.images.map((i) => i.repository)).toEqual(['127.0.0.1:5000/team/app', 'docker.io/library/nginx', 'quay.io/tools/tool']);
      const web = meta.images.find((i) => i.repository === 'docker.io/library/nginx')!;
      expect(web.platforms).toEqual(['linux/amd64', 'linux/arm64/v8']);
      expect(web.tag).toBe('1.25');
      expect(web.origin).toBe('docker.io/library/nginx:1.25');
      const tool = meta.images.find((i) => i.repository === 'quay.io/tools/tool')!;
      expect(tool.tag).toBeUndefined();
      expect(tool.platforms).toEqual(['linux/amd64']);

      // Every distinct blob once: 3 top manifests + 2 index children, 4 configs, 5 layers.
      const kinds = meta.blobs.map((b) => b.kind);
      expect(kinds.filter((k) => k === 'index')).toHaveLength(1);
      expect(kinds.filter((k) => k === 'manifest')).toHaveLength(4);
      expect(kinds.filter((k) => k === 'config')).toHaveLength(4);
      expect(kinds.filter((k) => k === 'layer')).toHaveLength(5);
      expect(kinds).toEqual([...kinds].sort((a, b) => rank(a) - rank(b)));
      expect(meta.totals.storedBytes).toBe(meta.blobs.reduce((s, b) => s + b.size, 0));
      expect(meta.totals.referencedBytes).toBeGreaterThan(meta.totals.storedBytes); // the shared layer is counted per image
      const appImg = corpus.entries[0]!.artifact;
      expect(meta.images[0]!.size).toBe(appImg.size + (appImg.kind === 'manifest' ? appImg.blobs.reduce((s, b) => s + b.size, 0) : 0));
      // created defaults to the newest config time (the generator's epoch).
      expect(meta.created).toBe('2020-01-01T00:00:00Z');

      for (const e of corpus.entries) {
        const m = await src.getManifest(e.repository, e.tag ?? e.artifact.digest);
        expect(m.bytes.equals(e.artifact.bytes)).toBe(true);
        expect(m.digest).toBe(e.artifact.digest);
      }
      const cfg = corpus.entries[0]!.artifact.kind === 'manifest' ? corpus.entries[0]!.artifact.config : undefined;
      const cfgStream = await src.getBlob('127.0.0.1:5000/team/app', { digest: parseDigest(cfg!.digest), size: cfg!.size, mediaType: cfg!.mediaType });
      expect((await digestStream(cfgStream)).digest).toBe(cfg!.digest);
      expect((await src.listImages()).map((i) => i.origin)).toEqual(meta.images.map((i) => i.origin));

      const layers = await drain(src);
      const expected = [...corpus.blobs.values()].filter((b) => !isConfig(b.mediaType));
      expect(new Map(expected.map((b) => [b.digest, b.size]))).toEqual(layers);
    } finally {
      await src.close();
    }
    // The sidecar is the same document as inside.
    const entries = await readTar(await readFile(p.output));
    expect(entries[0]!.header.name).toBe('ferry.json');
    expect((await readFile(`${p.output}.ferry.json`)).equals(entries[0]!.body)).toBe(true);
  });

  it('lays out entries in the documented order with deterministic headers', async () => {
    const p = paths();
    const dest = await writeBundle(corpus.entries, p);
    const meta = dest.metadata!;
    const entries = await readTar(await readFile(p.output));
    expect(entries.map((e) => e.header.name)).toEqual([
      'ferry.json', 'oci-layout', 'index.json', 'blobs/', 'blobs/sha256/',
      ...meta.blobs.map((b) => `blobs/sha256/${b.digest.slice(7)}`),
    ]);
    const mtime = Date.parse(meta.created);
    for (const e of entries) {
      expect(e.header.uid).toBe(0);
      expect(e.header.gid).toBe(0);
      expect(e.header.uname).toBe('');
      expect(e.header.gname).toBe('');
      expect(e.header.mtime.getTime()).toBe(mtime);
      expect(e.header.mode).toBe(e.header.type === 'directory' ? 0o755 : 0o644);
    }
    for (const e of entries.slice(5)) expect(sha256Digest(e.body)).toBe(`sha256:${e.header.name.slice(13)}`);
    expect(entries[1]!.body.toString()).toBe('{"imageLayoutVersion":"1.0.0"}');
    const index = JSON.parse(entries[2]!.body.toString()) as { manifests: Array<{ digest: string; annotations: Record<string, string> }> };
    expect(index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name'])).toEqual(meta.images.map((i) => (i.tag ? `${i.repository}:${i.tag}` : `${i.repository}@${i.digest}`)));
    // Index children are stored before the index.
    const names = entries.map((e) => e.header.name);
    const web = corpus.entries[2]!.artifact;
    if (web.kind !== 'index') throw new Error('fixture changed');
    for (const child of web.manifests) expect(names.indexOf(`blobs/sha256/${child.digest.slice(7)}`)).toBeLessThan(names.indexOf(`blobs/sha256/${web.digest.slice(7)}`));
  });

  it('writes byte-identical bundles for the same images in any order, plain and zstd', async () => {
    for (const compression of ['none', 'zstd'] as const) {
      const a = paths();
      const b = paths();
      const da = await writeBundle(corpus.entries, { ...a, compression });
      const db = await writeBundle(corpus.entries, { ...b, compression, reverse: true });
      const ba = await readFile(a.output);
      const bb = await readFile(b.output);
      expect(ba.equals(bb)).toBe(true);
      expect(da.metadata!.bundleId).toBe(db.metadata!.bundleId);
      expect(hasZstdMagic(ba)).toBe(compression === 'zstd');
    }
  });

  it('reads a zstd bundle from a stream (as from stdin), detecting compression by magic bytes', async () => {
    const p = paths();
    p.output = join(tmp.path, 'no-extension-hint.tar'); // the name says tar; the content is zstd
    await writeBundle(corpus.entries, { ...p, compression: 'zstd', level: 5 });
    const pass = new PassThrough();
    const feeding = pipeline((await import('node:fs')).createReadStream(p.output, { highWaterMark: 7000 }), pass);
    const src = await BundleSource.open(pass, { name: 'stdin' });
    expect(src.compressed).toBe(true);
    const layers = await drain(src);
    expect(layers.size).toBe(5);
    await feeding;
    await src.close();
  });

  it('honours SOURCE_DATE_EPOCH over the content time', async () => {
    const p = paths();
    process.env['SOURCE_DATE_EPOCH'] = '1700000000';
    try {
      const d = await writeBundle(corpus.entries, p);
      expect(d.metadata!.created).toBe('2023-11-14T22:13:20Z');
      const entries = await readTar(await readFile(p.output));
      expect(entries[0]!.header.mtime.getTime()).toBe(1_700_000_000_000);
    } finally {
      delete process.env['SOURCE_DATE_EPOCH'];
    }
  });

  it('writes to a provided stream instead of a file', async () => {
    const p = paths();
    const out = new PassThrough();
    const chunks: Buffer[] = [];
    out.on('data', (c: Buffer) => chunks.push(c));
    await writeBundle(corpus.entries, { ...p, stream: out });
    const file = paths();
    await writeBundle(corpus.entries, file);
    expect(Buffer.concat(chunks).equals(await readFile(file.output))).toBe(true);
    await expect(stat(p.output)).rejects.toThrow();
  });

  it('reuses a cache from an earlier run, and drops a corrupted cache entry instead of bundling it', async () => {
    const first = paths();
    await writeBundle(corpus.entries, first);
    const layer = [...corpus.blobs.values()].find((b) => b.size > 1000 && !isConfig(b.mediaType))!;
    const cached = hexPath(first.storeDir, layer.digest);
    const good = await readFile(cached);
    const bad = Buffer.from(good);
    bad[100] = bad[100]! ^ 0xff;
    await writeFile(cached, bad);
    // Second run on the same store: hasBlob hashes the cached entry, finds it bad, and the blob is fetched again.
    const second = { ...paths(), storeDir: first.storeDir };
    await writeBundle(corpus.entries, second);
    expect((await readFile(cached)).equals(good)).toBe(true);
    expect((await readFile(second.output)).equals(await readFile(first.output))).toBe(true);
  });

  it('re-verifies cached blobs at commit: a cache entry altered after the check fails the bundle, leaving no file', async () => {
    const first = paths();
    await writeBundle(corpus.entries, first);
    const layer = [...corpus.blobs.values()].find((b) => b.size > 1000 && !isConfig(b.mediaType))!;
    const cached = hexPath(first.storeDir, layer.digest);
    const { BundleDestination } = await import('../../../src/transports/bundle/writer.js');
    const { manifestFromBytes } = await import('../../../src/oci/manifest.js');
    const out = join(tmp.path, 'stale.tar');
    const dest = new BundleDestination({ output: out, storeDir: first.storeDir, toolVersion: 't' });
    for (const e of corpus.entries) {
      for (const b of corpus.blobs.values()) expect(await dest.hasBlob(e.repository, { digest: parseDigest(b.digest), size: b.size, mediaType: b.mediaType })).toBe(true);
    }
    for (const e of corpus.entries) {
      const a = e.artifact;
      for (const m of a.kind === 'index' ? [...a.manifests, a] : [a]) await dest.putManifest(e.repository, manifestFromBytes(m.bytes, m.mediaType));
      await dest.putImage({ repository: e.repository, ...(e.tag ? { tag: e.tag } : {}), manifest: manifestFromBytes(a.bytes, a.mediaType), origin: originOf(e) });
    }
    const bad = await readFile(cached);
    bad[10] = bad[10]! ^ 0x01;
    await writeFile(cached, bad);
    const err = await dest.commit().then(() => undefined, (e: unknown) => e);
    expect(isFerryError(err, 'E_DIGEST_MISMATCH')).toBe(true);
    expect(String((err as Error).message)).toContain(layer.digest);
    expect((await readdir(tmp.path)).filter((f) => f.includes('stale.tar'))).toEqual([]);
  });

  it('leaves omitted blobs out of a delta bundle and declares them', async () => {
    const p = paths();
    const shared = corpus.entries[0]!.artifact.kind === 'manifest' ? corpus.entries[0]!.artifact.layers[0]! : undefined;
    const base = { bundleId: sha256Digest('base'), metadataDigest: sha256Digest('base-meta') };
    const d = await writeBundle(corpus.entries, { ...p, delta: { bases: [base], omitted: new Set([parseDigest(shared!.digest)]) } });
    const meta = d.metadata!;
    expect(meta.blobs.some((b) => b.digest === shared!.digest)).toBe(false);
    expect(meta.delta).toEqual({ bases: [base], omittedBlobs: [{ digest: shared!.digest, size: shared!.size, mediaType: shared!.mediaType, kind: 'layer' }] });
    const src = await BundleSource.open(p.output);
    expect([...src.omittedBlobs]).toEqual([shared!.digest]);
    const layers = await drain(src);
    expect(layers.has(shared!.digest)).toBe(false);
    expect(layers.size).toBe(4);
    await src.close();
  });
});

function rank(k: string): number {
  return k === 'config' ? 1 : k === 'layer' ? 2 : 0;
}

function isConfig(mt: string): boolean {
  return mt === 'application/vnd.oci.image.config.v1+json' || mt === 'application/vnd.docker.container.image.v1+json';
}
