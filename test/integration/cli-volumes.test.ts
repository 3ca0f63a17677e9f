// `ferry export --split`: a bundle cut into volumes for file shares, each a whole
// bundle of its own, and the readers taking one, several, all (in any order) or
// the .sha256 list. Real registry, real files, real sha256sum.
import { execFile } from 'node:child_process';
import { copyFile, mkdir, readdir, readFile, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { BundleSource } from '../../src/transports/bundle/reader.js';
import type { BundleMetadata } from '../../src/transports/bundle/metadata.js';
import { runFerry } from '../support/cli.js';
import { blobsOf } from '../support/images.js';
import { skopeoInspectDigest, skopeoInspectRaw } from '../support/skopeo.js';
import { Rng } from '../support/prng.js';
import { type CliEnv, expectationsOf, ferryOk, flipByteInBlob, imagesList, jsonOf, serveAndCheck, writeList } from './cli-fixture.js';

const run = promisify(execFile);

let env: CliEnv;
let list: string;
let split: number;
/** The volumes of the uncompressed split export, in index order. */
let volumes: string[];
let metas: BundleMetadata[];

interface Receipt { images: { origin: string; status: string; error?: { code: string; message: string } }[] }
interface ErrorDoc { error: { code: string; message: string; details: Record<string, unknown> } }

beforeAll(async () => {
  env = await startEnv();
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  // The whole bundle first, to choose a cap that gives several volumes: room for the head and the largest layer.
  const whole = env.path('whole.tar');
  await ferryOk(['export', '-f', list, '-o', whole, '--cache', env.path('cache'), ...env.net, '-q']);
  const meta = JSON.parse(await readFile(`${whole}.ferry.json`, 'utf8')) as BundleMetadata;
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
    const whole = JSON.parse(await readFile(join(dir, 'rel.ferry.json'), 'utf8')) as BundleMetadata;
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

  it('refuses a cap below the head or the largest layer, naming the blob', async () => {
    const r = await runFerry(['export', '-f', list, '-o', env.path('tiny.tar'), '--split', '2K', '--cache', env.path('cache'), ...env.net, '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_USAGE);
    const tooSmall = jsonOf<ErrorDoc>(r).error;
    expect(tooSmall.message).toContain('too small');
    // Room for the head, one byte short of the largest layer's entry.
    const headBytes = tooSmall.details['headBytes'] as number;
    const largest = Math.max(...metas[0]!.blobs.filter((b) => b.kind === 'layer').map((b) => b.size));
    const r2 = await runFerry(['export', '-f', list, '-o', env.path('small.tar'), '--split', String(headBytes + 512 + largest - 1), '--cache', env.path('cache'), ...env.net, '--json']);
    expect(r2.code).toBe(EXIT_STATUS.E_USAGE);
    expect(jsonOf<ErrorDoc>(r2).error.message).toMatch(/layer sha256:[0-9a-f]{64} .* does not fit/);
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
    const r = await runFerry(['import', ...given, '--to', 'registry-layout', dir, '--json']);
    expect(r.code).not.toBe(0);
    const msg = `volume ${k + 1} of ${volumes.length} (${basename(volumes[k]!)}) is missing`;
    expect(r.stderr + r.stdout).toContain(msg);
    const receipts = await readdir(join(dir, 'ferry-receipts'));
    const receipt = JSON.parse(await readFile(join(dir, 'ferry-receipts', receipts[0]!), 'utf8')) as Receipt;
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
