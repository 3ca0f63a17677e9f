// The one planner of a bundle's bytes (transports/bundle/layout.ts): its headers are
// tar-stream's, its offsets are where a tar reader finds every entry of a written
// bundle, and a volume's metadata has its final size before the part digests exist.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sha256Digest } from '../../../src/oci/digest.js';
import { layoutArchive, PENDING_DIGEST, planBundle, tarHeader, withPartDigests } from '../../../src/transports/bundle/layout.js';
import { BundleSource } from '../../../src/transports/bundle/reader.js';
import { serialiseMetadata } from '../../../src/transports/bundle/metadata.js';
import { TarWriter } from '../../../src/transports/bundle/tar.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Corpus, smallCorpus, writeBundle } from './fixture.js';

let tmp: TempDir;
let corpus: Corpus;

beforeAll(async () => {
  tmp = makeTempDir('ferry-layout-');
  corpus = await smallCorpus(0x1a7);
});
afterAll(async () => tmp.cleanup());

/** The bytes TarWriter (tar-stream) writes for one entry, header first. */
async function tarStreamHeader(name: string, type: 'file' | 'directory', size: number, mtime: number): Promise<Buffer> {
  const w = new TarWriter(mtime);
  const chunks: Buffer[] = [];
  const collected = (async () => { for await (const c of w.stream as AsyncIterable<Buffer>) chunks.push(c); })();
  if (type === 'directory') await w.directory(name);
  else await w.fileFrom(name, size, Readable.from(size === 0 ? [] : [Buffer.alloc(size)]));
  w.finalize();
  await collected;
  return Buffer.concat(chunks).subarray(0, 512);
}

/** Header offsets of every entry of a tar, by its name: read from the headers themselves. */
function offsetsOf(tar: Buffer): Map<string, { offset: number; size: number }> {
  const out = new Map<string, { offset: number; size: number }>();
  for (let at = 0; at + 512 <= tar.length;) {
    const h = tar.subarray(at, at + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 135).toString('latin1'), 8);
    out.set(name, { offset: at, size });
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

describe('bundle layout', () => {
  it('writes the headers tar-stream writes: files, directories, a size of 8 GiB or more in base-256', async () => {
    const mtime = 1_700_000_123;
    for (const [name, type, size] of [['ferry.json', 'file', 1234], ['blobs/', 'directory', 0], [`blobs/sha256/${'a'.repeat(64)}`, 'file', 0], [`ferry-parts/sha256/${'b'.repeat(64)}.12`, 'file', 512]] as const) {
      expect(tarHeader(name, type, size, mtime).equals(await tarStreamHeader(name, type, size, mtime)), name).toBe(true);
    }
    // tar-stream writes an 8 GiB entry only with 8 GiB of content: the base-256 field is checked against the spec's rule instead.
    const big = tarHeader('x', 'file', 2 ** 33 + 5, mtime);
    expect(big[124]).toBe(0x80);
    expect(big.readUIntBE(130, 6)).toBe(2 ** 33 + 5);
    expect(() => tarHeader('x', 'file', 0, 2 ** 31)).toThrow(/2038/);
  });

  it('puts every entry where a tar reader finds it in the written bundle, plain and split', async () => {
    const probe = await writeBundle(corpus.entries, { output: join(tmp.path, 'p.tar'), storeDir: join(tmp.path, 'store'), split: 1 }).then(() => 0, (e: unknown) => (e as { details: { headBytes: number } }).details.headBytes);
    for (const split of [undefined, probe + 16 * 1024]) {
      const dest = await writeBundle(corpus.entries, { output: join(tmp.path, `b-${split ?? 'whole'}.tar`), storeDir: join(tmp.path, 'store'), ...(split ? { split } : {}) });
      const meta = dest.metadata!;
      // The planner from the metadata alone (the cut's part digests do not move anything).
      const stored = meta.blobs.map((b) => ({ ...b, omitted: false, foreign: false }));
      const plan = planBundle({ ...meta, split: undefined }, stored, split ? { maxBytes: split, description: 't' } : undefined);
      const files = dest.volumes?.map((v) => v.path) ?? [join(tmp.path, `b-${split ?? 'whole'}.tar`)];
      expect(plan.files).toHaveLength(files.length);
      for (const [i, f] of plan.files.entries()) {
        const tar = await readFile(files[i]!);
        expect(tar.length).toBe(f.layout.size);
        const found = offsetsOf(tar);
        expect([...found.keys()]).toEqual(f.layout.entries.map((e) => e.name));
        for (const e of f.layout.entries) expect(found.get(e.name), e.name).toEqual({ offset: e.offset, size: e.size });
        // …and what the metadata there says is the bundle's own, part digests and all.
        const src = await BundleSource.open(files[i]!);
        expect(serialiseMetadata(withPartDigests(f.meta, new Map((src.metadata.split?.parts ?? []).reduce((m, p) => m.set(p.digest, [...(m.get(p.digest) ?? []), p.partDigest]), new Map<string, string[]>()) as never))).length).toBe(f.metaBytes);
        await src.close();
      }
      if (split) expect(plan.cuts.size).toBeGreaterThan(0);
    }
  });

  it('a part digest not known yet takes the room of the real one', () => {
    expect(PENDING_DIGEST.length).toBe(sha256Digest('x').length);
    const l = layoutArchive(100, 10, [{ blob: { digest: sha256Digest('l'), size: 1000, mediaType: 'm', kind: 'layer' }, part: { index: 1, count: 2, offset: 600, size: 400 } }]);
    expect(l.entries.map((e) => e.name)).toEqual(['ferry.json', 'oci-layout', 'index.json', 'blobs/', 'blobs/sha256/', `ferry-parts/sha256/${sha256Digest('l').slice(7)}.1`]);
    expect(l.headEnd).toBe(l.entries[5]!.offset);
    expect(l.size).toBe(l.entries[5]!.offset + 512 + 512 + 1024);
  });
});
