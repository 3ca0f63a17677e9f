// `ferry export` and `ferry inspect` end to end, as a field engineer runs them:
// a real registry holding the seeded corpus, an images.list with comments, the
// bundle read back independently (tar-stream), and skopeo as the reader.
import { mkdir, readFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skopeo } from '../support/skopeo.js';
import { validateDirImage } from '../support/validate.js';
import type { Index } from '../support/images.js';
import {
  childFor, type CliEnv, entry, expectedDigests, ferryOk, imagesList, jsonOf, readBundleTar, sha256File, startCliEnv, type TarEntryInfo, writeList,
} from './cli-fixture.js';

let env: CliEnv;
let list: string;
let bundle: string;
let bundleEntries: TarEntryInfo[];

beforeAll(async () => {
  env = await startCliEnv(0xe1);
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  bundleEntries = await readBundleTar(bundle);
});
afterAll(async () => env?.stop());

function checkBlobSet(entries: TarEntryInfo[], expected: Map<string, number>): void {
  const blobEntries = entries.filter((e) => e.name.startsWith('blobs/sha256/') && e.type === 'file');
  const names = blobEntries.map((e) => `sha256:${e.name.slice('blobs/sha256/'.length)}`);
  // Each blob exactly once, and exactly the referenced set.
  expect(new Set(names).size).toBe(names.length);
  expect([...names].sort()).toEqual([...expected.keys()].sort());
  for (const e of blobEntries) {
    const d = `sha256:${e.name.slice('blobs/sha256/'.length)}`;
    expect(e.digest, `content of ${e.name}`).toBe(d);
    expect(e.size, `size of ${e.name}`).toBe(expected.get(d));
  }
  const others = entries.filter((e) => !(e.name.startsWith('blobs/sha256/') && e.type === 'file')).map((e) => e.name.replace(/\/$/, ''));
  expect(others.sort()).toEqual(['blobs', 'blobs/sha256', 'ferry.json', 'index.json', 'oci-layout']);
}

describe('ferry export -f images.list', () => {
  it('writes exactly the unique referenced blobs and manifests, each once, each verifying', () => {
    const expected = expectedDigests(env.corpus);
    // The shared base layer is referenced by most images but must be stored once.
    expect(expected.size).toBeLessThan([...env.corpus.entries].reduce((n, e) => n + (e.artifact.kind === 'index' ? 1 + e.artifact.manifests.reduce((k, m) => k + 1 + m.blobs.length, 0) : 1 + e.artifact.blobs.length), 0));
    checkBlobSet(bundleEntries, expected);
  });

  it('index.json names every listed reference (tags and the digest-only image)', () => {
    const index = JSON.parse(bundleEntries.find((e) => e.name === 'index.json')!.body!.toString('utf8')) as { manifests: { digest: string; annotations?: Record<string, string> }[] };
    const named = new Map(index.manifests.map((m) => [m.annotations?.['org.opencontainers.image.ref.name'], m.digest]));
    for (const e of env.corpus.entries) {
      for (const ref of e.refs) expect(named.get(`${env.corpus.host}/${ref}`), ref).toBe(e.digest);
    }
    expect(index.manifests).toHaveLength(env.corpus.refs.length);
  });

  it('writes .tar.zst with the same content', async () => {
    const out = env.path('B.tar.zst');
    await ferryOk(['export', '-f', list, '-o', out, '--cache', env.path('cache-zst'), ...env.net, '-q']);
    const head = (await readFile(out)).subarray(0, 4);
    expect(head.readUInt32LE(0)).toBe(0xfd2fb528);
    const entries = await readBundleTar(out);
    checkBlobSet(entries, expectedDigests(env.corpus));
  });

  it('is deterministic: another cache and the list in reverse order give a byte-identical file', async () => {
    const reversed = await writeList(env.path('reversed.list'), imagesList(env.corpus, 'reverse'));
    const again = env.path('B-again.tar');
    await ferryOk(['export', '-f', reversed, '-o', again, '--cache', env.path('cache-2'), ...env.net, '-q']);
    expect(await sha256File(again)).toBe(await sha256File(bundle));
  });

  it('--platform linux/amd64 keeps only the amd64 child of an index', async () => {
    const multi = entry(env.corpus, 'multi/arch');
    const index = multi.artifact as Index;
    const amd = childFor(index, 'amd64');
    const arm = childFor(index, 'arm64');
    const out = env.path('amd64.tar');
    await ferryOk(['export', `${env.corpus.host}/${multi.refs[0]!}`, '-o', out, '--platform', 'linux/amd64', '--cache', env.path('cache-p'), ...env.net, '-q']);
    const doc = jsonOf<{ images: { reference: string; digest: string; platforms: string[] }[] }>(await ferryOk(['inspect', out, '--json']));
    expect(doc.images).toHaveLength(1);
    expect(doc.images[0]!.digest).toBe(amd.digest);
    expect(doc.images[0]!.platforms).toEqual(['linux/amd64']);
    const names = (await readBundleTar(out)).map((e) => e.name);
    expect(names).toContain(`blobs/sha256/${amd.digest.slice(7)}`);
    expect(names).not.toContain(`blobs/sha256/${arm.digest.slice(7)}`);
    expect(names).not.toContain(`blobs/sha256/${index.digest.slice(7)}`);
  });

  it('real skopeo reads the bundle as oci-archive: and gets the original digests', async () => {
    for (const [repo, all] of [['apps/web', false], ['multi/arch', true]] as const) {
      const e = entry(env.corpus, repo);
      const out = env.path(`skopeo-${repo.replace(/\//g, '_')}`);
      await mkdir(out);
      const r = await skopeo(['copy', ...(all ? ['--all'] : []), `oci-archive:${bundle}:${env.corpus.host}/${e.refs[0]!}`, `dir:${out}`]);
      expect(r.code, r.stderr).toBe(0);
      const walked = await validateDirImage(out, { expectDigest: e.digest, requireAllChildren: all });
      expect(walked.digest).toBe(e.digest);
    }
  });

  it('stdout stays clean for the human summary and names the bundle id', async () => {
    const out = env.path('B2.tar');
    const r = await ferryOk(['export', '-f', list, '-o', out, '--cache', env.path('cache'), ...env.net]);
    expect(r.stdout).toContain(out);
    expect(r.stdout).toMatch(/bundle id sha256:[0-9a-f]{64}/);
  });
});

