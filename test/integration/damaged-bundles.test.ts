// Bundles damaged on the way, through the real CLI. One cut short (an interrupted copy, a
// full disk, a dropped transfer): every image whose blobs all arrived lands in every kind of
// target (and push), the error names exactly the images and blobs that did not arrive,
// verify's repair report lists just those, and a rerun with the whole file completes; also
// on stdin, for a zstd bundle cut mid-frame, and for volumes of a split bundle. And a volume
// whose part bytes were edited together with its record of them.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tar from 'tar-stream';
import { DecompressStream } from 'zstd-napi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { runFerry, type FerryResult } from '../support/cli.js';
import type { CorpusEntry } from '../support/corpus.js';
import { manifestsOf } from '../support/images.js';
import { startRegistry } from '../support/registry.js';
import { validateDirImage, validateRegistryImage } from '../support/validate.js';
import { BUNDLE_METADATA_ID, cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { readTar, writeTar } from '../unit/bundle/fixture.js';
import { type CliEnv, expectationsOf, ferryOk, flipByteInBlob, rewriteTar, imagesList, jsonOf, manifestStatus, serveAndCheck, startCliEnv, tarOffsets, writeList } from './cli-fixture.js';
import { type BundleMetadata, metadataOf, readMetadata } from '../support/bundle-metadata.js';

let env: CliEnv;
let list: string;
/** The whole uncompressed bundle, its bytes, and where each entry's content ends. */
let whole: string;
let bytes: Buffer;
let ends: Map<string, number>;
/** The last layer in stored order, and a cut in the middle of it: the images needing it fail, the others land. */
let lastLayer: string;
let cut: number;

interface Failure { image: string; code: string; message: string; digest?: string; file?: string; offset?: number }
interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint: string; details: { failures?: Failure[]; images?: string[]; blobs?: string[]; offset?: number; repairReport?: string } } }
interface Receipt { images: { origin: string; status: string; error?: { code: string } }[] }

beforeAll(async () => {
  env = await startCliEnv(0xe9);
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  whole = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', whole, '--cache', env.path('cache'), ...env.net, '-q']);
  bytes = await readFile(whole);
  ends = new Map([...(await tarOffsets(whole))].map(([name, at]) => [name, at.offset + at.size]));
  const meta = await readMetadata(`${whole}.ferry.json`);
  lastLayer = meta.blobs.filter((b) => b.kind === 'layer').at(-1)!.digest;
  const at = (await tarOffsets(whole)).get(entryName(lastLayer))!;
  cut = at.offset + Math.floor(at.size / 2);
}, 120_000);
afterAll(async () => env?.stop());

const entryName = (digest: string): string => `blobs/sha256/${digest.slice(7)}`;
const origins = (e: CorpusEntry): string[] => e.refs.map((r) => `${env.corpus.host}/${r}`);

/** Every blob (manifests included) an entry needs. */
function digestsOf(e: CorpusEntry): string[] {
  const out = new Set<string>();
  for (const m of manifestsOf(e.artifact)) {
    out.add(m.digest);
    if (m.kind === 'manifest') for (const b of m.blobs) out.add(b.digest);
  }
  return [...out];
}

/** The corpus entries whose every blob lies whole before tar byte `at`, and the others. */
function split(at: number): { landed: CorpusEntry[]; failed: CorpusEntry[] } {
  const whole = (e: CorpusEntry): boolean => digestsOf(e).every((d) => ends.get(entryName(d))! <= at);
  return { landed: env.corpus.entries.filter(whole), failed: env.corpus.entries.filter((e) => !whole(e)) };
}

async function cutCopy(name: string, length: number, from: Buffer = bytes): Promise<string> {
  const file = env.path(name);
  await writeFile(file, from.subarray(0, length));
  return file;
}

