// `ferry import --to registry-layout` end to end: the layout ferry writes is served
// by the REAL registry and every image checked with skopeo and the deep validator.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { FERRY_BIN, runFerry, testStateHome } from '../support/cli.js';
import type { Image } from '../support/images.js';
import {
  catalog, type CliEnv, entry, expectationsOf, ferryOk, flipByteInBlob, imagesList, jsonOf, manifestStatus, pushExtraImage, rewriteTar, serveAndCheck, sha256File, startCliEnv, writeList,
} from './cli-fixture.js';

interface Receipt {
  bundleId: string;
  target: { kind: string; location: string };
  images: { origin: string; repository: string; tag?: string; digest: string; status: 'done' | 'failed'; error?: { code: string; message: string } }[];
  blobs: { copied: number; skipped: number; mounted: number; bytesCopied: number };
  manifests: number;
  receipt?: string;
}

let env: CliEnv;
let bundle: string;
let bundleBytes: Buffer;
let oldBundle: string;
let legacy: Image;
let listFile: string;

beforeAll(async () => {
  env = await startCliEnv(0xe3);
  legacy = await pushExtraImage(env.reg.url, 'legacy/app', '0.9', 0xe3e3);
  listFile = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', listFile, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  bundleBytes = await readFile(bundle);
  // The release before: one image that is gone from the new list, one that stays.
  oldBundle = env.path('old.tar');
  await ferryOk(['export', `${env.reg.host}/legacy/app:0.9`, `${env.reg.host}/library/base-os:1.0`, '-o', oldBundle, '--cache', env.path('cache'), ...env.net, '-q']);
});
afterAll(async () => env?.stop());

