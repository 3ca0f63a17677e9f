// The bundle's tar framing (src/transports/bundle/tar.ts over tar-stream): headers exactly
// as spec/bundle.md §2.1 says, and a reader that refuses what tar-stream alone would accept.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryError, isFerryError } from '../../../src/errors.js';
import type { Digest } from '../../../src/oci/digest.js';
import { VerifyStream } from '../../../src/stream/verify.js';
import { BundleSource } from '../../../src/transports/bundle/reader.js';
import { TarReader, TarWriter } from '../../../src/transports/bundle/tar.js';
import { makeImage, makeLayer, Rng } from '../../support/images.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { readTar, smallCorpus, type TarEntry, writeBundle, writeTar } from './fixture.js';

let tmp: TempDir;
let good: Buffer;
let entries: TarEntry[];
let created: number;

beforeAll(async () => {
  tmp = makeTempDir('ferry-bundle-tar-');
  const corpus = await smallCorpus(0x7a2);
  const output = join(tmp.path, 'good.tar');
  const dest = await writeBundle(corpus.entries, { output, storeDir: join(tmp.path, 'store'), formatVersion: 1 });
  created = Date.parse(dest.metadata!.created) / 1000;
  good = await readFile(output);
  entries = await readTar(good);
});
afterAll(async () => tmp.cleanup());

/** spec/bundle.md §2.1, implemented from the table alone: what a second writer would emit. */
function specHeader(name: string, type: 'file' | 'directory', size: number, mtime: number): Buffer {
  const h = Buffer.alloc(512);
  const oct = (off: number, digits: number, value: number, tail: string): void => {
    h.write(value.toString(8).padStart(digits, '0') + tail, off, 'latin1');
  };
  h.write(name, 0, 'utf8');
  oct(100, 6, type === 'directory' ? 0o755 : 0o644, ' \0');
  oct(108, 6, 0, ' \0');
  oct(116, 6, 0, ' \0');
  if (size < 8 * 1024 ** 3) oct(124, 11, size, ' ');
  else {
    h[124] = 0x80;
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) { h[i] = Number(v & 0xffn); v >>= 8n; }
  }
  oct(136, 11, mtime, ' ');
  h.write(type === 'directory' ? '5' : '0', 156, 'latin1');
  h.write('ustar\u000000', 257, 'latin1');
  oct(329, 6, 0, ' \0');
  oct(337, 6, 0, ' \0');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.fill(0, 148, 156);
  oct(148, 6, sum, ' \0');
  return h;
}

let n = 0;
async function file(bytes: Buffer): Promise<string> {
  const p = join(tmp.path, `case-${++n}.tar`);
  await writeFile(p, bytes);
  return p;
}

/** Opens and consumes the whole bundle the way the engine does; returns the first error. */
async function consume(bytes: Buffer): Promise<FerryError | undefined> {
  let src: BundleSource | undefined;
  try {
    const path = await file(bytes);
    src = await BundleSource.open(path);
    for await (const { descriptor, stream } of src.blobs()) {
      await pipeline(stream, new VerifyStream(descriptor, path), async function* (s: AsyncIterable<Buffer>) { for await (const _ of s) { /* sink */ } });
    }
    return undefined;
  } catch (e) {
    return e as FerryError;
  } finally {
    await src?.close();
  }
}

function expectCode(err: FerryError | undefined, code: string, ...mentions: string[]): void {
  expect(err, 'expected an error').toBeDefined();
  expect(isFerryError(err, code as FerryError['code']), `${err?.code}: ${err?.message}`).toBe(true);
  for (const m of mentions) expect(err!.message).toContain(m);
  expect(err!.hint).toBeTruthy();
}

/** Byte offset of an entry's header in `good`. */
function headerAt(name: string): number {
  let off = 0;
  for (const e of entries) {
    if (e.header.name === name) return off;
    off += 512 + (e.header.type === 'file' ? Math.ceil(e.body.length / 512) * 512 : 0);
  }
  throw new Error(`no entry ${name}`);
}

