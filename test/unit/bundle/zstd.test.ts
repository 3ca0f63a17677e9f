import { randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { compressStream, decompressStream, hasZstdMagic, maybeDecompress, peekBytes } from '../../../src/stream/zstd.js';

async function collect(s: AsyncIterable<Buffer>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c);
  return Buffer.concat(parts);
}

async function compress(data: Buffer[], level = 3): Promise<Buffer> {
  let out: Buffer = Buffer.alloc(0);
  await pipeline(Readable.from(data), compressStream({ level }), async (s: AsyncIterable<Buffer>) => { out = await collect(s); });
  return out;
}

describe('zstd stream wrappers', () => {
  it('round-trips mixed data and starts with the zstd magic', async () => {
    const data = [randomBytes(300_000), Buffer.alloc(500_000, 'a'), randomBytes(10)];
    const z = await compress(data, 7);
    expect(hasZstdMagic(z)).toBe(true);
    expect((await collect(decompressStream(Readable.from([z])))).equals(Buffer.concat(data))).toBe(true);
  });

  it('decompresses with back-pressure: a tiny input expanding hugely is not buffered whole', async () => {
    const zeros = Buffer.alloc(1 << 20);
    const z = await compress(Array.from({ length: 256 }, () => zeros), 3); // 256 MiB of zeros → a few KiB
    expect(z.length).toBeLessThan(1 << 20);
    const out = decompressStream(Readable.from([z]));
    let total = 0;
    let maxBuffered = 0;
    for await (const c of out as AsyncIterable<Buffer>) {
      total += c.length;
      maxBuffered = Math.max(maxBuffered, out.readableLength);
    }
    expect(total).toBe(256 << 20);
    expect(maxBuffered).toBeLessThan(4 << 20);
  });

  it('a cut stream fails with E_BUNDLE_TRUNCATED, garbage with E_BUNDLE_CORRUPT', async () => {
    const z = await compress([randomBytes(200_000)]);
    const cut = await collect(decompressStream(Readable.from([z.subarray(0, z.length - 100)]), 'x.tar.zst')).then(() => undefined, (e: unknown) => e);
    expect(isFerryError(cut, 'E_BUNDLE_TRUNCATED')).toBe(true);
    expect((cut as Error).message).toContain('x.tar.zst');
    const garbage = Buffer.concat([z.subarray(0, 4), Buffer.alloc(200, 0xee)]);
    const bad = await collect(decompressStream(Readable.from([garbage]))).then(() => undefined, (e: unknown) => e);
    expect(isFerryError(bad, 'E_BUNDLE_CORRUPT')).toBe(true);
  });

  it('peekBytes returns the head without losing any byte, for long, short and empty streams', async () => {
    const long = randomBytes(100_000);
    const parts = [long.subarray(0, 1), long.subarray(1, 3), long.subarray(3)];
    const p = await peekBytes(Readable.from(parts), 4);
    expect(p.head.equals(long.subarray(0, 4))).toBe(true);
    expect((await collect(p.stream)).equals(long)).toBe(true);
    const short = await peekBytes(Readable.from([Buffer.from([1, 2])]), 4);
    expect([...short.head]).toEqual([1, 2]);
    expect([...(await collect(short.stream))]).toEqual([1, 2]);
    const empty = await peekBytes(Readable.from([]), 4);
    expect(empty.head.length).toBe(0);
    expect((await collect(empty.stream)).length).toBe(0);
  });

  it('maybeDecompress goes by content, not name', async () => {
    const plain = Buffer.from('ustar-ish plain bytes');
    const a = await maybeDecompress(Readable.from([plain]));
    expect(a.compressed).toBe(false);
    expect((await collect(a.stream)).equals(plain)).toBe(true);
    const b = await maybeDecompress(Readable.from([await compress([plain])]));
    expect(b.compressed).toBe(true);
    expect((await collect(b.stream)).equals(plain)).toBe(true);
  });
});