/** Exit 6, E_BUNDLE_TRUNCATED, the file named, and exactly `failed` listed, each with the blob it lacks. */
function expectCut(r: FerryResult, file: string, failed: CorpusEntry[], digest?: string): ErrorDoc['error'] {
  expect(r.code, `${r.stderr}\n${r.stdout}`).toBe(EXIT_STATUS.E_BUNDLE_TRUNCATED);
  expect(describeErrors(schemaErrors(cliSchemaRef('errorDocument'), jsonOf(r)))).toBe('');
  const doc = jsonOf<ErrorDoc>(r).error;
  expect(doc.code).toBe('E_BUNDLE_TRUNCATED');
  expect(doc.exitStatus).toBe(6);
  expect(doc.message).toContain(basename(file));
  // verify's hint is the repair round trip when it wrote a report.
  expect(doc.hint).toMatch(doc.details.repairReport ? /--repair/ : /copy (it|them) again/);
  const named = doc.details.failures?.map((f) => f.image) ?? [];
  expect(new Set(named)).toEqual(new Set(failed.flatMap(origins)));
  for (const f of doc.details.failures ?? []) {
    expect(f.code).toBe('E_BUNDLE_TRUNCATED');
    if (digest) expect(f.digest).toBe(digest);
    expect(f.message).toContain(f.digest);
  }
  return doc;
}

async function receiptOf(file: string): Promise<{ done: Set<string>; failed: Set<string> }> {
  const r = JSON.parse(await readFile(file, 'utf8')) as Receipt;
  return { done: new Set(r.images.filter((i) => i.status === 'done').map((i) => i.origin)), failed: new Set(r.images.filter((i) => i.status === 'failed').map((i) => i.origin)) };
}