describe('ferry inspect', () => {
  it('--json gives images, platforms, sizes and the dedup figures', async () => {
    const doc = jsonOf<{
      images: { reference: string; digest: string; mediaType: string; platforms: string[]; size: number }[];
      blobs: number; storedBytes: number; referencedBytes: number; sharedBytes: number; dedupRatio: number; compressed: boolean; bundleId: string;
    }>(await ferryOk(['inspect', bundle, '--json']));
    expect(doc.compressed).toBe(false);
    expect(doc.bundleId).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(doc.images).toHaveLength(env.corpus.refs.length);
    const expected = expectedDigests(env.corpus);
    expect(doc.blobs).toBe(expected.size);
    expect(doc.storedBytes).toBe([...expected.values()].reduce((n, s) => n + s, 0));
    expect(doc.storedBytes).toBeLessThan(doc.referencedBytes);
    expect(doc.sharedBytes).toBeGreaterThan(0);
    expect(doc.dedupRatio).toBeGreaterThan(1);
    expect(doc.dedupRatio).toBeCloseTo(doc.referencedBytes / doc.storedBytes, 6);
    for (const e of env.corpus.entries) {
      for (const ref of e.refs) {
        const img = doc.images.find((i) => i.reference === `${env.corpus.host}/${ref}`);
        expect(img, ref).toBeDefined();
        expect(img!.digest).toBe(e.digest);
        expect(img!.mediaType).toBe(e.mediaType);
        expect(img!.size).toBeGreaterThan(0);
        const plats = e.artifact.kind === 'index'
          ? e.artifact.manifests.map((m) => [m.platform.os, m.platform.architecture, m.platform.variant].filter(Boolean).join('/')).sort()
          : [[e.artifact.platform.os, e.artifact.platform.architecture, e.artifact.platform.variant].filter(Boolean).join('/')];
        expect([...img!.platforms].sort()).toEqual(plats);
      }
    }
  });

  it('the human table names every image', async () => {
    const r = await ferryOk(['inspect', bundle]);
    for (const ref of env.corpus.hostRefs) expect(r.stdout).toContain(ref);
    expect(r.stdout).toMatch(/dedup ratio \d+\.\d\d/);
  });
});