describe('ferry import --to registry-layout', () => {
  it('from a file: the real registry serves every image with its original digest; --json prints the receipt it wrote', async () => {
    const dir = env.path('layout-file');
    const r = await ferryOk(['import', bundle, '--to', 'registry-layout', dir, '--json']);
    const receipt = jsonOf<Receipt>(r);
    expect(receipt.target.kind).toBe('registry-layout');
    expect(receipt.images).toHaveLength(env.corpus.refs.length);
    expect(receipt.images.every((i) => i.status === 'done')).toBe(true);
    expect(receipt.blobs.copied).toBe(env.corpus.blobs.size);
    // The receipt file is what --json printed (minus its own path).
    expect(receipt.receipt).toBeDefined();
    // An audit record of whoever ran it, in their state folder: not in the target, not in the current folder.
    expect(receipt.receipt!.startsWith(join(testStateHome(), 'ferry', 'receipts'))).toBe(true);
    const onDisk = JSON.parse(await readFile(receipt.receipt!, 'utf8')) as Receipt;
    expect(onDisk.bundleId).toBe(receipt.bundleId);
    expect(onDisk.images).toEqual(receipt.images);
    await serveAndCheck(dir, expectationsOf(env.corpus), async (reg) => {
      expect(await catalog(reg.url)).toEqual([...env.corpus.repos.keys()].sort());
    });
  });

  it('from stdin (cat B | ferry import - …) gives the same layout, and re-running writes 0 blobs', async () => {
    const dir = env.path('layout-stdin');
    const first = jsonOf<Receipt>(await ferryOk(['import', '-', '--to', 'registry-layout', dir, '--json'], { input: bundleBytes }));
    expect(first.images.filter((i) => i.status === 'done')).toHaveLength(env.corpus.refs.length);
    expect(first.blobs.copied).toBeGreaterThan(0);
    const again = jsonOf<Receipt>(await ferryOk(['import', bundle, '--to', 'registry-layout', dir, '--json']));
    expect(again.blobs.copied).toBe(0);
    expect(again.blobs.bytesCopied).toBe(0);
    expect(again.images.every((i) => i.status === 'done')).toBe(true);
    await serveAndCheck(dir, expectationsOf(env.corpus));
  });

  it('the progress line a field engineer sees ends at exactly the planned blobs and bytes', async () => {
    const dir = env.path('layout-progress');
    const r = await ferryOk(['import', bundle, '--to', 'registry-layout', dir]);
    const plan = /import: \d+ images, (\d+) unique blobs, (\S+ \S+)/.exec(r.stderr);
    expect(plan, r.stderr).not.toBeNull();
    expect(Number(plan![1])).toBe(env.corpus.blobs.size);
    const last = /^import: done 100%: (\S+ \S+) moved, (\d+)\/(\d+) blobs/m.exec(r.stderr);
    expect(last, r.stderr).not.toBeNull();
    // Shared blobs land in several repositories; they still count once, so it reads 11/11, not 14/11.
    expect(last![2]).toBe(last![3]);
    expect(last![3]).toBe(plan![1]);
    // A fresh layout: every planned byte moved, none skipped.
    expect(last![1]).toBe(plan![2]);
    expect(r.stderr).not.toContain('skipped');
  });

  it('export -o - | import - (the ssh pipe pattern): same bytes as the file export, and the layout serves every image', async () => {
    const dir = env.path('layout-pipe');
    const exporter = spawn(process.execPath, [FERRY_BIN, 'export', '-f', listFile, '-o', '-', '--cache', env.path('cache-pipe'), ...env.net, '-q'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const importer = spawn(process.execPath, [FERRY_BIN, 'import', '-', '--to', 'registry-layout', dir, '-q'], { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, XDG_STATE_HOME: testStateHome() } });
    const hash = createHash('sha256');
    exporter.stdout.on('data', (c: Buffer) => hash.update(c));
    exporter.stdout.pipe(importer.stdin);
    const errs: string[] = [];
    exporter.stderr.on('data', (c: Buffer) => errs.push(`export: ${c.toString()}`));
    importer.stderr.on('data', (c: Buffer) => errs.push(`import: ${c.toString()}`));
    const exit = (p: ReturnType<typeof spawn>) => new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
    const [e, i] = await Promise.all([exit(exporter), exit(importer)]);
    expect([e, i], errs.join('')).toEqual([0, 0]);
    expect(`sha256:${hash.digest('hex')}`).toBe(await sha256File(bundle));
    await serveAndCheck(dir, expectationsOf(env.corpus));
  });

  it('merges into a layout that already holds an older release', async () => {
    const dir = env.path('layout-merge');
    await ferryOk(['import', oldBundle, '--to', 'registry-layout', dir, '-q']);
    await ferryOk(['import', bundle, '--to', 'registry-layout', dir, '-q']);
    await serveAndCheck(dir, [...expectationsOf(env.corpus), { repo: 'legacy/app', ref: '0.9', digest: legacy.digest }], async (reg) => {
      expect(await catalog(reg.url)).toEqual([...env.corpus.repos.keys(), 'legacy/app'].sort());
    });
  });

  it('--prune leaves exactly the bundle\'s images (catalog and blobs)', async () => {
    const dir = env.path('layout-prune');
    await ferryOk(['import', oldBundle, '--to', 'registry-layout', dir, '-q']);
    const legacyLayer = join(dir, 'docker/registry/v2/blobs/sha256', legacy.layers[0]!.digest.slice(7, 9), legacy.layers[0]!.digest.slice(7), 'data');
    expect((await stat(legacyLayer)).size).toBe(legacy.layers[0]!.size);
    await ferryOk(['import', bundle, '--to', 'registry-layout', dir, '--prune', '-q']);
    await expect(stat(legacyLayer)).rejects.toThrow(/ENOENT/);
    await serveAndCheck(dir, expectationsOf(env.corpus), async (reg) => {
      expect(await catalog(reg.url)).toEqual([...env.corpus.repos.keys()].sort());
      expect(await manifestStatus(reg.url, 'legacy/app', '0.9')).toBe(404);
    });
  });

  it('a corrupted bundle: images whose blobs verified are imported, the broken one is not tagged, exit non-zero', async () => {
    const web = entry(env.corpus, 'apps/web');
    const badLayer = (web.artifact as Image).layers[1]!;
    const bad = env.path('bad.tar');
    await writeFileFrom(bundleBytes, bad);
    await flipByteInBlob(bad, badLayer.digest);
    const dir = env.path('layout-bad');
    const receiptFile = env.path('bad-receipt.json');
    const r = await runFerry(['import', bad, '--to', 'registry-layout', dir, '--receipt', receiptFile, '--json']);
    expect(r.code).not.toBe(0);
    const err = jsonOf<{ error: { code: string; message: string } }>(r).error;
    expect(r.code).toBe(EXIT_STATUS[err.code as keyof typeof EXIT_STATUS]);
    expect(err.message).toContain(badLayer.digest);
    expect(err.message).toContain(`${env.corpus.host}/apps/web:v1`);
    const receipt = JSON.parse(await readFile(receiptFile, 'utf8')) as Receipt;
    const failed = receipt.images.filter((i) => i.status === 'failed').map((i) => i.origin);
    expect(failed).toEqual([`${env.corpus.host}/apps/web:v1`]);
    const good = env.corpus.entries.filter((e) => !(e.repo === 'apps/web' && e.tags.length > 0));
    await serveAndCheck(dir, expectationsOf(env.corpus, good), async (reg) => {
      expect(await manifestStatus(reg.url, 'apps/web', 'v1')).toBe(404);
    });
  });
});

describe('ferry import of a bundle that lost one blob entry', () => {
  // Known failure (src/transports/bundle/reader.ts, see the CLI test report): the reader
  // stops at the first unexpected entry ("entry … is out of order"), so every image fails,
  // not just the one that needs the lost blob.
  it('imports every image that does not need the lost blob; the error names the missing digest', async () => {
    const web = entry(env.corpus, 'apps/web');
    const lost = (web.artifact as Image).layers[1]!;
    const holed = env.path('holed.tar');
    await rewriteTar(bundle, holed, (name) => name === `blobs/sha256/${lost.digest.slice(7)}`);
    const dir = env.path('layout-holed');
    const receiptFile = env.path('holed-receipt.json');
    const r = await runFerry(['import', holed, '--to', 'registry-layout', dir, '--receipt', receiptFile, '--json']);
    expect(r.code).not.toBe(0);
    const err = jsonOf<{ error: { code: string; message: string } }>(r).error;
    expect(err.message).toContain(lost.digest);
    const receipt = JSON.parse(await readFile(receiptFile, 'utf8')) as Receipt;
    expect(receipt.images.filter((i) => i.status === 'failed').map((i) => i.origin)).toEqual([`${env.corpus.host}/apps/web:v1`]);
    const good = env.corpus.entries.filter((e) => !(e.repo === 'apps/web' && e.tags.length > 0));
    await serveAndCheck(dir, expectationsOf(env.corpus, good));
  });
});

async function writeFileFrom(bytes: Buffer, path: string): Promise<void> {
  const { writeFile } = await import('node:fs/promises');
  await writeFile(path, bytes);
}
