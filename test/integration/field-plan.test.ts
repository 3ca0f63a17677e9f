// `ferry plan`: the numbers before the transfer window, from manifests only.
// Checked against sizes computed independently from the seeded corpus, and
// against what a real export then writes and caches.
import { createHash } from 'node:crypto';
import { stat } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Image } from '../support/images.js';
import { runFerry } from '../support/cli.js';
import { startRegistry } from '../support/registry.js';
import { cliSchemaRef, schemaErrors } from '../support/schemas.js';
import { StorageWriter } from '../bench/storage-writer.js';
import { CONFIG_MAX_BYTES } from '../../src/transports/bundle/bundle-head.js';
import { type CliEnv, expectedDigests, ferryOk, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';

interface PlanDoc {
  images: { reference: string; digest: string; bytes: number; uniqueBytes: number; sharedBytes: number; platforms: string[] }[];
  totals: { images: number; blobs: number; manifests: number; referencedBytes: number; uniqueBytes: number; sharedBytes: number };
  cache: { dir: string; blobs: number; bytes: number; partialBytes: number };
  delta?: { omittedBlobs: number; omittedBytes: number };
  fetch: { blobs: number; bytes: number };
  bundle: { storedBytes: number; approxFileBytes: number };
  disk: { export: number; import: number };
  split?: { volumeBytes: number; volumes: number };
}

let env: CliEnv;
let list: string;
const manifestDigests = new Set<string>();

beforeAll(async () => {
  env = await startCliEnv(0xf1e1d);
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  for (const e of env.corpus.entries) {
    const a = e.artifact;
    manifestDigests.add(a.digest);
    if (a.kind === 'index') a.manifests.forEach((m) => manifestDigests.add(m.digest));
  }
}, 120_000);
afterAll(async () => env?.stop());

/** One artifact's own bytes: its manifests and every blob, each once. */
function artifactBytes(e: (typeof env.corpus.entries)[number]): number {
  const seen = new Map<string, number>();
  const addImage = (m: Image) => {
    seen.set(m.digest, m.size);
    for (const b of m.blobs) seen.set(b.digest, b.size);
  };
  const a = e.artifact;
  if (a.kind === 'index') {
    seen.set(a.digest, a.size);
    a.manifests.forEach(addImage);
  } else addImage(a);
  return [...seen.values()].reduce((n, s) => n + s, 0);
}

describe('ferry plan', () => {
  it('sizes every image, the unique and shared bytes, and what to fetch into an empty cache', async () => {
    const cache = env.path('empty-cache');
    const plan = jsonOf<PlanDoc>(await ferryOk(['plan', '-f', list, '--cache', cache, '--split', '1M', ...env.net, '--json']));
    const expected = expectedDigests(env.corpus);
    const blobBytes = [...expected].filter(([d]) => !manifestDigests.has(d)).reduce((n, [, s]) => n + s, 0);

    expect(plan.totals.images).toBe(env.corpus.refs.length);
    expect(plan.totals.uniqueBytes).toBe([...expected.values()].reduce((n, s) => n + s, 0));
    expect(plan.totals.blobs + plan.totals.manifests).toBe(expected.size);
    expect(plan.fetch).toEqual({ blobs: plan.totals.blobs, bytes: blobBytes });
    expect(plan.cache).toMatchObject({ blobs: 0, bytes: 0, partialBytes: 0 });
    // Shared: config and layer blobs that two or more listed references need (two tags of one image share all of theirs).
    const users = new Map<string, { size: number; n: number }>();
    for (const e of env.corpus.entries) {
      const blobs = new Map<string, number>();
      for (const m of e.artifact.kind === 'index' ? e.artifact.manifests : [e.artifact]) for (const b of m.blobs) blobs.set(b.digest, b.size);
      for (let r = 0; r < e.refs.length; r++) for (const [d, size] of blobs) users.set(d, { size, n: (users.get(d)?.n ?? 0) + 1 });
    }
    const shared = [...users.values()].filter((u) => u.n > 1).reduce((n, u) => n + u.size, 0);
    expect(shared).toBeGreaterThan(0);
    expect(plan.totals.sharedBytes).toBe(shared);
    expect(plan.totals.referencedBytes).toBeGreaterThan(plan.totals.uniqueBytes);

    for (const e of env.corpus.entries) {
      for (const ref of e.refs) {
        const row = plan.images.find((i) => i.reference === `${env.corpus.host}/${ref}`);
        expect(row, ref).toBeDefined();
        expect(row!.digest).toBe(e.digest);
        expect(row!.bytes, ref).toBe(artifactBytes(e));
        expect(row!.uniqueBytes + row!.sharedBytes).toBe(row!.bytes);
      }
    }
    // Every volume repeats the head, so at least the bundle's size over the cap (cli-volumes checks the exact count against an export).
    expect(plan.split!.volumeBytes).toBe(1024 * 1024);
    expect(plan.split!.volumes).toBeGreaterThanOrEqual(Math.ceil(plan.bundle.approxFileBytes / (1024 * 1024)));
    expect(plan.disk.export).toBeGreaterThan(plan.fetch.bytes + plan.bundle.storedBytes - 1);
  }, 120_000);

  it('disk needed without --cache is the bundle alone: the export only reads the cache then (it said cache + bundle, twice the need)', async () => {
    const noCache = { env: { FERRY_CACHE: undefined, HOME: env.path('home') } };
    const plan = jsonOf<PlanDoc>(await ferryOk(['plan', '-f', list, ...env.net, '--json'], noCache));
    expect(plan.fetch.bytes).toBeGreaterThan(0);
    expect(plan.disk.export).toBe(plan.bundle.approxFileBytes);
    const human = await ferryOk(['plan', '-f', list, ...env.net], noCache);
    expect(human.stdout).toMatch(/disk needed: export about [\d.]+ [KMG]iB \(the bundle\)/);
    const cached = jsonOf<PlanDoc>(await ferryOk(['plan', '-f', list, '--cache', env.path('plan-cache'), ...env.net, '--json']));
    expect(cached.disk.export).toBeGreaterThan(cached.bundle.approxFileBytes);
  }, 120_000);

  it('after an export: everything is cached, the bundle estimate holds, and a delta against it is empty', async () => {
    const cache = env.path('cache');
    const bundle = env.path('B.tar');
    await ferryOk(['export', '-f', list, '-o', bundle, '--cache', cache, ...env.net, '-q']);
    const plan = jsonOf<PlanDoc>(await ferryOk(['plan', '-f', list, '--cache', cache, ...env.net, '--json']));
    expect(plan.cache.blobs).toBe(plan.totals.blobs);
    expect(plan.fetch).toEqual({ blobs: 0, bytes: 0 });
    const actual = (await stat(bundle)).size;
    expect(plan.bundle.approxFileBytes).toBeGreaterThanOrEqual(actual);
    expect(plan.bundle.approxFileBytes).toBeLessThan(actual * 1.1 + 64 * 1024);
    expect(plan.split).toBeUndefined();

    const delta = jsonOf<PlanDoc>(await ferryOk(['plan', '-f', list, '--since', bundle, '--cache', env.path('other-cache'), ...env.net, '--json']));
    expect(delta.delta).toEqual({ omittedBlobs: plan.totals.blobs, omittedBytes: plan.fetch.bytes + plan.cache.bytes });
    expect(delta.fetch).toEqual({ blobs: 0, bytes: 0 });
  }, 120_000);

  it('prints a table for people, and refuses a bad --split as a usage error (JSON with --json)', async () => {
    const human = await ferryOk(['plan', '-f', list, '--cache', env.path('c'), '--split', '4G', ...env.net]);
    for (const ref of env.corpus.hostRefs) expect(human.stdout).toContain(ref);
    expect(human.stdout).toMatch(/volumes of 4,294,967,296 bytes \(4\.00 GiB\): 1/);
    expect(human.stdout).toMatch(/disk needed: export about/);

    const bad = await runFerry(['plan', '-f', list, '--split', 'lots', ...env.net, '--json']);
    expect(bad.code).toBe(2);
    const doc = jsonOf<{ error: { code: string; message: string } }>(bad);
    expect(doc.error.code).toBe('E_USAGE');
    expect(doc.error.message).toContain('--split');
  }, 120_000);

  it('warns (also in --json) about a config larger than bundle readers accept, which export refuses before fetching (plan said nothing)', async () => {
    // A manifest whose config descriptor is over the cap, written straight into registry storage:
    // neither plan nor a refusing export reads the config, so it need not exist.
    const sha = (b: Buffer | string): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha('huge config'), size: CONFIG_MAX_BYTES + 1 },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha('a layer'), size: 1000 }],
    }));
    const storage = env.path('huge-config-storage');
    new StorageWriter(storage).put('limits/huge-config', { blobs: [], manifests: [{ digest: sha(manifest), bytes: manifest }], tags: ['1'] });
    const reg = await startRegistry({ storageDir: storage });
    try {
      const ref = `${reg.host}/limits/huge-config:1`;
      const net = ['--plain-http', reg.host, '--cache', env.path('huge-config-cache')];
      const over = /config sha256:[0-9a-f]{64} is 67108865 bytes \(64\.0 MiB\), more than the 67108864 bytes \(64\.0 MiB\) bundle readers accept/;
      const human = await ferryOk(['plan', ref, ...net]);
      expect(human.stderr).toMatch(new RegExp(`ferry: warning: the bundle: ${over.source}`));
      const json = await ferryOk(['plan', ref, ...net, '--json']);
      const doc = jsonOf<PlanDoc & { warnings?: string[] }>(json);
      expect(schemaErrors(cliSchemaRef('planResult'), doc)).toEqual([]);
      expect(doc.warnings ?? [], json.stdout).toHaveLength(1);
      expect(doc.warnings![0]).toMatch(over);
      // What plan warned about is what export refuses.
      const refused = await runFerry(['export', ref, '-o', env.path('huge-config.tar'), ...net, '--json']);
      expect(refused.code, refused.stdout).toBe(2);
      expect(jsonOf<{ error: { message: string } }>(refused).error.message).toMatch(over);
    } finally {
      await reg.stop();
    }
  }, 120_000);
});
