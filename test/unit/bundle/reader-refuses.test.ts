import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FerryError, isFerryError } from '../../../src/errors.js';
import { sha256Digest } from '../../../src/oci/digest.js';
import { VerifyStream } from '../../../src/stream/verify.js';
import type { Descriptor } from '../../../src/oci/manifest.js';
import { compressStream } from '../../../src/stream/zstd.js';
import { canonicalJson } from '../../../src/transports/bundle/metadata.js';
import { BundleSource } from '../../../src/transports/bundle/reader.js';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { readTar, smallCorpus, type TarEntry, writeBundle, writeTar } from './fixture.js';

let tmp: TempDir;
let good: Buffer;
let entries: TarEntry[];
let meta: { blobs: Array<{ digest: string; kind: string; size: number }>; images: Array<{ repository: string; tag?: string }> } & Record<string, unknown>;

beforeAll(async () => {
  tmp = makeTempDir('ferry-bundle-bad-');
  const corpus = await smallCorpus(0xbad);
  const output = join(tmp.path, 'good.tar');
  // The cases edit ferry.json as version 1 JSON: a bundle of the format earlier ferry wrote is checked as strictly.
  await writeBundle(corpus.entries, { output, storeDir: join(tmp.path, 'store'), formatVersion: 1 });
  good = await readFile(output);
  entries = await readTar(good);
  meta = JSON.parse(entries[0]!.body.toString()) as typeof meta;
});
afterAll(async () => tmp.cleanup());

let n = 0;
async function file(bytes: Buffer): Promise<string> {
  const p = join(tmp.path, `case-${++n}.tar`);
  await writeFile(p, bytes);
  return p;
}

/** Opens and consumes the whole bundle the way the engine does; returns the first error. */
async function consume(bytes: Buffer): Promise<FerryError | undefined> {
  const path = await file(bytes);
  let src: BundleSource | undefined;
  try {
    src = await BundleSource.open(path);
    for await (const { descriptor, stream } of src.blobs()) {
      await verified(stream, descriptor, path);
    }
    return undefined;
  } catch (e) {
    return e as FerryError;
  } finally {
    await src?.close();
  }
}

/** What the engine does with each layer: stream it through the verifier to a sink. */
async function verified(stream: Readable, descriptor: Descriptor, where: string): Promise<void> {
  await pipeline(stream, new VerifyStream(descriptor, where), async function* (src: AsyncIterable<Buffer>) { for await (const _ of src) { /* sink */ } });
}

function repack(list: TarEntry[]): Promise<Buffer> {
  return writeTar(list.map((e) => ({ name: e.header.name, type: e.header.type, ...(e.header.type === 'file' ? { body: e.body } : {}), mode: e.header.mode })));
}

function layerEntries(): TarEntry[] {
  const layers = new Set(meta.blobs.filter((b) => b.kind === 'layer').map((b) => `blobs/sha256/${b.digest.slice(7)}`));
  return entries.filter((e) => layers.has(e.header.name));
}

function expectCode(err: FerryError | undefined, code: string, ...mentions: string[]): void {
  expect(err, 'expected an error').toBeDefined();
  expect(isFerryError(err, code as FerryError['code']), `${err?.code}: ${err?.message}`).toBe(true);
  for (const m of mentions) expect(err!.message).toContain(m);
  expect(err!.hint).toBeTruthy();
}

/** ferry.json with `edit` applied and, unless told otherwise, a recomputed bundleId (so only the edit is wrong). */
function withMeta(edit: (m: Record<string, unknown>) => void, fixId = true): TarEntry[] {
  const m = JSON.parse(JSON.stringify(meta)) as Record<string, unknown>;
  edit(m);
  if (fixId) m.bundleId = sha256Digest(canonicalJson({ images: m.images, blobs: m.blobs, ...(m.delta ? { delta: m.delta } : {}) }));
  return [{ header: entries[0]!.header, body: Buffer.from(JSON.stringify(m)) }, ...entries.slice(1)];
}

