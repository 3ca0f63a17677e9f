// Malicious bundles through the real CLI: `ferry import --to registry-layout` and
// `--to skopeo-dir`. Complements test/unit/bundle/reader-refuses.test.ts (which proves
// the reader's answers): here every case also proves the exit status and error document,
// that nothing was written outside the target and that no file in the target sits under
// a digest name it does not hash to. Where the input claims (or decompresses) to be large,
// ferry runs as a child under /usr/bin/time and peak memory is proved bounded; the other
// cases run it in this process (a Node start-up per run is ~0.3 s of CPU).
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { jsonHeapEstimate } from '../../src/input-limits.js';
import { canonicalJson, METADATA_MAX_BYTES, METADATA_PARSE_BUDGET_BYTES } from '../../src/transports/bundle/metadata.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { readTar, smallCorpus, type TarEntry, writeBundle, writeTar } from '../unit/bundle/fixture.js';
import { diffMaps, RSS_CEILING_KIB, runInProcess, runTimed, scanTarget, snapshotTree, type TimedResult } from './hostile-fixture.js';

type Meta = {
  images: Array<Record<string, unknown> & { digest: string; repository: string; tag?: string; mediaType: string; size: number; origin: string }>;
  blobs: Array<{ digest: string; kind: string; size: number; mediaType: string }>;
  totals: Record<string, number>;
  bundleId: string;
} & Record<string, unknown>;

let tmp: TempDir;
let good: Buffer;
let entries: TarEntry[];
let meta: Meta;
let caseNo = 0;
/** Every run's outcome, printed at the end: the numbers spec/robustness.md quotes. */
const observed: Array<{ n: number; kind: string; code: string; peakKiB: number }> = [];

const sha = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

beforeAll(async () => {
  tmp = makeTempDir('ferry-hostile-bundle-');
  const corpus = await smallCorpus(0x5eed);
  const output = join(tmp.path, 'good.tar');
  // The cases edit ferry.json as version 1 JSON: a bundle of the format earlier ferry wrote is checked as strictly.
  await writeBundle(corpus.entries, { output, storeDir: join(tmp.path, 'store'), formatVersion: 1 });
  const { readFile } = await import('node:fs/promises');
  good = await readFile(output);
  entries = await readTar(good);
  meta = JSON.parse(entries[0]!.body.toString()) as Meta;
});
afterAll(async () => {
  if (process.env.FERRY_ROBUSTNESS_REPORT) console.log(observed.map((o) => `case ${o.n} ${o.kind}: ${o.code}, peak ${Math.round(o.peakKiB / 1024)} MiB`).join('\n'));
  await tmp?.cleanup();
});

function fixIdAndTotals(m: Meta): Meta {
  m.totals = {
    images: m.images.length, blobs: m.blobs.length,
    storedBytes: m.blobs.reduce((n, b) => n + b.size, 0), referencedBytes: m.images.reduce((n, i) => n + i.size, 0),
  };
  m.bundleId = sha(canonicalJson({ images: m.images, blobs: m.blobs, ...(m.delta ? { delta: m.delta } : {}) }));
  return m;
}

const plain = (list: TarEntry[]) => list.map((e) => ({ name: e.header.name, type: e.header.type, ...(e.header.type === 'file' ? { body: e.body } : {}) }));
const metaEntry = (m: Meta | string): TarEntry => ({ header: entries[0]!.header, body: Buffer.from(typeof m === 'string' ? m : JSON.stringify(m, null, 2)) });
const indexOf = (name: string) => entries.findIndex((e) => e.header.name === name);
const blobName = (digest: string) => `blobs/sha256/${digest.slice(7)}`;
const layers = () => meta.blobs.filter((b) => b.kind === 'layer');

/**
 * Replaces the stored bytes of a top-level image manifest, updating ferry.json and
 * index.json (digest, size, ref name, totals, bundleId) so that only the manifest
 * itself is hostile.
 */
