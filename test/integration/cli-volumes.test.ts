// `ferry export --split`: a bundle cut into volumes for file shares, each a whole
// bundle of its own, and the readers taking one, several, all (in any order) or
// the .sha256 list. Real registry, real files, real sha256sum.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFile, mkdir, open, readdir, readFile, stat, symlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { BundleSource } from '../../src/transports/bundle/reader.js';
import type { BundleBlob, BundleMetadata } from '../../src/transports/bundle/metadata.js';
import { runFerry } from '../support/cli.js';
import { blobsOf } from '../support/images.js';
import { skopeoInspectDigest, skopeoInspectRaw, skopeoOk } from '../support/skopeo.js';
import { Rng } from '../support/prng.js';
import { type CliEnv, expectationsOf, ferryOk, flipByteInBlob, imagesList, jsonOf, pushExtraImage, serveAndCheck, sha256File, tarOffsets, writeList } from './cli-fixture.js';
import { readMetadata } from '../support/bundle-metadata.js';

const run = promisify(execFile);

let env: CliEnv;
let list: string;
let split: number;
/** The volumes of the uncompressed split export, in index order. */
let volumes: string[];
let metas: BundleMetadata[];
/** The same images exported whole (not split). */
let whole: string;

interface Receipt { images: { origin: string; status: string; error?: { code: string; message: string } }[] }
interface ErrorDoc { error: { code: string; message: string; details: Record<string, unknown> } }

beforeAll(async () => {
  env = await startEnv();
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  // The whole bundle first, to choose a cap that gives several volumes: room for the head and the largest layer.
  whole = env.path('whole.tar');
  await ferryOk(['export', '-f', list, '-o', whole, '--cache', env.path('cache'), ...env.net, '-q']);
  const meta = await readMetadata(`${whole}.ferry.json`);
  const head = meta.blobs.filter((b) => b.kind !== 'layer').reduce((n, b) => n + b.size + 1024, 0) + 3 * (await stat(`${whole}.ferry.json`)).size + 16 * 1024;
  const largest = Math.max(...meta.blobs.filter((b) => b.kind === 'layer').map((b) => b.size));
  split = head + largest + 1024;
  const dir = env.path('split');
  await mkdir(dir);
  const r = await ferryOk(['export', '-f', list, '-o', join(dir, 'rel.tar'), '--split', String(split), '--cache', env.path('cache'), ...env.net, '--json']);
  volumes = jsonOf<{ volumes: { path: string }[] }>(r).volumes.map((v) => v.path);
  metas = await Promise.all(volumes.map((v) => BundleSource.peekMetadata(v)));
}, 240_000);
afterAll(async () => env?.stop());

async function startEnv(): Promise<CliEnv> {
  const { startCliEnv } = await import('./cli-fixture.js');
  return startCliEnv(0xe7);
}

/** Images (host-qualified origins) that need a layer of volume `i`. */
function imagesNeedingVolume(i: number): string[] {
  const layers = new Set<string>(metas[i]!.volume!.blobs.filter((d) => metas[i]!.blobs.find((b) => b.digest === d)!.kind === 'layer'));
  return env.corpus.entries.filter((e) => blobsOf(e.artifact).some((b) => layers.has(b.digest))).flatMap((e) => e.refs.map((r) => `${env.corpus.host}/${r}`));
}

/** A volume whose layers some, but not all, images need. */
function partialVolume(): number {
  const i = metas.findIndex((_, k) => k > 0 && imagesNeedingVolume(k).length > 0 && imagesNeedingVolume(k).length < env.corpus.refs.length);
  expect(i).toBeGreaterThan(0);
  return i;
}