/** A header block with another typeflag and a recomputed checksum (for extension headers tar-stream cannot write). */
function retyped(block: Buffer, typeflag: string, size?: number): Buffer {
  const h = Buffer.from(block);
  h.write(typeflag, 156, 'latin1');
  if (size !== undefined) h.write(size.toString(8).padStart(11, '0') + ' ', 124, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.fill(0, 148, 156);
  h.write(sum.toString(8).padStart(6, '0') + ' ', 148, 'latin1');
  return h;
}

function padded(b: Buffer): Buffer {
  return Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);
}

describe('bundle tar headers', () => {
  it('every header is byte-for-byte what spec §2.1 describes, and the archive ends with exactly two zero blocks', () => {
    let off = 0;
    for (const e of entries) {
      const type = e.header.type === 'directory' ? 'directory' : 'file';
      const expected = specHeader(e.header.name, type, type === 'file' ? e.body.length : 0, created);
      expect(good.subarray(off, off + 512).equals(expected), `header of ${e.header.name}`).toBe(true);
      off += 512;
      if (type === 'file') {
        expect(good.subarray(off, off + e.body.length).equals(e.body)).toBe(true);
        off += e.body.length;
        const pad = (512 - (e.body.length % 512)) % 512;
        expect(good.subarray(off, off + pad).every((b) => b === 0)).toBe(true);
        off += pad;
      }
    }
    expect(good.length).toBe(off + 1024);
    expect(good.subarray(off).every((b) => b === 0)).toBe(true);
  });

  it('writes a size of 8 GiB or more in base-256 (no pax header), and the reader takes it', async () => {
    const size = 9 * 1024 ** 3 + 7;
    const name = `blobs/sha256/${'b'.repeat(64)}`;
    const w = new TarWriter(1_700_000_000);
    let release!: () => void;
    const held = new Promise<void>((r) => { release = r; });
    const writing = w.fileFrom(name, size, (async function* () {
      yield Buffer.alloc(1000, 7);
      await held;
      throw new Error('stop here: 9 GiB are not needed to see the header');
    })());
    const out: Buffer[] = [];
    let have = 0;
    const reading = (async () => {
      try {
        for await (const c of w.stream) {
          out.push(c as Buffer);
          have += (c as Buffer).length;
          if (have >= 1512) release();
        }
      } catch { /* the writer was stopped on purpose */ }
    })();
    await expect(writing).rejects.toThrow('stop here');
    await reading;
    const bytes = Buffer.concat(out);
    expect(bytes.subarray(0, 512).equals(specHeader(name, 'file', size, 1_700_000_000))).toBe(true);
    expect(bytes[124]).toBe(0x80);

    // The header and the start of the body, as a reader would meet them.
    const r = new TarReader(Readable.from([bytes.subarray(0, 1512)]), 'big.tar');
    const e = await r.next(() => new FerryError('E_BUNDLE_TRUNCATED', 'cut short on purpose'));
    expect(e?.name).toBe(name);
    expect(e?.size).toBe(size);
    await r.close();
  });

  it('refuses a bundle time tar headers cannot hold', () => {
    expect(() => new TarWriter(2 ** 31)).toThrow(/2038/);
    expect(() => new TarWriter(-1)).toThrow();
  });
});