describe('bundle reader refuses damaged and hostile bundles', () => {
  it('accepts the unmodified bundle, also when re-packed by another tar writer (so the cases below fail for their own reason)', async () => {
    expect(await consume(good)).toBeUndefined();
    expect(await consume(await repack(entries))).toBeUndefined();
    expect(await consume(await repack(withMeta(() => undefined)))).toBeUndefined();
  });

  it('a flipped byte in a layer: E_DIGEST_MISMATCH when the layer is consumed, naming the digest', async () => {
    const layer = layerEntries()[1]!;
    const bad = Buffer.from(good);
    const at = bad.indexOf(Buffer.from(layer.header.name)) + 512 + 100;
    bad[at] = bad[at]! ^ 0x40;
    const path = await file(bad);
    const src = await BundleSource.open(path); // the head is intact
    let err: FerryError | undefined;
    try {
      for await (const { descriptor, stream } of src.blobs()) await verified(stream, descriptor, path);
    } catch (e) {
      err = e as FerryError;
    }
    await src.close();
    expectCode(err, 'E_DIGEST_MISMATCH', `sha256:${layer.header.name.slice(13)}`);
  });

  it('a flipped byte in a manifest: E_DIGEST_MISMATCH at open', async () => {
    const man = meta.blobs.find((b) => b.kind === 'manifest')!;
    const bad = Buffer.from(good);
    const at = bad.indexOf(Buffer.from(`blobs/sha256/${man.digest.slice(7)}`)) + 512 + 5;
    bad[at] = bad[at]! ^ 0x01;
    expectCode(await consume(bad), 'E_DIGEST_MISMATCH', man.digest, 'case-');
  });

  it('a bundle cut inside a layer: E_BUNDLE_TRUNCATED naming the digest', async () => {
    const last = layerEntries().at(-1)!;
    const start = good.indexOf(Buffer.from(last.header.name)) + 512;
    expectCode(await consume(good.subarray(0, start + Math.floor(last.body.length / 2))), 'E_BUNDLE_TRUNCATED', last.header.name.slice(13));
  });

  it('a bundle cut between entries: E_BUNDLE_TRUNCATED naming the first missing digest and the image that needs it', async () => {
    const last = layerEntries().at(-1)!;
    const digest = `sha256:${last.header.name.slice(13)}`;
    const err = await consume(good.subarray(0, good.indexOf(Buffer.from(last.header.name))));
    expectCode(err, 'E_BUNDLE_TRUNCATED', digest, 'needed by');
    expect(err!.details['images']).toBeInstanceOf(Array);
    expect((err!.details['images'] as string[]).length).toBeGreaterThan(0);
  });

  it('a bundle cut in its head or before the end-of-archive marker: E_BUNDLE_TRUNCATED', async () => {
    expectCode(await consume(good.subarray(0, 700)), 'E_BUNDLE_TRUNCATED');
    expectCode(await consume(good.subarray(0, 100)), 'E_BUNDLE_TRUNCATED');
    expectCode(await consume(Buffer.alloc(0)), 'E_BUNDLE_TRUNCATED');
    expectCode(await consume(good.subarray(0, good.length - 1024)), 'E_BUNDLE_TRUNCATED', 'end-of-archive');
  });

  it('a truncated zstd bundle: E_BUNDLE_TRUNCATED', async () => {
    const parts: Buffer[] = [];
    await pipeline(Readable.from([good]), compressStream({ level: 1 }), async function* (src: AsyncIterable<Buffer>) { for await (const c of src) parts.push(c); });
    const z = Buffer.concat(parts);
    expect(await consume(z)).toBeUndefined();
    expectCode(await consume(z.subarray(0, z.length - 40)), 'E_BUNDLE_TRUNCATED');
  });

  it('unknown and path-traversal entry names: E_BUNDLE_INVALID', async () => {
    for (const name of ['../evil', '/etc/passwd', 'blobs/sha256/../../x', 'extra.txt', `blobs/sha256/${'0'.repeat(64)}`]) {
      const list = [...entries.slice(0, 5), { header: { ...entries[1]!.header, name }, body: Buffer.from('x') }, ...entries.slice(5)];
      expectCode(await consume(await repack(list)), 'E_BUNDLE_INVALID', JSON.stringify(name));
    }
  });

  it('links and devices: E_BUNDLE_INVALID', async () => {
    for (const type of ['symlink', 'link', 'character-device', 'fifo'] as const) {
      const bytes = await writeTar([
        ...entries.slice(0, 5).map((e) => ({ name: e.header.name, type: e.header.type, ...(e.header.type === 'file' ? { body: e.body } : {}) })),
        { name: 'blobs/sha256/evil', type, linkname: '/etc/shadow' },
      ]);
      expectCode(await consume(bytes), 'E_BUNDLE_INVALID', 'blobs/sha256/evil');
    }
  });

  it('a duplicate entry: E_BUNDLE_INVALID', async () => {
    const l = layerEntries()[0]!;
    const i = entries.indexOf(l);
    expectCode(await consume(await repack([...entries.slice(0, i + 1), l, ...entries.slice(i + 1)])), 'E_BUNDLE_INVALID', 'twice');
    // ...also at the very end, after the last declared blob.
    expectCode(await consume(await repack([...entries, l])), 'E_BUNDLE_INVALID', 'twice');
  });

  it('entries out of the declared order: E_BUNDLE_INVALID', async () => {
    const [a, b] = layerEntries();
    const list = entries.map((e) => (e === a ? b! : e === b ? a! : e));
    expectCode(await consume(await repack(list)), 'E_BUNDLE_INVALID', 'out of order');
  });

  it('metadata not first: E_BUNDLE_INVALID', async () => {
    expectCode(await consume(await repack([entries[1]!, entries[0]!, ...entries.slice(2)])), 'E_BUNDLE_INVALID', 'ferry.json');
  });

  it('a newer formatVersion: E_BUNDLE_INVALID saying to upgrade', async () => {
    const err = await consume(await repack(withMeta((m) => { m.formatVersion = 99; })));
    expectCode(err, 'E_BUNDLE_INVALID', 'newer');
    expect(err!.hint).toContain('upgrade');
  });

  it('a repository of ../../etc: E_NAME_UNSAFE', async () => {
    const err = await consume(await repack(withMeta((m) => { (m.images as Array<Record<string, unknown>>)[0]!.repository = '../../etc'; })));
    expectCode(err, 'E_NAME_UNSAFE', '../../etc');
    const err2 = await consume(await repack(withMeta((m) => { (m.images as Array<Record<string, unknown>>)[0]!.repository = 'docker.io/../../etc'; })));
    expectCode(err2, 'E_NAME_UNSAFE');
    const err3 = await consume(await repack(withMeta((m) => { (m.images as Array<Record<string, unknown>>)[0]!.tag = '../x'; })));
    expectCode(err3, 'E_NAME_UNSAFE');
  });

  it('metadata whose bundleId does not match its content, or whose sizes disagree with the entries', async () => {
    expectCode(await consume(await repack(withMeta((m) => { (m.images as Array<Record<string, unknown>>)[0]!.origin = 'docker.io/library/other:1'; }, false))), 'E_BUNDLE_INVALID', 'bundleId');
    const layer = meta.blobs.find((b) => b.kind === 'layer')!;
    const err = await consume(await repack(withMeta((m) => {
      const b = (m.blobs as Array<Record<string, unknown>>).find((x) => x.digest === layer.digest)!;
      b.size = (b.size as number) + 1;
      const t = m.totals as Record<string, number>;
      t.storedBytes = t.storedBytes! + 1;
    })));
    expect(err).toBeDefined();
    expect(['E_SIZE_MISMATCH', 'E_BUNDLE_INVALID']).toContain(err!.code);
    expect(err!.message).toContain(layer.digest.slice(7));
  });

  it('an index.json longer than the one ferry.json implies: refused on its header, before a byte of it is read', async () => {
    // The header claims 60 MiB and the bytes are not even there: a reader that read (or parsed) the entry would
    // report a truncated bundle; one that compares sizes first refuses the header.
    const at = entries.findIndex((e) => e.header.name === 'index.json');
    const head = await repack(entries.slice(0, at + 1));
    const claimed = setOctalSize(head, 'index.json', 60 * 1024 * 1024).subarray(0, head.length - 1024);
    expectCode(await consume(claimed), 'E_BUNDLE_INVALID', 'index.json', String(entries[at]!.body.length));
    // The same with the bytes there: a valid OCI index with an extra field, still not the one ferry.json implies.
    const index = JSON.parse(entries[at]!.body.toString()) as Record<string, unknown>;
    const padded = entries.map((e, i) => (i === at ? { header: e.header, body: Buffer.from(JSON.stringify({ ...index, padding: 'x'.repeat(100_000) })) } : e));
    expectCode(await consume(await repack(padded)), 'E_BUNDLE_INVALID', 'index.json', 'is 10');
  });

  it('an index.json of the right size with other bytes: refused, naming the image whose descriptor differs', async () => {
    const at = entries.findIndex((e) => e.header.name === 'index.json');
    const text = entries[at]!.body.toString();
    const last = meta.images.at(-1)!;
    const name = `${last.repository}${last.tag !== undefined ? `:${last.tag}` : '@'}`;
    const i = text.lastIndexOf(name);
    expect(i).toBeGreaterThan(0);
    // One character of the last image's ref name, same length: only a byte comparison notices.
    const edited = `${text.slice(0, i)}${text[i] === 'q' ? 'x' : 'q'}${text.slice(i + 1)}`;
    expectCode(await consume(await repack(entries.map((e, k) => (k === at ? { header: e.header, body: Buffer.from(edited) } : e)))), 'E_BUNDLE_INVALID', 'index.json', `image ${last.repository}`);
    // oci-layout likewise: the 30 bytes of spec §2 and nothing else (white space included).
    const layoutAt = entries.findIndex((e) => e.header.name === 'oci-layout');
    const spaced = entries.map((e, k) => (k === layoutAt ? { header: e.header, body: Buffer.from('{"imageLayoutVersion": "1.0.0"}') } : e));
    expectCode(await consume(await repack(spaced)), 'E_BUNDLE_INVALID', 'oci-layout');
  });

  it('a manifest referencing a blob the bundle lacks: E_BLOB_MISSING', async () => {
    const layer = meta.blobs.find((b) => b.kind === 'layer')!;
    const list = withMeta((m) => {
      m.blobs = (m.blobs as Array<Record<string, unknown>>).filter((x) => x.digest !== layer.digest);
      const t = m.totals as Record<string, number>;
      t.blobs = t.blobs! - 1;
      t.storedBytes = t.storedBytes! - layer.size;
    }).filter((e) => e.header.name !== `blobs/sha256/${layer.digest.slice(7)}`);
    expectCode(await consume(await repack(list)), 'E_BLOB_MISSING', layer.digest);
  });
});

/** Rewrites the octal size field of entry `name`'s header in `tar` (fixing its checksum). */
function setOctalSize(tar: Buffer, name: string, size: number): Buffer {
  const out = Buffer.from(tar);
  for (let pos = 0; pos + 512 <= out.length;) {
    const h = out.subarray(pos, pos + 512);
    const n = h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
    const old = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    if (n === name) {
      h.write(`${size.toString(8).padStart(11, '0')} `, 124, 'latin1');
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      return out;
    }
    pos += 512 + Math.ceil(old / 512) * 512;
  }
  throw new Error(`${name} not in the tar`);
}