describe('ferry export --split', () => {
  it('cuts the bundle into ≥3 whole volumes within the cap, named STEM.NNN.tar, with a sha256sum -c sidecar', async () => {
    expect(volumes.length).toBeGreaterThanOrEqual(3);
    const dir = dirname(volumes[0]!);
    expect(volumes.map((v) => basename(v))).toEqual(volumes.map((_, i) => `rel.${String(i).padStart(3, '0')}.tar`));
    for (const v of volumes) expect((await stat(v)).size).toBeLessThanOrEqual(split);
    const sums = await readFile(join(dir, 'rel.sha256'), 'utf8');
    expect(sums.trim().split('\n')).toHaveLength(volumes.length);
    const whole = await readMetadata(join(dir, 'rel.ferry.json'));
    expect(whole.volume).toBeUndefined();
    expect(whole.bundleId).toBe(metas[0]!.bundleId);
    const check = await run('sha256sum', ['-c', 'rel.sha256'], { cwd: dir });
    expect(check.stdout.trim().split('\n').every((l) => l.endsWith(': OK'))).toBe(true);
    // Every volume: the whole bundle's metadata (one bundle id), its own share of the layers, every manifest and config.
    const ids = new Set(metas.map((m) => m.bundleId));
    expect(ids.size).toBe(1);
    const layers = metas.flatMap((m) => m.volume!.blobs.filter((d) => m.blobs.find((b) => b.digest === d)!.kind === 'layer'));
    expect(new Set(layers).size).toBe(layers.length);
    expect(layers.length).toBe(metas[0]!.blobs.filter((b) => b.kind === 'layer').length);
    metas.forEach((m, i) => {
      expect(m.volume).toMatchObject({ index: i, count: volumes.length, bundleId: m.bundleId });
      for (const b of m.blobs) if (b.kind !== 'layer') expect(m.volume!.blobs).toContain(b.digest);
    });
  });

  it('is deterministic: the same images and --split give byte-identical volumes (also with zstd)', async () => {
    const dir = env.path('again');
    await mkdir(dir);
    await ferryOk(['export', '-f', list, '-o', join(dir, 'rel.tar'), '--split', String(split), '--cache', env.path('cache'), ...env.net, '-q']);
    expect(await readFile(join(dir, 'rel.sha256'), 'utf8')).toBe(await readFile(join(dirname(volumes[0]!), 'rel.sha256'), 'utf8'));
    for (const v of volumes) expect((await readFile(join(dir, basename(v)))).equals(await readFile(v))).toBe(true);

    const z1 = env.path('z1');
    const z2 = env.path('z2');
    for (const d of [z1, z2]) {
      await mkdir(d);
      await ferryOk(['export', '-f', list, '-o', join(d, 'rel.tar.zst'), '--split', String(split), '--cache', env.path('cache'), ...env.net, '-q']);
    }
    const names = (await readdir(z1)).filter((n) => n.endsWith('.tar.zst')).sort();
    expect(names).toEqual(volumes.map((_, i) => `rel.${String(i).padStart(3, '0')}.tar.zst`));
    expect(await readFile(join(z2, 'rel.sha256'), 'utf8')).toBe(await readFile(join(z1, 'rel.sha256'), 'utf8'));
    const head = await readFile(join(z1, names[0]!));
    expect(head.subarray(0, 4).toString('hex')).toBe('28b52ffd');
    await run('sha256sum', ['-c', 'rel.sha256'], { cwd: z2 });
    const r = await ferryOk(['verify', join(z1, 'rel.sha256'), '--json']);
    expect(jsonOf<{ volumes: { missing: unknown[] } }>(r).volumes.missing).toEqual([]);
  });

  it('refuses only a cap below what every volume carries (metadata, manifests, configs)', async () => {
    const r = await runFerry(['export', '-f', list, '-o', env.path('tiny.tar'), '--split', '2K', '--cache', env.path('cache'), ...env.net, '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_USAGE);
    const tooSmall = jsonOf<ErrorDoc>(r).error;
    expect(tooSmall.message).toContain('too small');
    expect(tooSmall.details['headBytes']).toBeGreaterThan(2048);
    // plan reads the cap the same way, and refuses it the same way.
    const plan = await runFerry(['plan', '-f', list, '--split', '2K', '--cache', env.path('cache'), ...env.net, '--json']);
    expect(plan.code).toBe(EXIT_STATUS.E_USAGE);
    expect(jsonOf<ErrorDoc>(plan).error.message).toContain('too small');
  });

  it('ferry plan --split counts the volumes the export wrote', async () => {
    const plan = jsonOf<{ split: { volumes: number } }>(await ferryOk(['plan', '-f', list, '--split', String(split), '--cache', env.path('cache'), ...env.net, '--json']));
    expect(plan.split.volumes).toBe(volumes.length);
  });
});

describe('reading volumes', () => {
  it('each volume verifies alone and says which one of how many it is', async () => {
    for (const [i, v] of volumes.entries()) {
      const r = await ferryOk(['verify', v, '--json']);
      const doc = jsonOf<{ blobs: number; volumes: { count: number; given: { volume: number }[]; missing: unknown[] } }>(r);
      expect(doc.volumes.count).toBe(volumes.length);
      expect(doc.volumes.given).toEqual([{ volume: i + 1, file: v }]);
      expect(doc.volumes.missing).toHaveLength(volumes.length - 1);
      expect(doc.blobs).toBe(metas[i]!.volume!.blobs.length);
    }
    const human = await ferryOk(['verify', volumes[1]!]);
    expect(human.stdout).toContain('OK');
    expect(human.stdout).toContain(`volumes: 2 of ${volumes.length} given`);
  });

  it('a file named twice (a whole bundle, a volume, a link to one) is a usage error naming it, before anything is written; named once, the run completes', async () => {
    const link = env.path('whole-link.tar');
    await symlink(whole, link);
    const layout = env.path('twice-layout');
    const cases = [
      { args: ['verify', whole, whole], first: whole, again: whole },
      { args: ['inspect', ...volumes, volumes[0]!], first: volumes[0]!, again: volumes[0]! },
      { args: ['import', whole, link, '--to', 'registry-layout', layout], first: whole, again: link },
      { args: ['push', volumes[1]!, ...volumes, '--to', `${env.reg.host}/twice`, ...env.net], first: volumes[1]!, again: volumes[1]! },
    ];
    for (const c of cases) {
      const r = await runFerry([...c.args, '--json']);
      expect(r.code, `${c.args[0]}: ${r.stdout} ${r.stderr}`).toBe(EXIT_STATUS.E_USAGE);
      const doc = jsonOf<ErrorDoc & { error: { exitStatus: number } }>(r);
      expect(doc.error.code).toBe('E_USAGE');
      expect(doc.error.exitStatus).toBe(EXIT_STATUS.E_USAGE);
      expect(doc.error.message).toContain(`${c.again}${c.again === c.first ? '' : ` (the same file as ${c.first})`} is given twice`);
      expect(doc.error.details).toMatchObject({ file: c.first, files: [c.first, c.again] });
    }
    // Nothing was written, and nothing was pushed.
    expect(await stat(layout).then(() => true, () => false)).toBe(false);
    const catalog = await (await fetch(`${env.reg.url}/v2/_catalog?n=1000`)).json() as { repositories: string[] };
    expect(catalog.repositories.length).toBeGreaterThan(0);
    expect(catalog.repositories.filter((r) => r.startsWith('twice/'))).toEqual([]);
    // Each named once: the same commands complete.
    await ferryOk(['verify', whole]);
    await ferryOk(['inspect', ...volumes]);
    const imported = jsonOf<Receipt>(await ferryOk(['import', link, '--to', 'registry-layout', layout, '--json']));
    expect(imported.images.every((i) => i.status === 'done')).toBe(true);
  });

  it('a quoted glob is expanded by ferry (scripts, ssh command lines): the whole set verifies', async () => {
    const r = jsonOf<{ volumes: { given: unknown[]; missing: unknown[] } }>(await ferryOk(['verify', join(dirname(volumes[0]!), 'rel.*.tar'), '--json']));
    expect(r.volumes.given).toHaveLength(volumes.length);
    expect(r.volumes.missing).toEqual([]);
  });

  it('all volumes in shuffled order import into a registry layout the real registry serves with the original digests', async () => {
    // Reversed, then one rotated: never index order.
    const shuffled = [...volumes].reverse();
    const rng = new Rng(0xe7e7);
    shuffled.push(...shuffled.splice(0, rng.int(1, shuffled.length - 1)));
    expect(shuffled).not.toEqual(volumes);
    const dir = env.path('layout');
    const r = await ferryOk(['import', ...shuffled, '--to', 'registry-layout', dir, '--json']);
    const receipt = jsonOf<Receipt>(r);
    expect(receipt.images.every((i) => i.status === 'done')).toBe(true);
    expect(receipt.images).toHaveLength(env.corpus.refs.length);
    await serveAndCheck(dir, expectationsOf(env.corpus));
    // The sidecar alone means "the set it lists"; inspect reads only the head.
    const ins = await ferryOk(['inspect', join(dirname(volumes[0]!), 'rel.sha256')]);
    expect(ins.stdout).toContain(`volumes: ${volumes.map((_, i) => i + 1).join(', ')} of ${volumes.length} given`);
  });

  it('push takes the .sha256 list: every image lands in the real registry with its original digest', async () => {
    const r = await ferryOk(['push', join(dirname(volumes[0]!), 'rel.sha256'), '--to', `${env.reg.host}/mirror`, ...env.net, '--receipt', env.path('push.json'), '--json']);
    expect(jsonOf<Receipt>(r).images.every((i) => i.status === 'done')).toBe(true);
    for (const x of expectationsOf(env.corpus)) {
      const got = x.ref.startsWith('sha256:') ? (await skopeoInspectRaw(`${env.reg.host}/mirror/${x.repo}@${x.ref}`)).digest : await skopeoInspectDigest(`${env.reg.host}/mirror/${x.repo}:${x.ref}`);
      expect(got, `${x.repo} ${x.ref}`).toBe(x.digest);
    }
  });

  it('a missing volume: exactly the images that need it fail, named with the volume and its file; the rest import', async () => {
    const k = partialVolume();
    const broken = new Set(imagesNeedingVolume(k));
    const given = volumes.filter((_, i) => i !== k).reverse();
    const dir = env.path('layout-partial');
    const receiptFile = env.path('partial-receipt.json');
    const r = await runFerry(['import', ...given, '--to', 'registry-layout', dir, '--receipt', receiptFile, '--json']);
    expect(r.code).not.toBe(0);
    const msg = `volume ${k + 1} of ${volumes.length} (${basename(volumes[k]!)}) is missing`;
    expect(r.stderr + r.stdout).toContain(msg);
    const receipt = JSON.parse(await readFile(receiptFile, 'utf8')) as Receipt;
    for (const img of receipt.images) {
      if (broken.has(img.origin)) {
        expect(img.status, img.origin).toBe('failed');
        expect(img.error!.message).toContain(msg);
        expect(img.error!.code).toBe('E_BLOB_MISSING');
      } else {
        expect(img.status, img.origin).toBe('done');
      }
    }
    await serveAndCheck(dir, expectationsOf(env.corpus, env.corpus.entries.filter((e) => !e.refs.some((ref) => broken.has(`${env.corpus.host}/${ref}`)))));

    // Through the sidecar, with the file gone from beside it: the same message, and verify fails too.
    const copy = env.path('partial-share');
    await mkdir(copy);
    for (const [i, v] of volumes.entries()) if (i !== k) await copyFile(v, join(copy, basename(v)));
    await copyFile(join(dirname(volumes[0]!), 'rel.sha256'), join(copy, 'rel.sha256'));
    const vr = await runFerry(['verify', join(copy, 'rel.sha256'), '--json']);
    expect(vr.code).toBe(EXIT_STATUS.E_BLOB_MISSING);
    const doc = jsonOf<ErrorDoc>(vr);
    expect(doc.error.message).toContain(msg);
    for (const img of broken) expect(doc.error.message).toContain(img);
  });

  it('a corrupted volume: the digest error names the volume and the blob; the sidecar names the damaged file', async () => {
    const k = partialVolume();
    const layer = metas[k]!.volume!.blobs.find((d) => metas[k]!.blobs.find((b) => b.digest === d)!.kind === 'layer')!;
    const share = env.path('bad-share');
    await mkdir(share);
    for (const v of volumes) await copyFile(v, join(share, basename(v)));
    await copyFile(join(dirname(volumes[0]!), 'rel.sha256'), join(share, 'rel.sha256'));
    const bad = join(share, basename(volumes[k]!));
    await flipByteInBlob(bad, layer);

    const alone = await runFerry(['verify', bad, '--json']);
    expect(alone.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    const doc = jsonOf<ErrorDoc>(alone);
    expect(doc.error.message).toContain(`volume ${k + 1} of ${volumes.length} (${basename(bad)})`);
    expect(doc.error.message).toMatch(new RegExp(`blob ${layer} hashes to sha256:[0-9a-f]{64}`));

    const all = await runFerry(['import', ...volumes.filter((_, i) => i !== k), bad, '--to', 'registry-layout', env.path('layout-bad'), '--json']);
    expect(all.code).not.toBe(0);
    expect(all.stderr + all.stdout).toContain(`volume ${k + 1} of ${volumes.length} (${basename(bad)})`);
    expect(all.stderr + all.stdout).toContain(layer);

    const viaList = await runFerry(['verify', join(share, 'rel.sha256'), '--json']);
    expect(viaList.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    expect(jsonOf<ErrorDoc>(viaList).error.message).toContain(`volume ${k + 1} of ${volumes.length} (${basename(bad)}) does not match its sha256 in rel.sha256`);
    const sums = await run('sha256sum', ['-c', 'rel.sha256'], { cwd: share }).catch((e: { stdout: string }) => e);
    expect(sums.stdout).toContain(`${basename(bad)}: FAILED`);
  });
});

/** Layers (whole or in part) a volume's metadata says it holds. */
function layersOf(m: BundleMetadata): Set<string> {
  const kinds = new Map(m.blobs.map((b) => [b.digest as string, b.kind]));
  return new Set<string>([...m.volume!.blobs.filter((d) => kinds.get(d) === 'layer'), ...(m.volume!.parts ?? []).map((p) => p.digest)]);
}

describe('joining volumes', () => {
  it('export --from bundle:STEM.sha256 joins the set into the one bundle an unsplit export writes, byte for byte', async () => {
    const joined = env.path('joined.tar');
    await ferryOk(['export', '--from', `bundle:${join(dirname(volumes[0]!), 'rel.sha256')}`, '-o', joined, '--cache', env.path('cache-join'), '-q']);
    const whole = env.path('whole-again.tar');
    await ferryOk(['export', '-f', list, '-o', whole, '--cache', env.path('cache'), ...env.net, '-q']);
    expect((await readFile(joined)).equals(await readFile(whole))).toBe(true);
    // One volume alone cannot be joined into the whole: the missing ones are named.
    const r = await runFerry(['export', '--from', `bundle:${volumes[1]!}`, '-o', env.path('half.tar'), '--cache', env.path('cache-join'), '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_BLOB_MISSING);
    expect(r.stdout).toContain(`volume 1 of ${volumes.length}`);
  });
});

describe('a split bundle as the base of a delta', () => {
  it('any volume, the .sha256 list and STEM.ferry.json name the same base and give the same delta', async () => {
    // The next release: the same images plus one more, so the delta holds exactly that image's blobs.
    await pushExtraImage(env.reg.url, 'next/tool', '2.0', 0x77);
    const next = await writeList(env.path('next.list'), `${imagesList(env.corpus)}${env.corpus.host}/next/tool:2.0\n`);
    const dir = dirname(volumes[0]!);
    const bases = [volumes[volumes.length - 1]!, join(dir, 'rel.sha256'), join(dir, 'rel.ferry.json')];
    const deltas: Buffer[] = [];
    const deltaFiles: string[] = [];
    for (const [i, base] of bases.entries()) {
      const out = env.path(`next-delta-${i}.tar`);
      deltaFiles.push(out);
      const r = jsonOf<{ delta: { bases: { bundleId: string; metadataDigest: string }[]; omittedBlobs: number } }>(
        await ferryOk(['export', '-f', next, '--since', base, '-o', out, '--cache', env.path('cache'), ...env.net, '--json']),
      );
      expect(r.delta.bases, base).toEqual([{ bundleId: metas[0]!.bundleId, metadataDigest: await sha256File(join(dir, 'rel.ferry.json')) }]);
      expect(r.delta.omittedBlobs).toBe(metas[0]!.blobs.filter((b) => b.kind === 'config' || b.kind === 'layer').length);
      deltas.push(await readFile(out));
    }
    expect(deltas[1]!.equals(deltas[0]!)).toBe(true);
    expect(deltas[2]!.equals(deltas[0]!)).toBe(true);

    // merge takes the split base as its .sha256 list, and a split delta too: the full release, byte for byte.
    const full = env.path('next-full.tar');
    await ferryOk(['export', '-f', next, '-o', full, '--cache', env.path('cache'), ...env.net, '-q']);
    const merged = env.path('next-merged.tar');
    await ferryOk(['merge', join(dir, 'rel.sha256'), deltaFiles[0]!, '-o', merged, '-q']);
    expect((await readFile(merged)).equals(await readFile(full))).toBe(true);
    const splitDelta = env.path('next-delta-split');
    await mkdir(splitDelta);
    await ferryOk(['export', '-f', next, '--since', join(dir, 'rel.sha256'), '-o', join(splitDelta, 'd.tar'), '--split', String(split), '--cache', env.path('cache'), ...env.net, '-q']);
    const merged2 = env.path('next-merged-2.tar');
    await ferryOk(['merge', join(dir, 'rel.sha256'), join(splitDelta, 'd.sha256'), '-o', merged2, '-q']);
    expect((await readFile(merged2)).equals(await readFile(full))).toBe(true);
  });
});

describe('a layer larger than a volume is cut across volumes', () => {
  let cap: number;
  let cut: string[];
  let cutMetas: BundleMetadata[];
  let largest: BundleBlob;
  /** A volume holding a continued part (of layer `x`) whose loss some images survive. */
  let k: number;
  let x: BundleBlob;

  beforeAll(async () => {
    const layers = metas[0]!.blobs.filter((b) => b.kind === 'layer');
    largest = layers.reduce((a, b) => (b.size > a.size ? b : a));
    // The head allowance of the first export, and room for a quarter of the largest layer only: several layers are cut.
    cap = split - largest.size - 1024 + Math.floor(largest.size / 4);
    const dir = env.path('cut');
    await mkdir(dir);
    const r = await ferryOk(['export', '-f', list, '-o', join(dir, 'rel.tar'), '--split', String(cap), '--cache', env.path('cache'), ...env.net, '--json']);
    cut = jsonOf<{ volumes: { path: string }[] }>(r).volumes.map((v) => v.path);
    cutMetas = await Promise.all(cut.map((v) => BundleSource.peekMetadata(v)));
    // The base layer is in every image: a volume holding only a part of a layer fewer images need shows "exactly those".
    k = cutMetas.findIndex((m, i) => (m.volume!.parts ?? []).some((p) => p.index > 0) && imagesNeedingCutVolume(i).length < env.corpus.refs.length);
    x = layers.find((l) => l.digest === cutMetas[k]?.volume!.parts!.find((p) => p.index > 0)!.digest)!;
  }, 240_000);

  function imagesNeedingCutVolume(i: number): string[] {
    const layers = layersOf(cutMetas[i]!);
    return env.corpus.entries.filter((e) => blobsOf(e.artifact).some((b) => layers.has(b.digest))).flatMap((e) => e.refs.map((r) => `${env.corpus.host}/${r}`));
  }

  it('in consecutive byte ranges, one per volume, every volume within the cap; plan counts the same volumes; the cut is deterministic', async () => {
    expect(k).toBeGreaterThan(0);
    for (const v of cut) expect((await stat(v)).size).toBeLessThanOrEqual(cap);
    const parts = cutMetas.flatMap((m) => (m.volume!.parts ?? []).filter((p) => p.digest === largest.digest).map((p) => ({ ...p, volume: m.volume!.index })));
    expect(parts.length).toBeGreaterThanOrEqual(2);
    let offset = 0;
    parts.forEach((p, i) => {
      expect(p).toMatchObject({ index: i, count: parts.length, offset });
      expect(p.volume).toBe(parts[0]!.volume + i);
      offset += p.size;
    });
    expect(offset).toBe(largest.size);
    // Layers that fit a volume stay whole: each is in exactly one volume.
    const whole = cutMetas.flatMap((m) => m.volume!.blobs.filter((d) => m.blobs.find((b) => b.digest === d)!.kind === 'layer'));
    expect(new Set(whole).size).toBe(whole.length);
    const cutLayers = new Set(cutMetas.flatMap((m) => (m.volume!.parts ?? []).map((p) => p.digest)));
    expect(whole.filter((d) => cutLayers.has(d))).toEqual([]);
    expect(whole.length + cutLayers.size).toBe(metas[0]!.blobs.filter((b) => b.kind === 'layer').length);
    await run('sha256sum', ['-c', 'rel.sha256'], { cwd: dirname(cut[0]!) });

    const plan = jsonOf<{ split: { volumes: number } }>(await ferryOk(['plan', '-f', list, '--split', String(cap), '--cache', env.path('cache'), ...env.net, '--json']));
    expect(plan.split.volumes).toBe(cut.length);

    const again = env.path('cut-again');
    await mkdir(again);
    await ferryOk(['export', '-f', list, '-o', join(again, 'rel.tar'), '--split', String(cap), '--cache', env.path('cache'), ...env.net, '-q']);
    expect(await readFile(join(again, 'rel.sha256'), 'utf8')).toBe(await readFile(join(dirname(cut[0]!), 'rel.sha256'), 'utf8'));
  });

  it('each volume verifies alone, its parts against their own digests; skopeo still reads a volume holding parts', async () => {
    for (const [i, v] of cut.entries()) {
      const doc = jsonOf<{ volumes: { given: { volume: number }[] } }>(await ferryOk(['verify', v, '--json']));
      expect(doc.volumes.given).toEqual([{ volume: i + 1, file: v }]);
    }
    // Part entries live outside blobs/: skopeo's oci-archive unpacks the volume and ignores them.
    const web = env.corpus.entries.find((e) => e.repo === 'apps/web' && e.tags.includes('v1'))!;
    const raw = await skopeoOk(['inspect', '--raw', `oci-archive:${cut[k]!}:${env.corpus.host}/apps/web:v1`]);
    expect(`sha256:${createHash('sha256').update(raw.stdoutBytes).digest('hex')}`).toBe(web.digest);
  });

  it('all volumes in shuffled order import into a registry layout the real registry serves with the original digests', async () => {
    const shuffled = [...cut].reverse();
    shuffled.push(...shuffled.splice(0, new Rng(0xc07).int(1, shuffled.length - 1)));
    expect(shuffled).not.toEqual(cut);
    const dir = env.path('cut-layout');
    const receipt = jsonOf<Receipt>(await ferryOk(['import', ...shuffled, '--to', 'registry-layout', dir, '--json']));
    expect(receipt.images.every((i) => i.status === 'done')).toBe(true);
    expect(receipt.images).toHaveLength(env.corpus.refs.length);
    await serveAndCheck(dir, expectationsOf(env.corpus));
  });

  it('a missing volume holding a part: exactly the images that need its layers fail, the message naming the volume and the part', async () => {
    expect(k).toBeGreaterThan(0);
    const broken = new Set(imagesNeedingCutVolume(k));
    expect(broken.size).toBeGreaterThan(0);
    expect(broken.size).toBeLessThan(env.corpus.refs.length);
    const dir = env.path('cut-partial');
    const receiptFile = env.path('cut-partial-receipt.json');
    const r = await runFerry(['import', ...cut.filter((_, i) => i !== k), '--to', 'registry-layout', dir, '--receipt', receiptFile, '--json']);
    expect(r.code).not.toBe(0);
    const part = cutMetas[k]!.volume!.parts!.find((p) => p.digest === x.digest)!;
    const msg = `volume ${k + 1} of ${cut.length} (${basename(cut[k]!)}) is missing: it holds part ${part.index + 1} of ${part.count} of layer ${x.digest}`;
    expect(r.stderr + r.stdout).toContain(msg);
    const receipt = JSON.parse(await readFile(receiptFile, 'utf8')) as Receipt;
    const needX = new Set(env.corpus.entries.filter((e) => blobsOf(e.artifact).some((b) => b.digest === x.digest)).flatMap((e) => e.refs.map((ref) => `${env.corpus.host}/${ref}`)));
    expect(needX.size).toBeGreaterThan(0);
    for (const img of receipt.images) {
      expect(img.status, img.origin).toBe(broken.has(img.origin) ? 'failed' : 'done');
      if (broken.has(img.origin)) expect(img.error!.code).toBe('E_BLOB_MISSING');
    }
    expect(receipt.images.some((i) => needX.has(i.origin) && i.error?.message.includes(msg))).toBe(true);
    await serveAndCheck(dir, expectationsOf(env.corpus, env.corpus.entries.filter((e) => !e.refs.some((ref) => broken.has(`${env.corpus.host}/${ref}`)))));
  });

  it('a corrupted part is found by verify of its one volume alone, naming the volume, the part and the layer', async () => {
    const p = cutMetas[k]!.volume!.parts!.find((q) => q.digest === x.digest)!;
    const bad = env.path('cut-bad');
    await mkdir(bad);
    const file = join(bad, basename(cut[k]!));
    await copyFile(cut[k]!, file);
    const at = (await tarOffsets(file)).get(`ferry-parts/sha256/${x.digest.slice(7)}.${p.index}`)!;
    expect(at).toBeDefined();
    const fh = await open(file, 'r+');
    try {
      const b = Buffer.alloc(1);
      await fh.read(b, 0, 1, at.offset + Math.floor(at.size / 2));
      b[0] = b[0]! ^ 0x01;
      await fh.write(b, 0, 1, at.offset + Math.floor(at.size / 2));
    } finally {
      await fh.close();
    }
    const r = await runFerry(['verify', file, '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    const doc = jsonOf<ErrorDoc>(r);
    expect(doc.error.message).toContain(`volume ${k + 1} of ${cut.length} (${basename(file)}): part ${p.index + 1} of ${p.count} of layer ${x.digest}`);
    expect(doc.error.message).toMatch(/hashes to sha256:[0-9a-f]{64}/);
  });
});
