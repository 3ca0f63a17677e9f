// Layers larger than a volume: the continuation rule (spec/bundle.md §9.2), the
// part records of a volume's metadata, and the readers joining parts back into
// verified layers — from all volumes, in any order, or checking one alone.
import { copyFile, mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Digest, sha256Digest } from '../../../src/oci/digest.js';
import { digestStream } from '../../../src/stream/verify.js';
import { type BundleBlob, type BundleMetadata, type BundlePart, buildMetadata, parseMetadata, partEntryName, serialiseMetadata } from '../../../src/transports/bundle/metadata.js';
import { BundleSource } from '../../../src/transports/bundle/reader.js';
import { VolumeSetSource } from '../../../src/transports/bundle/volume-set.js';
import { cutLayers, hashRanges } from '../../../src/transports/bundle/volumes.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Corpus, fails, readTar, smallCorpus, writeBundle, writeTar } from './fixture.js';
import type { FerryError } from '../../../src/errors.js';

const d = (s: string): Digest => sha256Digest(s);
const layer = (name: string, size: number): BundleBlob => ({ digest: d(name), size, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', kind: 'layer' });
const entry = (size: number): number => 512 + Math.ceil(size / 512) * 512;

describe('the continuation rule', () => {
  const HEAD = 10_000;
  const CAP = HEAD + 20 * 512;

  it('keeps every volume within the cap, parts in consecutive volumes, the bytes of each layer covered once in order', () => {
    const layers = [layer('a', 4000), layer('big', 50_000), layer('b', 3000), layer('huge', 100_001), layer('c', 0), layer('d', 9000)];
    const cut = cutLayers(HEAD, layers, CAP, 'b');
    for (const v of cut) expect(HEAD + v.reduce((n, p) => n + entry(p.part?.size ?? p.blob.size), 0)).toBeLessThanOrEqual(CAP);
    // Stored order is kept across volumes.
    expect(cut.flat().map((p) => p.blob.digest).filter((x, i, all) => all.indexOf(x) === i)).toEqual(layers.map((l) => l.digest));
    for (const l of layers) {
      const pieces = cut.flatMap((v, vi) => v.filter((p) => p.blob === l).map((p) => ({ ...p, vi })));
      if (entry(l.size) <= CAP - HEAD) {
        expect(pieces).toHaveLength(1);
        expect(pieces[0]!.part).toBeUndefined();
        continue;
      }
      let offset = 0;
      pieces.forEach((p, k) => {
        expect(p.part).toEqual({ index: k, count: pieces.length, offset, size: p.part!.size });
        if (k > 0) expect(p.vi).toBe(pieces[k - 1]!.vi + 1);
        // Every part but the last is whole tar blocks; a continued part opens its volume.
        if (k < pieces.length - 1) expect(p.part!.size % 512).toBe(0);
        if (k > 0) expect(cut[p.vi]![0]!.blob).toBe(l);
        offset += p.part!.size;
      });
      expect(offset).toBe(l.size);
    }
  });

  it('starts a cut layer in what is left of the current volume, and only when a block fits there', () => {
    // 'a' and 'x' leave 20·512 − 1536 − 4608 = 4096 bytes: the big layer's first part takes 3584 of them (plus its header).
    const cut = cutLayers(HEAD, [layer('a', 1000), layer('x', 4000), layer('big', 50_000)], CAP, 'b');
    expect(cut[0]!.map((p) => p.part?.size ?? p.blob.size)).toEqual([1000, 4000, 3584]);
    // With less than two blocks left, the layer starts the next volume instead.
    const full = cutLayers(HEAD, [layer('a', 18 * 512 + 1), layer('big', 50_000)], CAP, 'b');
    expect(full[0]!.map((p) => p.blob.size)).toEqual([18 * 512 + 1]);
    expect(full[1]![0]!.part).toMatchObject({ index: 0, offset: 0, size: 19 * 512 });
  });

  it('refuses only a cap that leaves no room beside the head', () => {
    fails(() => cutLayers(HEAD, [layer('a', 1)], HEAD - 1, 'b'), 'E_USAGE', /too small/);
    fails(() => cutLayers(HEAD, [layer('big', 5000)], HEAD + 1023, 'b'), 'E_USAGE', new RegExp(`layer ${d('big')} \\(5000 bytes\\) needs room for a part`));
    const minimal = cutLayers(HEAD, [layer('big', 5000)], HEAD + 1024, 'b');
    expect(minimal).toHaveLength(10);
  });

  it('hashes consecutive ranges of a stream in one pass, across chunk boundaries', async () => {
    const bytes = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));
    const chunks = [bytes.subarray(0, 700), bytes.subarray(700, 701), bytes.subarray(701)];
    expect(await hashRanges(Readable.from(chunks), [1024, 1024, 952])).toEqual([sha256Digest(bytes.subarray(0, 1024)), sha256Digest(bytes.subarray(1024, 2048)), sha256Digest(bytes.subarray(2048))]);
    await expect(hashRanges(Readable.from([bytes]), [1000])).rejects.toThrow(/longer/);
    await expect(hashRanges(Readable.from([bytes]), [3000, 1])).rejects.toThrow(/shorter/);
  });
});