describe('bundle tar reader strictness', () => {
  it('accepts record padding (zeros) after the end-of-archive marker', async () => {
    expect(await consume(good)).toBeUndefined();
    expect(await consume(Buffer.concat([good, Buffer.alloc(10240 - (good.length % 10240))]))).toBeUndefined();
  });

  it('a damaged header checksum: E_BUNDLE_CORRUPT', async () => {
    const bad = Buffer.from(good);
    bad[headerAt('oci-layout') + 3]! ^= 0x20;
    expectCode(await consume(bad), 'E_BUNDLE_CORRUPT', 'checksum');
  });

  it('a pax extended header before an entry: E_BUNDLE_INVALID (bundles never carry one)', async () => {
    const pack = tar.pack();
    const chunks: Buffer[] = [];
    const collected = (async () => { for await (const c of pack) chunks.push(c as Buffer); })();
    for (const e of entries) {
      await new Promise<void>((resolve, reject) => {
        const h: tar.Header = { ...e.header, mode: e.header.mode };
        // tar-stream writes a pax header whenever `pax` is set.
        if (e.header.name === 'oci-layout') h.pax = { comment: 'x' };
        const cb = (err?: Error | null): void => (err ? reject(err) : resolve());
        if (e.header.type === 'file') pack.entry(h, e.body, cb);
        else pack.entry(h, cb).end(undefined);
      });
    }
    pack.finalize();
    await collected;
    expectCode(await consume(Buffer.concat(chunks)), 'E_BUNDLE_INVALID', 'oci-layout', 'pax');
  });

  it('a pax global header, a GNU long name or a stray zero block between entries: E_BUNDLE_INVALID', async () => {
    const at = headerAt('index.json');
    const block = good.subarray(at, at + 512);
    const record = Buffer.from('18 comment=hello\n');
    const longName = Buffer.from('index.json\0');
    for (const extra of [
      Buffer.concat([retyped(block, 'g', record.length), padded(record)]),
      Buffer.concat([retyped(block, 'L', longName.length), padded(longName)]),
      Buffer.alloc(512),
    ]) {
      const bad = Buffer.concat([good.subarray(0, at), extra, good.subarray(at)]);
      expectCode(await consume(bad), 'E_BUNDLE_INVALID', 'index.json');
    }
  });

  it('a contiguous-file or unknown entry type: E_BUNDLE_INVALID', async () => {
    const at = headerAt('oci-layout');
    for (const t of ['7', 'Z']) {
      const bad = Buffer.concat([good.subarray(0, at), retyped(good.subarray(at, at + 512), t), good.subarray(at + 512)]);
      expectCode(await consume(bad), 'E_BUNDLE_INVALID', 'oci-layout');
    }
  });

  it('hidden bytes after the end-of-archive marker, even in a zero block\'s checksum field: E_BUNDLE_INVALID', async () => {
    const tail = Buffer.alloc(512);
    tail[150] = 0x31; // tar-stream takes a block that is zero outside its checksum field for an end block
    expectCode(await consume(Buffer.concat([good, tail])), 'E_BUNDLE_INVALID', 'end-of-archive');
    expectCode(await consume(Buffer.concat([good, Buffer.from('x')])), 'E_BUNDLE_INVALID', 'end-of-archive');
  });

  it('a bundle cut inside an end-of-archive block: E_BUNDLE_TRUNCATED', async () => {
    expectCode(await consume(good.subarray(0, good.length - 700)), 'E_BUNDLE_TRUNCATED', 'end-of-archive');
  });

  it('a bundle that is not a tar at all: E_BUNDLE_CORRUPT; an empty one: E_BUNDLE_TRUNCATED', async () => {
    expectCode(await consume(Buffer.alloc(4096, 0x41)), 'E_BUNDLE_CORRUPT');
    expectCode(await consume(Buffer.alloc(0)), 'E_BUNDLE_TRUNCATED');
  });

  it('a re-packed archive (another writer, different header bytes) still reads', async () => {
    const again = await writeTar(entries.map((e) => ({ name: e.header.name, type: e.header.type, ...(e.header.type === 'file' ? { body: e.body } : {}) })));
    expect(again.equals(good)).toBe(false);
    expect(await consume(again)).toBeUndefined();
  });
});