describe('a bundle cut inside its last layer', () => {
  it('lands every other image in each kind of target and in a registry by push; a rerun with the whole file completes', async () => {
    const file = await cutCopy('cut.tar', cut);
    const { landed, failed } = split(cut);
    expect(failed.length).toBeGreaterThan(0);
    expect(landed.length).toBeGreaterThan(failed.length);
    const target = await startRegistry();
    try {
      const net = ['--plain-http', target.host];
      const kinds: Array<{ kind: string; dest: string; args: string[] }> = [
        { kind: 'registry-layout', dest: env.path('layout'), args: [] },
        { kind: 'skopeo-dir', dest: env.path('dirs'), args: [] },
        { kind: 'oci', dest: env.path('oci'), args: [] },
        { kind: 'docker-archive', dest: env.path('archive.tar'), args: [] },
        { kind: 'registry', dest: `${target.host}/imp`, args: net },
      ];
      for (const { kind, dest, args } of kinds) {
        const receipt = env.path(`${kind}.receipt.json`);
        const r = await runFerry(['import', file, '--to', kind, dest, ...args, '--receipt', receipt, '--json']);
        const doc = expectCut(r, file, failed, lastLayer);
        expect(doc.details.failures![0]!.message).toContain(`ends at byte ${cut} of ${bytes.length}`);
        const got = await receiptOf(receipt);
        expect(got.done, kind).toEqual(new Set(landed.flatMap(origins)));
        expect(got.failed, kind).toEqual(new Set(failed.flatMap(origins)));
      }
      const pushed = await runFerry(['push', file, '--to', `${target.host}/pushed`, ...net, '--receipt', env.path('push.json'), '--json']);
      expectCut(pushed, file, failed, lastLayer);

      // What landed, seen by readers independent of ferry; what did not, absent.
      await serveAndCheck(join(kinds[0]!.dest), expectationsOf(env.corpus, landed), async (reg) => {
        for (const x of expectationsOf(env.corpus, failed)) expect(await manifestStatus(reg.url, x.repo, x.ref), `${x.repo} ${x.ref}`).toBe(404);
      });
      for (const prefix of ['imp', 'pushed']) {
        for (const x of expectationsOf(env.corpus, landed)) expect((await validateRegistryImage(target.url, `${prefix}/${x.repo}`, x.ref)).digest).toBe(x.digest);
        for (const x of expectationsOf(env.corpus, failed)) expect(await manifestStatus(target.url, `${prefix}/${x.repo}`, x.ref)).toBe(404);
      }
      for (const e of env.corpus.entries) {
        for (const tag of e.tags.length > 0 ? e.tags : [undefined]) {
          const dir = join(kinds[1]!.dest, tag !== undefined ? `${e.repo}:${tag}` : `${e.repo}@${e.digest}`);
          if (landed.includes(e)) expect((await validateDirImage(dir, { expectDigest: e.digest, requireAllChildren: e.artifact.kind === 'index' })).digest).toBe(e.digest);
          else expect(existsSync(dir), dir).toBe(false);
        }
      }
      const index = JSON.parse(await readFile(join(kinds[2]!.dest, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
      expect(new Set(index.manifests.map((m) => m.digest))).toEqual(new Set(landed.map((e) => e.digest)));
      const archived = await archiveTags(kinds[3]!.dest);
      // A docker archive keeps the registry in its names (what the loaders show).
      expect(archived).toEqual(new Set(landed.flatMap((e) => e.tags.map((t) => `${env.corpus.host}/${e.repo}:${t}`))));

      // The whole file afterwards: every target completes (what landed is reused).
      for (const { kind, dest, args } of kinds) await ferryOk(['import', whole, '--to', kind, dest, ...args, '--receipt', env.path(`${kind}.again.json`), '-q']);
      await ferryOk(['push', whole, '--to', `${target.host}/pushed`, ...net, '--receipt', env.path('push-again.json'), '-q']);
      await serveAndCheck(kinds[0]!.dest, expectationsOf(env.corpus));
      for (const x of expectationsOf(env.corpus)) expect((await validateRegistryImage(target.url, `pushed/${x.repo}`, x.ref)).digest).toBe(x.digest);
    } finally {
      await target.stop();
    }
  });

  it('verify counts the other images as good and its repair report lists only the lost layer; the repair completes the import', async () => {
    const share = env.path('share');
    await mkdir(share);
    const file = join(share, 'rel.tar');
    await writeFile(file, bytes.subarray(0, cut));
    const { landed, failed } = split(cut);
    const r = await runFerry(['verify', file, '--json']);
    const doc = expectCut(r, file, failed, lastLayer);
    expect(doc.message).toContain(`${failed.flatMap(origins).length} of ${env.corpus.refs.length} images failed`);
    const report = JSON.parse(await readFile(join(share, 'rel.repair.json'), 'utf8')) as { blobs: { digest: string; problem: string; images: string[] }[] };
    expect(doc.details.repairReport).toBe(join(share, 'rel.repair.json'));
    expect(report.blobs.map((b) => [b.digest, b.problem])).toEqual([[lastLayer, 'truncated']]);
    expect(landed.length).toBeGreaterThan(0);

    const repair = env.path('repair.tar');
    await ferryOk(['export', '-f', list, '--repair', join(share, 'rel.repair.json'), '-o', repair, '--cache', env.path('cache-r'), ...env.net, '-q']);
    const layout = env.path('repaired-layout');
    await ferryOk(['import', file, repair, '--to', 'registry-layout', layout, '-q']);
    await ferryOk(['verify', file, repair, '-q']);
    await serveAndCheck(layout, expectationsOf(env.corpus));
  });

  it('read from stdin: the same images land, the same ones are named', async () => {
    const { landed, failed } = split(cut);
    const oci = env.path('stdin-oci');
    const receipt = env.path('stdin.json');
    const r = await runFerry(['import', '-', '--to', 'oci', oci, '--receipt', receipt, '--json'], { input: bytes.subarray(0, cut) });
    expectCut(r, 'stdin', failed, lastLayer);
    expect((await receiptOf(receipt)).done).toEqual(new Set(landed.flatMap(origins)));
    const index = JSON.parse(await readFile(join(oci, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    expect(new Set(index.manifests.map((m) => m.digest))).toEqual(new Set(landed.map((e) => e.digest)));
  });
});

describe('a bundle missing only its end', () => {
  it('the end-of-archive marker (or part of it) gone: every image lands, yet the run exits 6 saying the copy is incomplete; no repair report', async () => {
    for (const short of [1024, 1]) {
      const dir = env.path(`end-${short}`);
      await mkdir(dir);
      const file = join(dir, 'rel.tar');
      await writeFile(file, bytes.subarray(0, bytes.length - short));
      const layout = join(dir, 'layout');
      const r = await runFerry(['import', file, '--to', 'registry-layout', layout, '--receipt', join(dir, 'receipt.json'), '--json']);
      const doc = expectCut(r, file, []);
      expect(doc.message).toContain(`ends at byte ${bytes.length - short} of ${bytes.length}`);
      expect(doc.message).toContain('every blob arrived');
      expect(doc.details.images).toEqual([]);
      expect(doc.details.blobs).toEqual([]);
      expect((await receiptOf(join(dir, 'receipt.json'))).done).toEqual(new Set(env.corpus.entries.flatMap(origins)));
      const v = await runFerry(['verify', file, '--json']);
      expectCut(v, file, []);
      expect(existsSync(join(dir, 'rel.repair.json'))).toBe(false);
      if (short === 1024) await serveAndCheck(layout, expectationsOf(env.corpus));
    }
  });
});

describe('a zstd bundle cut inside its frame', () => {
  it('lands the images whose blobs the readable part holds, names the others', async () => {
    const z = env.path('Z.tar.zst');
    await ferryOk(['export', '-f', list, '-o', z, '--compression', 'zstd', '--cache', env.path('cache'), ...env.net, '-q']);
    const zbytes = await readFile(z);
    // Where an independent decoder (zstd-napi) stops on a cut copy: the tar bytes a reader can have. zstd hands
    // out whole blocks (128 KiB), so take the first cut, from the end, whose readable part lands some images and not others.
    let zcut = 0;
    let readable = 0;
    for (let k = 19; k > 0 && zcut === 0; k--) {
      const at = Math.floor((zbytes.length * k) / 20);
      const n = await decodedLength(zbytes.subarray(0, at));
      const { landed, failed } = split(n);
      if (landed.length > 0 && failed.length > 0) [zcut, readable] = [at, n];
    }
    expect(zcut).toBeGreaterThan(0);
    const file = await cutCopy('Zcut.tar.zst', zcut, zbytes);
    const { failed } = split(readable);
    const r = await runFerry(['import', file, '--to', 'oci', env.path('zoci'), '--receipt', env.path('z.json'), '--json']);
    const doc = expectCut(r, file, failed);
    expect(doc.details.failures![0]!.message).toContain('inside a zstd frame');
  });
});

describe('volumes of a split bundle', () => {
  let dir: string;
  let volumes: string[];
  let metas: BundleMetadata[];

  beforeAll(async () => {
    dir = env.path('split');
    await mkdir(dir);
    const meta = await readMetadata(`${whole}.ferry.json`);
    const largest = Math.max(...meta.blobs.filter((b) => b.kind === 'layer').map((b) => b.size));
    const headGuess = meta.blobs.filter((b) => b.kind !== 'layer').reduce((n, b) => n + b.size + 1024, 0) + 64 * 1024;
    const r = await ferryOk(['export', '-f', list, '-o', join(dir, 'rel.tar'), '--split', String(headGuess + largest + 2048), '--cache', env.path('cache'), ...env.net, '--json']);
    volumes = jsonOf<{ volumes: { path: string }[] }>(r).volumes.map((v) => v.path);
    expect(volumes.length).toBeGreaterThanOrEqual(3);
    metas = await Promise.all(volumes.map(async (v) => metadataOf(await readTarEntry(v, 'ferry.json'), v)));
  });

  /** The images needing a layer of volume `i`. */
  const needing = (i: number): CorpusEntry[] => {
    const layers = new Set<string>(metas[i]!.volume!.blobs.filter((d) => metas[i]!.blobs.find((b) => b.digest === d)!.kind === 'layer'));
    return env.corpus.entries.filter((e) => digestsOf(e).some((d) => layers.has(d)));
  };

  it('a volume cut inside its last layer, and the first volume cut inside its head: each fails only what it holds', async () => {
    const last = volumes.length - 1;
    const work = env.path('cutvols');
    await mkdir(work);
    for (const v of volumes) await copyFile(v, join(work, basename(v)));
    const lastFile = join(work, basename(volumes[last]!));
    const vbytes = await readFile(lastFile);
    const layers: string[] = metas[last]!.volume!.blobs.filter((d) => metas[last]!.blobs.find((b) => b.digest === d)!.kind === 'layer');
    const at = (await tarOffsets(lastFile)).get(entryName(layers.at(-1)!))!;
    await writeFile(lastFile, vbytes.subarray(0, at.offset + 100));
    const r = await runFerry(['import', ...volumes.map((v) => join(work, basename(v))), '--to', 'registry-layout', env.path('vlayout'), '--json']);
    const lost = env.corpus.entries.filter((e) => digestsOf(e).includes(layers.at(-1)!));
    expect(lost.length).toBeLessThan(env.corpus.entries.length);
    expectCut(r, lastFile, lost, layers.at(-1));
    expect(jsonOf<ErrorDoc>(r).error.details.failures![0]!.message, jsonOf<ErrorDoc>(r).error.message).toContain(`volume ${last + 1} of ${volumes.length}`);

    // The first volume cut inside its head (the rest comes from another volume), or even inside its metadata (its name
    // says which volume it is): only volume 1's layers are lost. Every image here needs one (the shared base layer).
    await copyFile(volumes[last]!, lastFile);
    const firstFile = join(work, basename(volumes[0]!));
    const metaEnd = [...(await tarOffsets(volumes[0]!))].find(([name]) => name === 'ferry.json')![1];
    const lost0 = needing(0);
    expect(lost0.length).toBeGreaterThan(0);
    for (const at of [metaEnd.offset + metaEnd.size + 700, metaEnd.offset + 1000]) {
      await writeFile(firstFile, (await readFile(volumes[0]!)).subarray(0, at));
      const receipt = env.path('v0.json');
      const layout0 = env.path('vlayout0');
      const r0 = await runFerry(['import', ...volumes.map((v) => join(work, basename(v))), '--to', 'registry-layout', layout0, '--receipt', receipt, '--json']);
      const doc = expectCut(r0, firstFile, lost0);
      expect(doc.details.failures![0]!.message).toContain(`volume 1 of ${volumes.length}`);
      expect((await receiptOf(receipt)).done).toEqual(new Set(env.corpus.entries.filter((e) => !lost0.includes(e)).flatMap(origins)));
      // The other volumes were read: their layers are written (as every good blob is), though no image could land.
      const hex = layers.at(-1)!.slice(7);
      expect(existsSync(join(layout0, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data'))).toBe(true);
    }
  });

  it('a volume missing only its end: every image lands, exit 6', async () => {
    const work = env.path('endvols');
    await mkdir(work);
    for (const v of volumes) await copyFile(v, join(work, basename(v)));
    const target = join(work, basename(volumes[1]!));
    const vb = await readFile(target);
    await writeFile(target, vb.subarray(0, vb.length - 1024));
    const receipt = join(work, 'receipt.json');
    const r = await runFerry(['import', ...volumes.map((v) => join(work, basename(v))), '--to', 'registry-layout', join(work, 'layout'), '--receipt', receipt, '--json']);
    const doc = expectCut(r, target, []);
    expect(doc.message).toContain(`volume 2 of ${volumes.length}`);
    expect((await receiptOf(receipt)).done).toEqual(new Set(env.corpus.entries.flatMap(origins)));
  });
});

describe('a damaged blob', () => {
  /** Images (host-qualified) that need `digest`. */
  const needing = (digest: string): string[] => env.corpus.entries.filter((e) => digestsOf(e).includes(digest)).flatMap(origins);

  it('every message names the blob, the images that need it, the file and what to do; a damaged config fails only its images', async () => {
    const meta = await readMetadata(`${whole}.ferry.json`);
    const layer = meta.blobs.filter((b) => b.kind === 'layer').at(-1)!.digest;
    // A config only one image needs (multi/tools' arm64 child has its own).
    const config = meta.blobs.filter((b) => b.kind === 'config').map((b) => b.digest).find((d) => needing(d).length === 1 && needing(layer).every((x) => !needing(d).includes(x)))!;
    expect(config).toBeDefined();
    const middle = meta.blobs.filter((b) => b.kind === 'layer').slice(0, -1).map((b) => b.digest).find((d) => needing(d).length === 1)!;
    expect(middle).toBeDefined();
    const cases: Array<{ name: string; digest: string; damage: (file: string) => Promise<void>; code: string }> = [
      { name: 'flipped-layer.tar', digest: layer, damage: (f) => flipByteInBlob(f, layer), code: 'E_DIGEST_MISMATCH' },
      { name: 'flipped-config.tar', digest: config, damage: (f) => flipByteInBlob(f, config), code: 'E_DIGEST_MISMATCH' },
      // An entry lost from the middle (the last one lost would be a cut).
      { name: 'holed.tar', digest: middle, damage: async (f) => { await rewriteTar(whole, f, (n) => n === entryName(middle)); }, code: 'E_BUNDLE_INVALID' },
    ];
    for (const c of cases) {
      const file = env.path(c.name);
      await copyFile(whole, file);
      await c.damage(file);
      const receipt = env.path(`${c.name}.json`);
      const r = await runFerry(['import', file, '--to', 'oci', env.path(`${c.name}-oci`), '--receipt', receipt, '--json']);
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(6);
      const doc = jsonOf<ErrorDoc>(r).error;
      const failures = doc.details.failures ?? [];
      expect(new Set(failures.map((f) => f.image)), c.name).toEqual(new Set(needing(c.digest)));
      for (const f of failures) {
        expect(f.code, c.name).toBe(c.code);
        expect(f.message, c.name).toContain(c.digest);
        expect(f.message, c.name).toContain(basename(file));
        expect(f.message, c.name).toContain(needing(c.digest)[0]);
      }
      expect(doc.hint, c.name).toBeTruthy();
      // The images that do not need the damaged blob land.
      expect((await receiptOf(receipt)).done, c.name).toEqual(new Set(env.corpus.entries.flatMap(origins).filter((o) => !needing(c.digest).includes(o))));
    }
  });
});

describe('a volume edited after export', () => {
  it('part bytes and digest edited: verify of that volume alone fails naming the volume and the part, against its copy of the cut or STEM.ferry.json', async () => {
    const dir = env.path('parts');
    await mkdir(dir);
    const meta = await readMetadata(`${whole}.ferry.json`);
    const head = meta.blobs.filter((b) => b.kind !== 'layer').reduce((n, b) => n + b.size + 1024, 0) + 64 * 1024;
    const largest = Math.max(...meta.blobs.filter((b) => b.kind === 'layer').map((b) => b.size));
    // Room for under half the largest layer: it is cut into parts.
    const r = await ferryOk(['export', '-f', list, '-o', join(dir, 'rel.tar'), '--split', String(head + Math.floor(largest / 2)), '--cache', env.path('cache'), ...env.net, '--json']);
    const volumes = jsonOf<{ volumes: { path: string }[] }>(r).volumes.map((v) => v.path);
    const raw = await Promise.all(volumes.map(async (v) => JSON.parse((await readTarEntry(v, 'ferry.json')).toString()) as VolumeDoc));
    const docs = await Promise.all(volumes.map(async (v) => metadataOf(await readTarEntry(v, 'ferry.json'), v)));
    const k = docs.findIndex((m) => (m.volume!.parts?.length ?? 0) > 0);
    expect(k).toBeGreaterThanOrEqual(0);
    const part = docs[k]!.volume!.parts![0]!;
    // Every volume and STEM.ferry.json carry the record of the whole cut, valid by the metadata schema.
    const stem = JSON.parse(await readFile(join(dir, 'rel.ferry.json'), 'utf8')) as VolumeDoc;
    expect(stem.split?.parts.length).toBeGreaterThanOrEqual(2);
    for (const doc of [stem, ...raw]) expect(describeErrors(schemaErrors(BUNDLE_METADATA_ID, doc))).toBe('');
    for (const doc of raw) expect(doc.split).toEqual(stem.split);
    const original = await readFile(volumes[k]!);
    // The unedited volume verifies alone (so each case below fails for its own reason).
    await ferryOk(['verify', volumes[k]!, '-q']);

    for (const both of [false, true]) {
      await writeFile(volumes[k]!, await editPart(original, part, both));
      const v = await runFerry(['verify', volumes[k]!, '--json']);
      expect(v.code, v.stderr).toBe(6);
      const doc = jsonOf<ErrorDoc>(v).error;
      // Its own record against its copy of the cut: E_BUNDLE_INVALID; both edited, against STEM.ferry.json beside it: E_DIGEST_MISMATCH.
      expect(doc.code).toBe(both ? 'E_DIGEST_MISMATCH' : 'E_BUNDLE_INVALID');
      expect(doc.message).toContain(`volume ${k + 1} of ${volumes.length}`);
      expect(doc.message).toContain(`part ${part.index + 1} of ${part.count} of layer ${part.digest}`);
      expect(doc.message).toContain(basename(volumes[k]!));
    }
    await writeFile(volumes[k]!, original);
  });
});

/** A volume's ferry.json as stored (any format version): only the part digests are edited. */
interface VolumeDoc { volume: { parts?: { partDigest: string }[] }; split?: { parts: { partDigest: string }[] } }

/** The volume with its part's bytes flipped and the part's digest changed to match, in its own record and (with `both`) in its copy of the cut. */
async function editPart(volume: Buffer, part: { digest: string; index: number; partDigest: string }, both: boolean): Promise<Buffer> {
  const name = `ferry-parts/sha256/${part.digest.slice(7)}.${part.index}`;
  const entries = await readTar(volume);
  const doc = JSON.parse(entries[0]!.body.toString()) as VolumeDoc;
  const body = Buffer.from(entries.find((e) => e.header.name === name)!.body);
  body[10] = body[10]! ^ 0xff;
  const now = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  for (const p of doc.volume.parts ?? []) if (p.partDigest === part.partDigest) p.partDigest = now;
  if (both) for (const p of doc.split?.parts ?? []) if (p.partDigest === part.partDigest) p.partDigest = now;
  return writeTar(entries.map((e, i) => ({
    name: e.header.name, type: e.header.type as 'file' | 'directory',
    ...(e.header.type === 'file' ? { body: i === 0 ? Buffer.from(`${JSON.stringify(doc, null, 2)}\n`) : e.header.name === name ? body : e.body } : {}),
  })));
}

/** How many bytes zstd-napi decodes from a (cut) zstd stream before it runs out. */
async function decodedLength(z: Buffer): Promise<number> {
  let n = 0;
  await pipeline(Readable.from([z]), new DecompressStream(), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) n += c.length;
  }).catch(() => undefined);
  return n;
}

/** RepoTags of a docker-archive's manifest.json. */
async function archiveTags(file: string): Promise<Set<string>> {
  const doc = JSON.parse((await readTarEntry(file, 'manifest.json')).toString()) as Array<{ RepoTags: string[] | null }>;
  return new Set(doc.flatMap((e) => e.RepoTags ?? []));
}

async function readTarEntry(file: string, name: string): Promise<Buffer> {
  const ex = tar.extract();
  let found: Buffer | undefined;
  const done = (async () => {
    for await (const e of ex) {
      const parts: Buffer[] = [];
      for await (const c of e as AsyncIterable<Buffer>) if (e.header.name === name) parts.push(c);
      if (e.header.name === name) found = Buffer.concat(parts);
    }
  })();
  await Promise.all([pipeline(Readable.from([await readFile(file)]), ex), done]);
  if (!found) throw new Error(`${name} not in ${file}`);
  return found;
}