describe('part records in a volume\'s metadata', () => {
  const OCI = 'application/vnd.oci.image.manifest.v1+json';
  const meta = buildMetadata({
    created: '2024-01-02T03:04:05Z', toolVersion: '1', formatVersion: 1,
    images: [{ origin: 'quay.io/a/b:1', repository: 'quay.io/a/b', tag: '1', digest: d('m'), mediaType: OCI, platforms: [], size: 1 }],
    blobs: [{ digest: d('m'), size: 300, mediaType: OCI, kind: 'manifest' }, { digest: d('c'), size: 200, mediaType: 'application/vnd.oci.image.config.v1+json', kind: 'config' }, layer('l0', 1000), layer('l1', 5000)],
  });
  const head = [d('m'), d('c')];
  const part = { digest: d('l1'), index: 0, count: 2, offset: 0, size: 3072, partDigest: d('p') };
  const withParts = (blobs: Digest[], parts: unknown[]): Buffer => serialiseMetadata({ ...meta, volume: { index: 0, count: 2, bundleId: meta.bundleId, blobs, parts } as BundleMetadata['volume'] });

  it('reads a volume holding whole layers and a part, and names part entries outside blobs/', () => {
    const v = parseMetadata(withParts([...head, d('l0')], [part]), 'v').volume!;
    expect(v.parts).toEqual([part]);
    expect(partEntryName(d('l1'), 1)).toBe(`ferry-parts/sha256/${d('l1').slice(7)}.1`);
    expect(partEntryName(d('l1'), Number.MAX_SAFE_INTEGER).length).toBeLessThanOrEqual(100);
  });

  it('refuses parts that cannot be a cut of a stored layer', () => {
    const bad = (parts: unknown[], text: RegExp, blobs = head): void => fails(() => parseMetadata(withParts(blobs, parts), 'v'), 'E_BUNDLE_INVALID', text);
    bad([{ ...part, digest: d('c') }], /not a stored layer/);
    bad([{ ...part, count: 1 }], /out of range/);
    bad([{ ...part, index: 2 }], /out of range/);
    bad([{ ...part, size: 0 }], /do not lie inside/);
    bad([{ ...part, size: 5001 }], /do not lie inside/);
    bad([{ ...part, offset: 1 }], /only the first part starts at 0/);
    bad([{ ...part, index: 1, offset: 0 }], /only the first part starts at 0/);
    bad([{ ...part, size: 5000 }], /only the last part ends/);
    bad([{ ...part, index: 1, offset: 1000, size: 1000 }], /only the last part ends/);
    bad([part], /held whole and in part/, [...head, d('l1')]);
    bad([{ ...part, index: 1, offset: 3072, size: 1928 }, part], /two parts here or is out of stored order/);
    fails(() => parseMetadata(withParts(head, [{ ...part, partDigest: 'sha256:xyz' }]), 'v'), 'E_DIGEST_INVALID', /partDigest/);
  });

  const second = { digest: d('l1'), index: 1, count: 2, offset: 3072, size: 1928, partDigest: d('q') };
  const withSplit = (split: unknown, parts: unknown[] = [part], index = 0): Buffer => serialiseMetadata({
    ...meta, split, volume: { index, count: 2, bundleId: meta.bundleId, blobs: [...head, d('l0')], parts },
  } as unknown as BundleMetadata);

  it('reads the record of the whole cut, and a volume\'s parts must be exactly the ones it puts there', () => {
    const split = { count: 2, parts: [{ ...part, volume: 0 }, { ...second, volume: 1 }] };
    expect(parseMetadata(withSplit(split), 'v').split).toEqual(split);
    const bad = (buf: Buffer, text: RegExp): void => fails(() => parseMetadata(buf, 'v'), 'E_BUNDLE_INVALID', text);
    // The volume's own record and the whole cut disagree: an edited part digest, a part the cut does not put here, one it lacks.
    bad(withSplit(split, [{ ...part, partDigest: d('edited') }]), new RegExp(`volume 1 of 2: part 1 of 2 of layer ${d('l1')} .*${d('edited')}.* hashing to ${d('p')}`));
    bad(withSplit(split, [second], 0), /does not put it in this volume/);
    bad(withSplit(split, []), /puts part 1 of 2 of layer .* in this volume, which does not record it/);
    bad(withSplit({ ...split, count: 3, parts: [{ ...part, volume: 0 }, { ...second, volume: 1 }] }), /the bundle.s record of the cut \(split\) says 3 volumes/);
    // The cut itself must be one: parts together, in order, contiguous, in consecutive volumes.
    bad(withSplit({ count: 2, parts: [{ ...part, volume: 0 }] }), /part 2 of 2 .* is not where the cut puts it/);
    bad(withSplit({ count: 2, parts: [{ ...part, volume: 0 }, { ...second, offset: 3000, size: 2000, volume: 1 }] }), /is not where the cut puts it/);
    bad(withSplit({ count: 2, parts: [{ ...part, volume: 0 }, { ...second, volume: 0 }] }), /is not where the cut puts it/);
    bad(withSplit({ count: 2, parts: [{ ...part, volume: 2 }, { ...second, volume: 3 }] }), /not below the 2 volumes/);
    bad(withSplit({ count: 2, parts: [] }), /is empty/);
  });
});