describe('bundle reader: a lost layer entry', () => {
  it('fails only that layer (naming its digest and images); the layers after it still stream and verify', async () => {
    const meta = JSON.parse(entries[0]!.body.toString()) as { blobs: Array<{ digest: string; kind: string }> };
    const layers = meta.blobs.filter((b) => b.kind === 'layer').map((b) => b.digest);
    const lost = layers[1]!;
    const holed = await writeTar(entries.filter((e) => e.header.name !== `blobs/sha256/${lost.slice(7)}`)
      .map((e) => ({ name: e.header.name, type: e.header.type, ...(e.header.type === 'file' ? { body: e.body } : {}) })));
    const src = await BundleSource.open(await file(holed));
    const results = new Map<string, string>();
    for await (const { descriptor, stream } of src.blobs()) {
      const r = await pipeline(stream, new VerifyStream(descriptor, 'x'), async function* (s: AsyncIterable<Buffer>) { for await (const _ of s) { /* sink */ } })
        .then(() => 'ok', (e: FerryError) => `${e.code}: ${e.message}`);
      results.set(descriptor.digest, r);
    }
    // The stream does not carry it; asking for it afterwards (what the engine does) names it.
    const err = await src.getBlob('', { digest: lost as Digest, size: 1, mediaType: 'x' }).then(() => undefined, (e: FerryError) => e);
    await src.close();
    expect([...results.keys()]).toEqual(layers.filter((d) => d !== lost));
    expect([...results.values()].every((r) => r === 'ok')).toBe(true);
    expectCode(err, 'E_BUNDLE_INVALID', lost, 'missing or out of order', 'needed by');
  });
});

describe('bundle reader streaming', () => {
  let big: Buffer;
  let layerSize: number;

  beforeAll(async () => {
    const layer = await makeLayer(new Rng(0xb16), { size: 12 * 1024 * 1024, compressible: false, gzipLevel: 1, files: 1 });
    layerSize = layer.size;
    const small = await makeLayer(new Rng(0x5a11), { size: 2000 });
    const image = makeImage({ layers: [layer, small], mediaTypes: 'oci' });
    const output = join(tmp.path, 'big.tar');
    await writeBundle([{ artifact: image, repository: '127.0.0.1:5000/big/one', tag: '1' }], { output, storeDir: join(tmp.path, 'store-big') });
    big = await readFile(output);
  });

  it('pulls from the input only as fast as the consumer reads a layer (back-pressure)', async () => {
    let pulled = 0;
    const input = Readable.from((function* () {
      for (let i = 0; i < big.length; i += 64 * 1024) {
        const c = big.subarray(i, i + 64 * 1024);
        pulled += c.length;
        yield c;
      }
    })(), { objectMode: false, highWaterMark: 64 * 1024 });
    const src = await BundleSource.open(input, { name: 'stream' });
    const it = src.blobs()[Symbol.asyncIterator]();
    const first = await it.next();
    const { stream } = first.value!;
    const layerStart = pulled;
    await new Promise<void>((resolve) => stream.once('readable', () => resolve()));
    stream.read(); // one chunk, then the consumer stalls
    await new Promise((r) => setTimeout(r, 300));
    expect(layerSize).toBeGreaterThan(10 * 1024 * 1024);
    expect(pulled - layerStart).toBeLessThan(6 * 1024 * 1024);
    stream.destroy();
    await it.return?.(undefined);
    await src.close();
  });

  it('moves on correctly when the consumer stops reading a layer early, or never reads it', async () => {
    for (const mode of ['partial', 'untouched'] as const) {
      const src = await BundleSource.open(Readable.from([big]), { name: `stream-${mode}` });
      const seen: string[] = [];
      for await (const { descriptor, stream } of src.blobs()) {
        seen.push(descriptor.digest);
        if (mode === 'partial') {
          await new Promise<void>((resolve) => stream.once('readable', () => resolve()));
          stream.read();
          stream.destroy();
        }
      }
      expect(seen).toEqual(src.metadata.blobs.filter((b) => b.kind === 'layer').map((b) => b.digest));
      await src.close();
    }
  });

  it('a stream consumer that fails mid-layer still lets the next layer be read and verified', async () => {
    const src = await BundleSource.open(Readable.from([big]), { name: 'stream' });
    const results: string[] = [];
    let first = true;
    for await (const { descriptor, stream } of src.blobs()) {
      const sink = new PassThrough();
      const p = pipeline(stream, new VerifyStream(descriptor, 'x'), sink);
      if (first) {
        first = false;
        sink.once('data', () => sink.destroy(new Error('destination failed')));
      } else sink.resume();
      results.push(await p.then(() => 'ok', (e: Error) => e.message));
    }
    expect(results).toEqual(['destination failed', 'ok']);
    await src.close();
  });
});
