// Sizes read the way a share's cap is written: `--split 1MB` is 1,000,000 bytes
// (decimal), `--split 1MiB` and `1M` are 1,048,576 (binary). Before, `MB` was read as
// MiB and a "100 MB" share got 102,725,632-byte volumes. A layer larger than the cap is
// cut into parts that fill each volume to the cap, so the largest volume shows which
// reading was taken. Real docker-registry on loopback, the built CLI as a child.
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { ferryOk, jsonOf } from './cli-fixture.js';

interface SizeReport { from: string; given?: string; bytes: number | null; units: string; unit?: string }
interface Sized { sizes: { split?: SizeReport; cacheMax: SizeReport } }

let tmp: TempDir;
let reg: RegistryHandle;
let image: Image;
let n = 0;
const path = (name: string) => join(tmp.path, `${String(++n).padStart(2, '0')}-${name}`);

beforeAll(async () => {
  tmp = makeTempDir('ferry-units-');
  reg = await startRegistry();
  // Random content, so the layer is its full 2.6 MB in the bundle: three volumes under either reading of 1 MB.
  image = makeImage({ layers: [await makeLayer(new Rng(0x517e), { size: 2_600_000, compressible: false, files: 1 })], mediaTypes: 'oci' });
  await pushArtifact(reg.url, 'units/app', image, ['1']);
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

async function volumeSizes(dir: string): Promise<number[]> {
  const names = (await readdir(dir)).filter((f) => /\.\d{3}\.tar$/.test(f)).sort();
  return Promise.all(names.map(async (f) => (await stat(join(dir, f))).size));
}

async function splitExport(size: string): Promise<{ sizes: number[]; doc: Sized; stderr: string }> {
  const dir = path(`split-${size}`);
  const jsonDir = path(`json-${size}`);
  await Promise.all([mkdir(dir), mkdir(jsonDir)]);
  const args = ['export', `${reg.host}/units/app:1`, '-o', join(dir, 'rel.tar'), '--split', size, '--cache', path('cache'), '--plain-http', reg.host];
  const human = await ferryOk(args);
  const json = await ferryOk([...args.slice(0, 3), join(jsonDir, 'rel.tar'), ...args.slice(4), '--json']);
  const doc = jsonOf<Sized>(json);
  const errors = schemaErrors(cliSchemaRef('exportResult'), doc);
  expect(errors, describeErrors(errors)).toEqual([]);
  return { sizes: await volumeSizes(dir), doc, stderr: human.stderr };
}

describe('size units', () => {
  it('--split 1MB writes volumes of at most 1,000,000 bytes and says it read decimal MB', async () => {
    const { sizes, doc, stderr } = await splitExport('1MB');
    expect(sizes.length).toBeGreaterThanOrEqual(3);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(1_000_000);
    // The cut fills a volume to the cap (within a tar block or two): the cap really is the decimal megabyte.
    expect(Math.max(...sizes)).toBeGreaterThan(1_000_000 - 2048);
    expect(stderr).toContain('--split 1MB = 1,000,000 bytes (decimal MB)');
    expect(doc.sizes.split).toEqual({ from: '--split', given: '1MB', bytes: 1_000_000, units: 'decimal', unit: 'MB' });
    expect(doc.sizes.cacheMax).toEqual({ from: 'default', bytes: 20 * 1024 ** 3, units: 'binary', unit: 'GiB' });
  });

  it('--split 1MiB and 1M are 1,048,576 bytes: volumes larger than 1MB allows', async () => {
    for (const [size, reading] of [['1MiB', 'binary MiB'], ['1M', 'binary M = MiB']] as const) {
      const { sizes, doc, stderr } = await splitExport(size);
      for (const s of sizes) expect(s).toBeLessThanOrEqual(1_048_576);
      expect(Math.max(...sizes)).toBeGreaterThan(1_000_000);
      expect(stderr).toContain(`--split ${size} = 1,048,576 bytes (${reading})`);
      expect(doc.sizes.split).toMatchObject({ bytes: 1_048_576, units: 'binary' });
    }
  });

  it('plan reads --split and FERRY_CACHE_MAX the same way and reports both', async () => {
    const r = await ferryOk(['plan', `${reg.host}/units/app:1`, '--split', '1MB', '--cache', path('cache-plan'), '--plain-http', reg.host], { env: { FERRY_CACHE_MAX: '5GB' } });
    expect(r.stderr).toContain('--split 1MB = 1,000,000 bytes (decimal MB)');
    expect(r.stderr).toContain('FERRY_CACHE_MAX 5GB = 5,000,000,000 bytes (decimal GB)');
    expect(r.stdout).toMatch(/volumes of 1,000,000 bytes \(.*\): 3$/m);
    const j = await ferryOk(['plan', `${reg.host}/units/app:1`, '--split', '1MB', '--cache-max', '0', '--cache', path('cache-plan'), '--plain-http', reg.host, '--json'], { env: { FERRY_CACHE_MAX: '5GB' } });
    const doc = jsonOf<Sized & { split: { volumeBytes: number; volumes: number }; cache: { maxBytes: number | null } }>(j);
    const errors = schemaErrors(cliSchemaRef('planResult'), doc);
    expect(errors, describeErrors(errors)).toEqual([]);
    expect(doc.split).toEqual({ volumeBytes: 1_000_000, volumes: 3 });
    expect(doc.sizes.cacheMax).toEqual({ from: '--cache-max', given: '0', bytes: null, units: 'none' });
    expect(doc.cache.maxBytes).toBeNull();
  });

  it('a size with a unit ferry does not know fails before anything is fetched, with the syntax in the hint', async () => {
    const cache = path('cache-bad');
    const r = await runFerry(['export', `${reg.host}/units/app:1`, '-o', path('x.tar'), '--split', '100Mb/s', '--cache', cache, '--plain-http', reg.host, '--json']);
    expect(r.code).toBe(2);
    const err = (JSON.parse(r.stdout) as { error: { code: string; message: string; hint: string } }).error;
    expect(err.code).toBe('E_USAGE');
    expect(err.message).toBe('--split "100Mb/s" is not a size');
    expect(err.hint).toMatch(/MB.*decimal.*MiB.*binary/);
    await expect(stat(cache)).rejects.toThrow();
  });
});