function replaceTopManifest(oldDigest: string, bytes: Buffer): TarEntry[] {
  const m = clone(meta);
  const nd = sha(bytes);
  const blob = m.blobs.find((b) => b.digest === oldDigest)!;
  const delta = bytes.length - blob.size;
  blob.digest = nd;
  blob.size = bytes.length;
  const img = m.images.find((i) => i.digest === oldDigest)!;
  img.digest = nd;
  img.size += delta;
  if (img.tag === undefined) img.origin = `${img.repository}@${nd}`;
  fixIdAndTotals(m);
  const index = JSON.parse(entries[2]!.body.toString()) as { manifests: Array<{ digest: string; size: number; annotations: Record<string, string> }> };
  for (const e of index.manifests) {
    if (e.digest !== oldDigest) continue;
    e.digest = nd;
    e.size = bytes.length;
    e.annotations['org.opencontainers.image.ref.name'] = img.tag === undefined ? `${img.repository}@${nd}` : `${img.repository}:${img.tag}`;
  }
  return entries.map((e, i) => {
    if (i === 0) return metaEntry(m);
    if (i === 2) return { header: e.header, body: Buffer.from(JSON.stringify(index)) };
    if (e.header.name === blobName(oldDigest)) return { header: { ...e.header, name: blobName(nd), size: bytes.length }, body: bytes };
    return e;
  });
}

/** The top-level Docker manifest (the digest-only `tool` image) and its parsed document. */
function toolManifest(): { digest: string; doc: Record<string, unknown> } {
  const img = meta.images.find((i) => i.tag === undefined)!;
  const e = entries.find((x) => x.header.name === blobName(img.digest))!;
  return { digest: img.digest, doc: JSON.parse(e.body.toString()) as Record<string, unknown> };
}

/** Rewrites the size field of the tar header of `name` in `tar` to `size` in base-256, fixing the checksum. */
function lieAboutSize(tar: Buffer, name: string, size: bigint): Buffer {
  const out = Buffer.from(tar);
  let pos = 0;
  while (pos + 512 <= out.length) {
    const h = out.subarray(pos, pos + 512);
    const n = h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
    const sz = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    if (n === name) {
      h[124] = 0x80;
      for (let i = 0; i < 11; i++) h[135 - i] = Number((size >> BigInt(8 * i)) & 0xffn);
      h.fill(0x20, 148, 156);
      let sum = 0;
      for (const b of h) sum += b;
      h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 'latin1');
      return out;
    }
    pos += 512 + Math.ceil(sz / 512) * 512;
  }
  throw new Error(`${name} not in tar`);
}

/**
 * A zstd frame written by hand (RFC 8878): the tar as raw blocks, then `zeros` bytes
 * of zeros as RLE blocks (4 bytes per 128 KiB), and a Frame_Content_Size field that
 * says `declared`. A few KiB on disk that decompress to gigabytes.
 */
function zstdFrame(tar: Buffer, zeros: number, declared: number, trailer?: Buffer): Buffer {
  const BLOCK = 128 * 1024;
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4 + 1 + 1 + 8);
  head.writeUInt32LE(0xfd2fb528, 0);
  head[4] = 0b1100_0000; // FCS field 8 bytes, no single segment, no checksum, no dictionary
  head[5] = 7 << 3; // window 2^17: one full block
  head.writeBigUInt64LE(BigInt(declared), 6);
  parts.push(head);
  const blocks: Array<{ type: 0 | 1; size: number; body: Buffer }> = [];
  for (let o = 0; o < tar.length; o += BLOCK) {
    const body = tar.subarray(o, Math.min(tar.length, o + BLOCK));
    blocks.push({ type: 0, size: body.length, body });
  }
  for (let left = zeros; left > 0; left -= BLOCK) blocks.push({ type: 1, size: Math.min(BLOCK, left), body: Buffer.from([0]) });
  if (trailer) blocks.push({ type: 0, size: trailer.length, body: trailer });
  blocks.forEach((b, i) => {
    const last = i === blocks.length - 1 ? 1 : 0;
    const h = Buffer.alloc(3);
    h.writeUIntLE(last | (b.type << 1) | (b.size << 3), 0, 3);
    parts.push(h, b.body);
  });
  return Buffer.concat(parts);
}

interface Outcome {
  layout: TimedResult;
  /** Absent when the case ran against the registry layout only (checks that do not depend on the target kind). */
  dir?: TimedResult;
}

/**
 * Imports `bytes` into a fresh registry-layout and a fresh skopeo-dir, each in its
 * own work directory (also the cwd). Asserts: the parent of the target is unchanged
 * except for the target itself (and a receipt when an import got as far as one);
 * no file in the target is unverified; no temp files; with `peakRss`, peak RSS
 * under the ceiling (`rssKiB`, else RSS_CEILING_KIB) of a child run under /usr/bin/time.
 */
