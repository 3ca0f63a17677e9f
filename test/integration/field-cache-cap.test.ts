// The blob cache's size cap: an export trims the cache to --cache-max (or
// FERRY_CACHE_MAX) once its bundle is written, least recently used blobs
// first, never the blobs it used itself; a rerun against the trimmed cache still
// writes the identical bundle. Real docker-registry on loopback, real CLI as a child.
import { readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { ferryOk, jsonOf, sha256File } from './cli-fixture.js';

interface ExportDoc {
  bundleId: string;
  fetchedBytes: number;
  cache: { dir: string; maxBytes: number | null; bytes: number; blobs: number; evictedBlobs: number; evictedBytes: number; keptInUseBytes: number };
}

let tmp: TempDir;
let reg: RegistryHandle;
let older: Image;
let newer: Image;
let n = 0;
const path = (name: string) => join(tmp.path, `${String(++n).padStart(2, '0')}-${name}`);

beforeAll(async () => {
  tmp = makeTempDir('ferry-cache-cap-');
  reg = await startRegistry();
  const rng = new Rng(0xcac4e);
  // Random content: gzip cannot shrink it, so each layer really is ~300 KB in the cache.
  const layers = async (k: number) => Promise.all(Array.from({ length: k }, () => makeLayer(rng, { size: 300_000, compressible: false, files: 1 })));
  older = makeImage({ layers: await layers(3), mediaTypes: 'oci', labels: { release: 'older' } });
  newer = makeImage({ layers: await layers(2), mediaTypes: 'oci', labels: { release: 'newer' } });
  await pushArtifact(reg.url, 'cap/older', older, ['1']);
  await pushArtifact(reg.url, 'cap/newer', newer, ['1']);
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

const bytesOf = (img: Image) => img.size + img.blobs.reduce((s, b) => s + b.size, 0);
const digestsOf = (img: Image) => [img.digest, ...img.blobs.map((b) => b.digest)];

/** What the cache directory really holds: blob files and partial files, as the cap counts them. */
async function cacheFiles(cache: string): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const dir of ['blobs/sha256', 'partial']) {
    let names: string[] = [];
    try {
      names = await readdir(join(cache, dir));
    } catch { /* not created */ }
    for (const name of names) if (/^[0-9a-f]{64}$/.test(name)) out.set(`${dir}/${name}`, (await stat(join(cache, dir, name))).size);
  }
  return out;
}

async function exportJson(image: string, out: string, cache: string, extra: string[] = [], env: Record<string, string> = {}): Promise<ExportDoc> {
  return jsonOf<ExportDoc>(await ferryOk(['export', `${reg.host}/${image}:1`, '-o', out, '--cache', cache, '--plain-http', reg.host, '--json', ...extra], { env }));
}

describe('blob cache size cap', () => {
  it('evicts the least recently used blobs down to --cache-max, keeps the run\'s own, and reruns give identical bundles', async () => {
    const cache = path('cache');
    const cap = bytesOf(newer) + 100_000;
    // Sanity of the set-up: the older image's layers cannot survive next to the newer image under this cap.
    expect(bytesOf(older) + bytesOf(newer) - older.layers[0]!.size).toBeGreaterThan(cap);

    const olderBundle = path('older.tar');
    const first = await exportJson('cap/older', olderBundle, cache, ['--cache-max', 'unlimited']);
    expect(first.cache).toMatchObject({ maxBytes: null, evictedBlobs: 0 });

    const newerBundle = path('newer.tar');
    const second = await exportJson('cap/newer', newerBundle, cache, ['--cache-max', String(cap)]);
    const files = await cacheFiles(cache);
    const onDisk = [...files.values()].reduce((s, x) => s + x, 0);
    expect(second.cache.maxBytes).toBe(cap);
    expect(second.cache.bytes).toBe(onDisk);
    expect(onDisk).toBeLessThanOrEqual(cap);
    expect(second.cache.evictedBlobs).toBeGreaterThanOrEqual(older.layers.length);
    for (const d of digestsOf(newer)) expect(files.has(`blobs/sha256/${d.slice(7)}`), `newer ${d} kept`).toBe(true);
    for (const l of older.layers) expect(files.has(`blobs/sha256/${l.digest.slice(7)}`), `older ${l.digest} evicted`).toBe(false);

    // Everything the newer image needs is still cached: nothing is fetched, the bundle is the same bytes.
    const newerAgain = path('newer-again.tar');
    const again = await exportJson('cap/newer', newerAgain, cache, ['--cache-max', String(cap)]);
    expect(again.fetchedBytes).toBe(0);
    expect(again.cache.evictedBlobs).toBe(0);
    expect(again.bundleId).toBe(second.bundleId);
    expect(await sha256File(newerAgain)).toBe(await sha256File(newerBundle));

    // The evicted image is fetched again, byte-identical; now the newer one's layers are the least recently used.
    // The cap comes from the environment this time.
    const olderAgain = path('older-again.tar');
    const third = await exportJson('cap/older', olderAgain, cache, [], { FERRY_CACHE_MAX: String(bytesOf(older) + 100_000) });
    expect(third.fetchedBytes).toBeGreaterThan(0);
    expect(await sha256File(olderAgain)).toBe(await sha256File(olderBundle));
    const after = await cacheFiles(cache);
    expect(third.cache.bytes).toBe([...after.values()].reduce((s, x) => s + x, 0));
    for (const d of digestsOf(older)) expect(after.has(`blobs/sha256/${d.slice(7)}`), `older ${d} kept`).toBe(true);
    for (const l of newer.layers) expect(after.has(`blobs/sha256/${l.digest.slice(7)}`), `newer ${l.digest} evicted`).toBe(false);
  });

  it('a cap smaller than one export keeps exactly that export\'s blobs and says so', async () => {
    const cache = path('cache-small');
    await exportJson('cap/older', path('o.tar'), cache, ['--cache-max', '0']);
    const r = await ferryOk(['export', `${reg.host}/cap/newer:1`, '-o', path('n.tar'), '--cache', cache, '--plain-http', reg.host, '--cache-max', '1K']);
    const files = await cacheFiles(cache);
    expect([...files.keys()].sort()).toEqual(digestsOf(newer).map((d) => `blobs/sha256/${d.slice(7)}`).sort());
    expect(r.stdout).toMatch(/^cache .*: .* of 1\.00 KiB; \d+ least recently used blobs \(.*\) evicted; over the cap: .* are blobs this export/m);
  });

  it('refuses a --cache-max that is not a size before fetching anything', async () => {
    const { runFerry } = await import('../support/cli.js');
    const cache = path('cache-bad');
    const r = await runFerry(['export', `${reg.host}/cap/newer:1`, '-o', path('x.tar'), '--cache', cache, '--plain-http', reg.host, '--cache-max', 'lots', '--json']);
    expect(r.code).not.toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { code: 'E_USAGE' } });
    expect(await cacheFiles(cache)).toEqual(new Map());
  });
});