describe('reading a split bundle whose layers are cut', () => {
  let tmp: TempDir;
  let corpus: Corpus;
  let volumes: string[];
  let metas: BundleMetadata[];

  beforeAll(async () => {
    tmp = makeTempDir('ferry-parts-');
    corpus = await smallCorpus(0x9a7);
    const whole = join(tmp.path, 'whole.tar');
    const w = await writeBundle(corpus.entries, { output: whole, storeDir: join(tmp.path, 'store'), formatVersion: 1 });
    const layers = w.metadata!.blobs.filter((b) => b.kind === 'layer');
    // Room for the head and 20 KiB of layers: the 50 kB and 30 kB layers must be cut, the rest fit.
    let head = 0;
    try {
      await writeBundle(corpus.entries, { output: join(tmp.path, 'probe', 'x.tar'), storeDir: join(tmp.path, 'store'), split: 1, formatVersion: 1 });
    } catch (e) {
      head = (e as { details: { headBytes: number } }).details.headBytes;
    }
    expect(head).toBeGreaterThan(0);
    expect(layers.some((l) => l.size > 20 * 1024)).toBe(true);
    const dir = join(tmp.path, 'split');
    await mkdir(dir);
    const dest = await writeBundle(corpus.entries, { output: join(dir, 'rel.tar'), storeDir: join(tmp.path, 'store'), split: head + 20 * 1024, formatVersion: 1 });
    volumes = dest.volumes!.map((v) => v.path);
    metas = await Promise.all(volumes.map((v) => BundleSource.peekMetadata(v)));
    expect(metas.some((m) => (m.volume!.parts?.length ?? 0) > 0)).toBe(true);
    expect((await readdir(dir)).filter((n) => n.endsWith('.tar'))).toHaveLength(volumes.length);
  });
  afterAll(async () => tmp.cleanup());

  async function readAll(src: VolumeSetSource): Promise<Map<string, string>> {
    const got = new Map<string, string>();
    for await (const { descriptor, stream } of src.blobs()) {
      const { digest, size } = await digestStream(stream);
      expect(size).toBe(descriptor.size);
      got.set(descriptor.digest, digest);
    }
    return got;
  }

  it('writes each part as its own entry, outside blobs/, after the head in stored order', async () => {
    const k = metas.findIndex((m) => (m.volume!.parts?.length ?? 0) > 0);
    const names = (await readTar(await readFile(volumes[k]!))).map((e) => e.header.name);
    for (const p of metas[k]!.volume!.parts!) expect(names).toContain(partEntryName(p.digest, p.index));
    expect(names.filter((n) => n.startsWith('blobs/sha256/') && n.includes('.'))).toEqual([]);
  });

  it('joins every cut layer from all volumes in any order: each layer whole and matching its digest', async () => {
    const src = await VolumeSetSource.open([...volumes].reverse());
    try {
      const got = await readAll(src);
      const layers = metas[0]!.blobs.filter((b) => b.kind === 'layer');
      expect([...got.keys()].sort()).toEqual(layers.map((l) => l.digest).sort());
      for (const [want, have] of got) expect(have).toBe(want);
      expect(src.absentLayers.size).toBe(0);
      expect(src.unreadableLayers.size).toBe(0);
    } finally {
      await src.close();
    }
  });

  it('a volume alone: its parts are checked against their own digests, a flipped byte is found', async () => {
    const k = metas.findIndex((m) => (m.volume!.parts?.length ?? 0) > 0);
    const alone = await VolumeSetSource.open([volumes[k]!]);
    try {
      await readAll(alone);
      for (const p of metas[k]!.volume!.parts!) expect(alone.absentLayers.has(p.digest)).toBe(true);
      expect(alone.damagedParts.size).toBe(0);
    } finally {
      await alone.close();
    }
    const p = metas[k]!.volume!.parts![0]!;
    const bytes = await readFile(volumes[k]!);
    const entries = await readTar(bytes);
    const body = entries.find((e) => e.header.name === partEntryName(p.digest, p.index))!.body;
    const at = bytes.indexOf(body);
    expect(at).toBeGreaterThan(0);
    const i = at + Math.floor(body.length / 2);
    bytes[i] = bytes[i]! ^ 0xff;
    const bad = join(tmp.path, 'bad.tar');
    await writeFile(bad, bytes);
    const src = await VolumeSetSource.open([bad]);
    try {
      await readAll(src);
      const err = src.damagedParts.get(p.digest);
      expect(err?.code).toBe('E_DIGEST_MISMATCH');
      expect(err?.message).toContain(`volume ${k + 1} of ${volumes.length} (bad.tar): part ${p.index + 1} of ${p.count} of layer ${p.digest}`);
    } finally {
      await src.close();
    }
  });

  /**
   * Volume `k` with its first part's bytes changed and the part's digest changed to match in the volume's own
   * record (`volume.parts`) and, with `split`, in its copy of the whole cut as well: what an edit that knows the
   * format looks like. Written as `rel.NNN.tar` into `dir`.
   */
  async function edited(k: number, dir: string, split: boolean): Promise<{ file: string; part: BundlePart }> {
    const entries = await readTar(await readFile(volumes[k]!));
    const doc = JSON.parse(entries[0]!.body.toString()) as BundleMetadata;
    const part = doc.volume!.parts![0]!;
    const name = partEntryName(part.digest, part.index);
    const body = Buffer.from(entries.find((e) => e.header.name === name)!.body);
    body[0] = body[0]! ^ 0xff;
    const was = part.partDigest;
    part.partDigest = sha256Digest(body);
    if (split) for (const p of doc.split?.parts ?? []) if (p.partDigest === was) p.partDigest = part.partDigest;
    const list = entries.map((e, i) => ({
      name: e.header.name, type: e.header.type as 'file' | 'directory',
      ...(e.header.type === 'file' ? { body: i === 0 ? serialiseMetadata(doc) : e.header.name === name ? body : e.body } : {}),
    }));
    const file = join(dir, basename(volumes[k]!));
    await writeFile(file, await writeTar(list));
    return { file, part: { ...part, partDigest: was } };
  }

  it('a volume whose part bytes and part digest were edited: refused alone, against the record of the whole cut it carries', async () => {
    const k = metas.findIndex((m) => (m.volume!.parts?.length ?? 0) > 0);
    expect(metas[k]!.split?.parts.length).toBeGreaterThan(0);
    const dir = join(tmp.path, 'edited-alone');
    await mkdir(dir);
    const { file, part } = await edited(k, dir, false);
    const err = await VolumeSetSource.open([file]).then(async (s) => { await s.close(); return undefined; }, (e: unknown) => e as FerryError);
    expect(err?.code).toBe('E_BUNDLE_INVALID');
    expect(err?.message).toContain(`volume ${k + 1} of ${volumes.length}`);
    expect(err?.message).toContain(`part ${part.index + 1} of ${part.count} of layer ${part.digest}`);
    expect(err?.message).toContain(part.partDigest);
  });

  it('a volume whose own record and copy of the cut were both edited: found against STEM.ferry.json, or against the other volumes', async () => {
    const k = metas.findIndex((m) => (m.volume!.parts?.length ?? 0) > 0);
    const stemJson = join(dirname(volumes[0]!), 'rel.ferry.json');
    // Alone beside STEM.ferry.json (which export writes beside the volumes).
    const beside = join(tmp.path, 'edited-stem');
    await mkdir(beside);
    const { file, part } = await edited(k, beside, true);
    await copyFile(stemJson, join(beside, 'rel.ferry.json'));
    const err = await VolumeSetSource.open([file]).then(async (s) => { await s.close(); return undefined; }, (e: unknown) => e as FerryError);
    expect(err?.code).toBe('E_DIGEST_MISMATCH');
    expect(err?.message).toContain(`volume ${k + 1} of ${volumes.length} (${basename(file)}): its metadata is not the bundle's (rel.ferry.json)`);
    expect(err?.message).toContain(`part ${part.index + 1} of ${part.count} of layer ${part.digest}`);

    // With every other volume and no STEM.ferry.json: they outvote it. It is not read; only its layers fail.
    const set = join(tmp.path, 'edited-set');
    await mkdir(set);
    await edited(k, set, true);
    for (const [i, v] of volumes.entries()) if (i !== k) await copyFile(v, join(set, basename(v)));
    const src = await VolumeSetSource.open(volumes.map((v) => join(set, basename(v))));
    try {
      expect(src.info.damaged.map((d) => d.volume)).toEqual([k + 1]);
      const got = await readAll(src);
      expect(got.has(part.digest)).toBe(false);
      const bad = src.unreadableLayers.get(part.digest);
      expect(bad?.code).toBe('E_DIGEST_MISMATCH');
      expect(bad?.message).toContain(`part ${part.index + 1} of ${part.count} of layer ${part.digest}`);
      const elsewhere = metas.filter((_, i) => i !== k).flatMap((m) => m.volume!.blobs);
      for (const l of metas[0]!.blobs.filter((b) => b.kind === 'layer' && elsewhere.includes(b.digest))) expect(got.get(l.digest)).toBe(l.digest);
    } finally {
      await src.close();
    }

    // Alone with one other volume beside it and no STEM.ferry.json: two words against each other, refused.
    const pair = join(tmp.path, 'edited-pair');
    await mkdir(pair);
    const alone = await edited(k, pair, true);
    const other = volumes[k === 0 ? 1 : 0]!;
    await copyFile(other, join(pair, basename(other)));
    const tie = await VolumeSetSource.open([alone.file]).then(async (s) => { await s.close(); return undefined; }, (e: unknown) => e as FerryError);
    expect(tie?.code).toBe('E_BUNDLE_INVALID');
    expect(tie?.message).toContain('disagree');
    expect(tie?.message).toContain('rel.ferry.json');
  });

  it('a missing volume holding a part: the layer fails naming the volume and the part; the others are read', async () => {
    const k = metas.findIndex((m) => m.volume!.parts?.some((p) => p.index > 0));
    const p = metas[k]!.volume!.parts!.find((x) => x.index > 0)!;
    const src = await VolumeSetSource.open(volumes.filter((_, i) => i !== k));
    try {
      const got = await readAll(src);
      expect(got.has(p.digest)).toBe(false);
      const err = src.unreadableLayers.get(p.digest);
      expect(err?.code).toBe('E_BLOB_MISSING');
      expect(err?.message).toContain(`volume ${k + 1} of ${volumes.length} (rel.${String(k).padStart(3, '0')}.tar) is missing: it holds part ${p.index + 1} of ${p.count} of layer ${p.digest}`);
      await expect(src.getBlob('', { digest: p.digest, size: 1, mediaType: 'x' })).rejects.toThrow(/is missing/);
      // Every layer some given volume holds whole still arrives, verified.
      const whole = new Set(metas.filter((_, i) => i !== k).flatMap((m) => m.volume!.blobs));
      for (const l of metas[0]!.blobs.filter((b) => b.kind === 'layer' && whole.has(b.digest))) expect(got.get(l.digest)).toBe(l.digest);
    } finally {
      await src.close();
    }
  });
});