async function importBoth(bytes: Buffer, opts: { landed?: boolean; peakRss?: boolean; rssKiB?: number; layoutOnly?: boolean } = {}): Promise<Outcome> {
  const n = ++caseNo;
  const file = join(tmp.path, `case-${n}.tar`);
  await writeFile(file, bytes);
  const results: Partial<Outcome> = {};
  const excluded = (rel: string) => rel.startsWith(`w-${n}-`) || rel.startsWith('case-');
  const whole = await snapshotTree(tmp.path, excluded);
  // The two targets run side by side: the machine has two cores.
  const kinds = opts.layoutOnly ? (['registry-layout'] as const) : (['registry-layout', 'skopeo-dir'] as const);
  await Promise.all(kinds.map(async (kind) => {
    const work = join(tmp.path, `w-${n}-${kind}`);
    await mkdir(work);
    // Bait a hostile bundle might aim for: its own neighbours.
    await writeFile(join(work, 'bait.txt'), 'bait');
    const before = await snapshotTree(work);
    const target = join(work, 'target');
    const r = await (opts.peakRss ? runTimed : runInProcess)(['import', file, '--to', kind, target, '--json', '--jobs', '2'], { cwd: work, timeoutMs: 60_000 });
    const after = await snapshotTree(work, (rel) => rel === 'target' || rel.startsWith('target/') || /^ferry-receipt-.*\.json$/.test(rel));
    expect(diffMaps(before, after), `${kind}: written outside the target`).toEqual([]);
    const scan = await scanTarget(target);
    expect(scan.wrong, `${kind}: unverified blobs`).toEqual([]);
    expect(scan.odd, `${kind}: links or special files`).toEqual([]);
    expect(scan.temps, `${kind}: temp files left`).toEqual([]);
    // Blobs verified before a late refusal (an extra entry after the last layer) may stay, like any verified blob;
    // what must not exist is an image pointing at them.
    if (!opts.landed) expect(scan.entryPoints, `${kind}: a refused bundle left a tag or manifest`).toEqual([]);
    if (opts.peakRss) expect(r.peakKiB, `${kind}: peak RSS`).toBeLessThan(opts.rssKiB ?? RSS_CEILING_KIB);
    results[kind === 'registry-layout' ? 'layout' : 'dir'] = r;
    if (opts.peakRss) observed.push({ n, kind, code: r.error?.code ?? `exit ${r.code}`, peakKiB: r.peakKiB ?? 0 });
  }));
  expect(diffMaps(whole, await snapshotTree(tmp.path, excluded)), 'written elsewhere under the test root').toEqual([]);
  return results as Outcome;
}

function expectRefused(o: Outcome, codes: string[], ...mentions: string[]): void {
  for (const r of [o.layout, ...(o.dir ? [o.dir] : [])]) {
    expect(r.error, `no --json error document; exit ${r.code}\n${r.stderr}\n${r.stdout}`).toBeDefined();
    expect(codes, `${r.error!.code}: ${r.error!.message}`).toContain(r.error!.code);
    expect(r.code).toBe(EXIT_STATUS[r.error!.code as keyof typeof EXIT_STATUS]);
    expect(r.error!.hint).toBeTruthy();
    expect(r.error!.message).toMatch(/case-\d+\.tar/);
    for (const m of mentions) expect(r.error!.message).toContain(m);
    expect(r.stderr).not.toMatch(/at .*\.[jt]s:\d+/); // no stack without --debug (in process, the frames are src/*.ts)
  }
}

describe('ferry import refuses hostile bundles, writing nothing outside the target and nothing unverified', () => {
  it('the untouched bundle imports into both targets (so each case below fails for its own reason)', async () => {
    const o = await importBoth(good, { landed: true });
    expect(o.layout.code, o.layout.stderr).toBe(0);
    expect(o.dir!.code, o.dir!.stderr).toBe(0);
    const repacked = await importBoth(await writeTar(plain(entries)), { landed: true, layoutOnly: true });
    expect(repacked.layout.code).toBe(0);
  });

  it('entries named ../escape or with an absolute path', async () => {
    const at = indexOf('blobs/sha256/') + 1;
    for (const [i, name] of ['../escape', `${tmp.path}/abs-escape`, 'blobs/sha256/../../../escape2'].entries()) {
      const list = [...entries.slice(0, at), { header: { ...entries[1]!.header, name }, body: Buffer.from('pwned') }, ...entries.slice(at)];
      expectRefused(await importBoth(await writeTar(plain(list)), { layoutOnly: i > 0 }), ['E_BUNDLE_INVALID'], JSON.stringify(name).slice(1, 20));
    }
    expect(existsSync(join(tmp.path, 'abs-escape'))).toBe(false);
  });

  it('a symlink or hard link where a blob is expected, and blobs/ as a symlink', async () => {
    const layer = layers()[0]!;
    const at = indexOf(blobName(layer.digest));
    for (const [type, linkname] of [['symlink', '../../../bait.txt'], ['link', 'ferry.json']] as const) {
      const list = [...plain(entries.slice(0, at)), { name: blobName(layer.digest), type, linkname }, ...plain(entries.slice(at + 1))];
      expectRefused(await importBoth(await writeTar(list)), ['E_BUNDLE_INVALID'], layer.digest.slice(7, 20));
    }
    const dirAt = indexOf('blobs/');
    const list = [...plain(entries.slice(0, dirAt)), { name: 'blobs/', type: 'symlink' as const, linkname: '/tmp' }, ...plain(entries.slice(dirAt + 1))];
    expectRefused(await importBoth(await writeTar(list), { layoutOnly: true }), ['E_BUNDLE_INVALID'], 'blobs/');
  });

  it('a second ferry.json after the last blob', async () => {
    const forged = clone(meta);
    forged.images[0]!.repository = 'docker.io/evil/override';
    expectRefused(await importBoth(await writeTar(plain([...entries, metaEntry(forged)]))), ['E_BUNDLE_INVALID'], 'ferry.json');
  });

  it('a tar header declaring a 4 TiB layer, and metadata declaring a 1 TiB config: refused before reading, memory flat', async () => {
    const layer = layers()[0]!;
    const huge = lieAboutSize(await writeTar(plain(entries)), blobName(layer.digest), 1n << 42n);
    expectRefused(await importBoth(huge, { peakRss: true }), ['E_SIZE_MISMATCH', 'E_BUNDLE_INVALID', 'E_BUNDLE_TRUNCATED'], layer.digest.slice(7, 20));
    const m = clone(meta);
    const config = m.blobs.find((b) => b.kind === 'config')!;
    config.size = 2 ** 40;
    expectRefused(await importBoth(await writeTar(plain([metaEntry(fixIdAndTotals(m)), ...entries.slice(1)])), { layoutOnly: true, peakRss: true }), ['E_BUNDLE_INVALID'], config.digest);
    // ferry.json itself claiming 100 MiB: refused on the header alone (the bytes are not even there).
    const bigMeta = lieAboutSize(await writeTar(plain(entries)), 'ferry.json', 100n << 20n);
    expectRefused(await importBoth(bigMeta, { layoutOnly: true, peakRss: true }), ['E_BUNDLE_INVALID', 'E_BUNDLE_TRUNCATED'], 'ferry.json');
  });

  it('metadata that lies: a media type, a layer size (with consistent totals and id), a layer digest (same-size bytes)', async () => {
    const m = clone(meta);
    const top = m.images.find((i) => i.mediaType.includes('manifest.v1') || i.mediaType.includes('manifest.v2'))!;
    const lie = 'application/vnd.oci.image.index.v1+json';
    top.mediaType = lie;
    m.blobs.find((b) => b.digest === top.digest)!.mediaType = lie;
    const index = JSON.parse(entries[2]!.body.toString()) as { manifests: Array<{ digest: string; mediaType: string }> };
    index.manifests.find((e) => e.digest === top.digest)!.mediaType = lie;
    const mt = [metaEntry(fixIdAndTotals(m)), entries[1]!, { header: entries[2]!.header, body: Buffer.from(JSON.stringify(index)) }, ...entries.slice(3)];
    expectRefused(await importBoth(await writeTar(plain(mt)), { layoutOnly: true }), ['E_BUNDLE_INVALID', 'E_MANIFEST_INVALID'], top.digest);

    const layer = layers()[1]!;
    const m2 = clone(meta);
    m2.blobs.find((b) => b.digest === layer.digest)!.size += 512;
    const grown = entries.map((e) => (e.header.name === blobName(layer.digest) ? { header: { ...e.header, size: e.body.length + 512 }, body: Buffer.concat([e.body, Buffer.alloc(512, 7)]) } : e));
    expectRefused(await importBoth(await writeTar(plain([metaEntry(fixIdAndTotals(m2)), ...grown.slice(1)])), { layoutOnly: true }), ['E_BUNDLE_INVALID', 'E_SIZE_MISMATCH'], layer.digest.slice(7));

    // Same size, other bytes: only hashing can tell. The images that need it fail, the others land.
    const swapped = entries.map((e) => (e.header.name === blobName(layer.digest) ? { header: e.header, body: Buffer.alloc(e.body.length, 0x41) } : e));
    const o = await importBoth(await writeTar(plain(swapped)), { landed: true });
    expectRefused(o, ['E_DIGEST_MISMATCH', 'E_PARTIAL'], layer.digest.slice(7, 20));
    const scan = await scanTarget(join(tmp.path, `w-${caseNo}-registry-layout`, 'target'));
    expect([...scan.blobs.values()]).not.toContain(layer.digest);
    expect(scan.blobs.size).toBeGreaterThan(0);
  });

  it('a repository ../../etc, a repository docker.io/../../etc and a tag ..', async () => {
    for (const edit of [
      (m: Meta) => { m.images[0]!.repository = '../../etc'; },
      (m: Meta) => { m.images[0]!.repository = 'docker.io/../../etc'; },
      (m: Meta) => { m.images[0]!.tag = '..'; },
      (m: Meta) => { m.images[0]!.tag = '../../../bait'; },
    ].entries()) {
      const m = clone(meta);
      edit[1](m);
      expectRefused(await importBoth(await writeTar(plain([metaEntry(fixIdAndTotals(m)), ...entries.slice(1)])), { layoutOnly: edit[0] === 1 || edit[0] === 3 }), ['E_NAME_UNSAFE', 'E_BUNDLE_INVALID']);
    }
  });

  it('a manifest referencing a blob that is not in the bundle, and one referencing ferry.json\'s own digest', async () => {
    const { digest, doc } = toolManifest();
    const d1 = clone(doc) as { layers: Array<{ digest: string; size: number }> };
    d1.layers.push({ ...d1.layers[0]!, digest: sha('not in the bundle'), size: 17 });
    expectRefused(await importBoth(await writeTar(plain(replaceTopManifest(digest, Buffer.from(JSON.stringify(d1)))))), ['E_BLOB_MISSING'], sha('not in the bundle'));
    const d2 = clone(doc) as { layers: Array<{ digest: string; size: number }> };
    d2.layers.push({ ...d2.layers[0]!, digest: sha(entries[0]!.body), size: entries[0]!.body.length });
    expectRefused(await importBoth(await writeTar(plain(replaceTopManifest(digest, Buffer.from(JSON.stringify(d2))))), { layoutOnly: true }), ['E_BLOB_MISSING'], sha(entries[0]!.body));
  });

  it('JSON bombs: nesting in ferry.json (covered by the bundle id) and in a manifest; a 5 MiB manifest', async () => {
    const deep = 100_000;
    const m = clone(meta);
    m.images[0]!.extra = 'BOMB';
    const text = JSON.stringify(fixIdAndTotals(m)).replace('"BOMB"', `${'['.repeat(deep)}${']'.repeat(deep)}`);
    expectRefused(await importBoth(await writeTar(plain([metaEntry(text), ...entries.slice(1)])), { layoutOnly: true, peakRss: true }), ['E_BUNDLE_INVALID'], 'nests');

    const { digest, doc } = toolManifest();
    const bomb = JSON.stringify({ ...doc, annotations: { x: 'BOMB' } }).replace('"BOMB"', `${'['.repeat(deep)}${']'.repeat(deep)}`);
    expectRefused(await importBoth(await writeTar(plain(replaceTopManifest(digest, Buffer.from(bomb)))), { peakRss: true }), ['E_MANIFEST_INVALID'], 'nests');

    const fat = Buffer.from(JSON.stringify({ ...doc, annotations: { pad: 'x'.repeat(5 * 1024 * 1024) } }));
    expectRefused(await importBoth(await writeTar(plain(replaceTopManifest(digest, fat))), { layoutOnly: true, peakRss: true }), ['E_BUNDLE_INVALID', 'E_MANIFEST_INVALID'], sha(fat));
  });

  it('a ferry.json just within the parse budget (a huge unknown array): accepted, memory bounded; over the budget or over the byte cap: refused before parsing', async () => {
    const withPadding = (padding: string) => {
      const m = clone(meta) as Meta & { padding?: string };
      m.padding = 'PAD';
      return JSON.stringify(fixIdAndTotals(m)).replace('"PAD"', padding);
    };
    const zeros = (n: number) => `[${'0,'.repeat(n - 1)}0]`;
    const cost = (text: string) => jsonHeapEstimate(Buffer.from(text));
    // Numbers are what JSON.parse is costliest for per byte: as many as the budget allows, and some more.
    const perZero = (cost(withPadding(zeros(1_000_001))) - cost(withPadding(zeros(1)))) / 1_000_000;
    const fits = Math.floor((METADATA_PARSE_BUDGET_BYTES - cost(withPadding(zeros(1)))) / perZero) - 1024;
    const under = withPadding(zeros(fits));
    expect(cost(under)).toBeLessThanOrEqual(METADATA_PARSE_BUDGET_BYTES);
    expect(under.length).toBeGreaterThan(4 * 1024 * 1024);
    const o = await importBoth(await writeTar(plain([metaEntry(under), ...entries.slice(1)])), { landed: true, peakRss: true, rssKiB: 300 * 1024, layoutOnly: true });
    expect(o.layout.code, o.layout.stderr).toBe(0);

    const costly = withPadding(zeros(fits + 64 * 1024));
    expect(costly.length).toBeLessThan(METADATA_MAX_BYTES);
    expectRefused(await importBoth(await writeTar(plain([metaEntry(costly), ...entries.slice(1)])), { layoutOnly: true, peakRss: true }), ['E_BUNDLE_INVALID'], 'ferry.json', 'memory to parse');

    // Cheap to parse (one long string) but over the byte cap.
    const big = withPadding(`"${'x'.repeat(METADATA_MAX_BYTES)}"`);
    expectRefused(await importBoth(await writeTar(plain([metaEntry(big), ...entries.slice(1)])), { layoutOnly: true, peakRss: true }), ['E_BUNDLE_INVALID'], 'ferry.json', `${METADATA_MAX_BYTES} allowed`);
  });

  it('a 60 MiB index.json (a valid OCI index with a huge unknown field): refused on its header, memory flat. Was accepted at ~950 MiB RSS', async () => {
    const index = JSON.parse(entries[2]!.body.toString()) as Record<string, unknown>;
    index.padding = 'PAD';
    const fat = Buffer.from(JSON.stringify(index).replace('"PAD"', `[${'0,'.repeat(30 * 1024 * 1024 - 1000)}0]`));
    expect(fat.length).toBeGreaterThan(59 * 1024 * 1024);
    const o = await importBoth(await writeTar(plain(entries.map((e, i) => (i === 2 ? { header: e.header, body: fat } : e)))), { layoutOnly: true, peakRss: true });
    expectRefused(o, ['E_BUNDLE_INVALID'], 'index.json', String(entries[2]!.body.length));
  });

  it('a zstd frame declaring the tar\'s size that decompresses to 512 MiB more: refused, memory flat, in seconds', async () => {
    const tar = await writeTar(plain(entries));
    const bomb = zstdFrame(tar, 512 << 20, tar.length);
    expect(bomb.length).toBeLessThan(tar.length + 64 * 1024);
    const t0 = Date.now();
    expectRefused(await importBoth(bomb, { peakRss: true }), ['E_BUNDLE_CORRUPT', 'E_BUNDLE_INVALID']);
    expect(Date.now() - t0).toBeLessThan(60_000);
  });

  it('an honest zstd frame with 128 MiB of zeros and then one byte after the archive: E_BUNDLE_INVALID, memory flat', async () => {
    const tar = await writeTar(plain(entries));
    const frame = zstdFrame(tar, 128 << 20, tar.length + (128 << 20) + 1, Buffer.from([1]));
    expectRefused(await importBoth(frame, { layoutOnly: true, peakRss: true }), ['E_BUNDLE_INVALID']);
    // The same without the stray byte is an intact bundle (trailing zeros are allowed, spec §7.6).
    const clean = zstdFrame(tar, 1 << 20, tar.length + (1 << 20));
    const o = await importBoth(clean, { landed: true, peakRss: true });
    expect(o.layout.code, o.layout.stderr).toBe(0);
    expect(o.dir!.code, o.dir!.stderr).toBe(0);
  });
});
