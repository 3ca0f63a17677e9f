// An export that would exceed a limit fails before it moves a byte (issue #16):
// the cut of --split, the volume count, the caps bundle readers put on the head
// and on the metadata, free space for every volume. Each refusal is asserted by
// its exit status and error document, by what was not fetched (blob GETs and
// referrer lookups at a counting proxy in front of a real registry; or blobs
// that do not exist at all, in a layout written here, so a read would fail
// otherwise), by an output folder left empty, and by a rerun with the fix.
import { createHash } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { CONFIG_MAX_BYTES, HEAD_MAX_BYTES } from '../../src/transports/bundle/bundle-head.js';
import { runFerry, type FerryResult } from '../support/cli.js';
import { targetOf } from '../support/http.js';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { writeOciLayout } from '../support/oci-layout.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { mountTmpfs } from '../support/tmpfs.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { startProxy } from './registry-proxy.js';

interface ErrorDoc { code: string; exitStatus: number; message: string; hint: string; details: Record<string, unknown> }

let tmp: TempDir;
let reg: RegistryHandle;
const IMAGES = 3;

beforeAll(async () => {
  tmp = makeTempDir('ferry-limits-');
  reg = await startRegistry();
  const rng = new Rng(0x11e);
  const base = await makeLayer(rng.fork('base'), { size: 1_000_000, compressible: false });
  for (let i = 0; i < IMAGES; i++) {
    const own = await makeLayer(rng.fork(`own${i}`), { size: 1_500_000, compressible: false });
    await pushArtifact(targetOf(reg), `limits/app${i}`, makeImage({ layers: [base, own], mediaTypes: 'oci', labels: { i: String(i) } }), ['1']);
  }
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

function errorOf(r: FerryResult): ErrorDoc {
  const doc = JSON.parse(r.stdout) as { error?: ErrorDoc };
  if (!doc.error) throw new Error(`no error document (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  expect(doc.error.exitStatus).toBe(r.code);
  return doc.error;
}

/** The export through a counting proxy: what it asked the registry for besides the images' own manifests. */
async function exportFromRegistry(args: string[]): Promise<{ r: FerryResult; blobGets: number; referrerLookups: number }> {
  const proxy = await startProxy(reg.url);
  try {
    const refs = Array.from({ length: IMAGES }, (_, i) => `${proxy.host}/limits/app${i}:1`);
    const r = await runFerry(['export', ...refs, '--plain-http', proxy.host, '--json', ...args]);
    return {
      r,
      blobGets: proxy.log.filter((l) => l.method === 'GET' && l.path.includes('/blobs/')).length,
      referrerLookups: proxy.log.filter((l) => l.path.includes('/referrers/') || /sha256-[0-9a-f]{64}/.test(l.path)).length,
    };
  } finally {
    await proxy.stop();
  }
}

describe('export from a registry', () => {
  it('--split below the head every volume carries: refused with the head size and a size that works, before any blob or referrer lookup; the suggested size completes', async () => {
    const out = join(tmp.path, 'split-head');
    mkdirSync(out);
    const { r, blobGets, referrerLookups } = await exportFromRegistry(['-o', join(out, 'rel.tar'), '--split', '2K', '--cache', join(tmp.path, 'cache-a')]);
    expect(r.code, r.stdout).toBe(EXIT_STATUS.E_USAGE);
    const e = errorOf(r);
    expect(e.code).toBe('E_USAGE');
    expect(e.message).toMatch(/--split 2048 bytes .* too small: every volume carries the bundle's head .* use --split 1M or more/);
    expect(e.details['headBytes']).toBeGreaterThan(2048);
    expect(e.details['suggestedSplit']).toBe(1024 * 1024);
    expect(blobGets).toBe(0);
    // The head was already too large without the signatures: no lookup per image was made for them.
    expect(referrerLookups).toBe(0);
    expect(await readdir(out)).toEqual([]);

    const again = await exportFromRegistry(['-o', join(out, 'rel.tar'), '--split', '1M', '--cache', join(tmp.path, 'cache-a')]);
    expect(again.r.code, again.r.stdout).toBe(0);
    // The counter sees the lookups a run that goes on makes: the 0 above is none made, not none seen.
    expect(again.referrerLookups).toBeGreaterThan(0);
    const volumes = (JSON.parse(again.r.stdout) as { volumes: { path: string }[] }).volumes;
    expect(volumes.length).toBeGreaterThan(1);
    expect((await readdir(out)).filter((n) => n.endsWith('.tar')).length).toBe(volumes.length);
  });

  it('a disk with room for the bundle whole but not for its volumes (each carries the head): E_NO_SPACE before any blob; with room the rerun completes', async () => {
    const disk = mountTmpfs(join(tmp.path, 'disk'), '16k');
    try {
      const out = join(disk.dir, 'rel.tar');
      // What each way needs, from the refusals on a disk far too small.
      const whole = errorOf((await exportFromRegistry(['-o', out, '--cache', join(tmp.path, 'cache-b')])).r);
      const split = errorOf((await exportFromRegistry(['-o', out, '--split', '160K', '--cache', join(tmp.path, 'cache-b')])).r);
      expect([whole.code, split.code]).toEqual(['E_NO_SPACE', 'E_NO_SPACE']);
      const wholeNeed = whole.details['neededBytes'] as number;
      const splitNeed = split.details['neededBytes'] as number;
      // ~35 volumes of 160K, each with its own head: well beyond the whole bundle.
      expect(splitNeed - wholeNeed).toBeGreaterThan(256 * 1024);
      disk.resize(`${Math.ceil((wholeNeed + 64 * 1024) / 1024)}k`);

      const { r, blobGets } = await exportFromRegistry(['-o', out, '--split', '160K', '--cache', join(tmp.path, 'cache-b')]);
      expect(r.code, r.stdout).toBe(EXIT_STATUS.E_NO_SPACE);
      const e = errorOf(r);
      expect(e.code).toBe('E_NO_SPACE');
      expect(e.message).toContain('the volumes');
      expect(e.details['neededBytes']).toBe(splitNeed);
      expect(e.details['freeBytes']).toBeLessThan(splitNeed);
      expect(blobGets).toBe(0);
      expect(await readdir(disk.dir)).toEqual([]);

      disk.resize(`${Math.ceil((splitNeed + 1024 * 1024) / 1024)}k`);
      const again = await exportFromRegistry(['-o', out, '--split', '160K', '--cache', join(tmp.path, 'cache-b')]);
      expect(again.r.code, again.r.stdout).toBe(0);
    } finally {
      disk.unmount();
    }
  });
});

/**
 * An OCI layout holding one real small image (`limits/real:1`) and images whose
 * manifests name blobs that are not there: any read of one fails the export
 * with "not found", so a refusal naming a limit shows that none was read.
 */
async function layoutWith(name: string, fakes: { ref: string; configSize: number; layers: number; layerSize: number }[]): Promise<string> {
  const dir = join(tmp.path, name);
  const real = makeImage({ layers: [await makeLayer(new Rng(0x5ea1), { size: 20_000, compressible: false })], mediaTypes: 'oci' });
  await writeOciLayout(dir, [{ artifact: real, ref: 'limits/real:1' }]);
  const index = JSON.parse(await readFile(join(dir, 'index.json'), 'utf8')) as { manifests: object[] };
  const fakeDigest = (text: string): string => `sha256:${createHash('sha256').update(text).digest('hex')}`;
  for (const [n, f] of fakes.entries()) {
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: fakeDigest(`${name} config ${n}`), size: f.configSize },
      layers: Array.from({ length: f.layers }, (_, i) => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: fakeDigest(`${name} layer ${n} ${i}`), size: f.layerSize })),
    }));
    const digest = `sha256:${createHash('sha256').update(manifest).digest('hex')}`;
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice(7)), manifest);
    index.manifests.push({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': f.ref } });
  }
  await writeFile(join(dir, 'index.json'), JSON.stringify(index));
  return dir;
}

/** Refused with E_USAGE naming `pattern`, the output folder left empty; then only the real image, which completes. */
async function expectRefusedThenFixed(layout: string, args: string[], pattern: RegExp): Promise<ErrorDoc> {
  const out = join(tmp.path, `${layout.split('/').pop()}-out`);
  await mkdir(out);
  const r = await runFerry(['export', '--from', `oci:${layout}`, '-o', join(out, 'b.tar'), '--json', '--cache', join(tmp.path, 'cache-l'), ...args]);
  expect(r.code, r.stdout).toBe(EXIT_STATUS.E_USAGE);
  const e = errorOf(r);
  expect(e.code).toBe('E_USAGE');
  expect(e.message).toMatch(pattern);
  expect(await readdir(out)).toEqual([]);
  // The fix the hint gives: fewer images in this bundle.
  const list = join(tmp.path, `${layout.split('/').pop()}.list`);
  await writeFile(list, 'limits/real:1\n');
  const again = await runFerry(['export', '--from', `oci:${layout}`, '-f', list, '-o', join(out, 'b.tar'), '--json', '--cache', join(tmp.path, 'cache-l'), ...args]);
  expect(again.code, again.stdout).toBe(0);
  return e;
}

describe('limits of the bundle readers, from the manifests alone', () => {
  it('a config larger than readers accept: refused naming it, nothing read', async () => {
    const layout = await layoutWith('config-cap', [{ ref: 'limits/huge-config:1', configSize: CONFIG_MAX_BYTES + 1, layers: 1, layerSize: 1000 }]);
    const e = await expectRefusedThenFixed(layout, [], /config sha256:[0-9a-f]{64} is 67108865 bytes .* more than the 67108864 bytes .* readers accept/);
    expect(e.details).toMatchObject({ kind: 'config', bytes: CONFIG_MAX_BYTES + 1, limit: CONFIG_MAX_BYTES });
  });

  it('manifests and configs together over what readers hold: refused with the sum, nothing read', async () => {
    const size = 60 * 1024 * 1024;
    const fakes = Array.from({ length: 5 }, (_, i) => ({ ref: `limits/fat${i}:1`, configSize: size, layers: 1, layerSize: 1000 }));
    const e = await expectRefusedThenFixed(await layoutWith('head-cap', fakes), [], /manifests and configs of this bundle add up to \d+ bytes .* more than the 268435456 bytes/);
    expect(e.details['headBytes']).toBeGreaterThan(HEAD_MAX_BYTES);
  });

  it('metadata over the readers\' caps (260,000 blobs, none of them real): refused, nothing read', async () => {
    const fakes = Array.from({ length: 10 }, (_, i) => ({ ref: `limits/wide${i}:1`, configSize: 1000, layers: 26_000, layerSize: 1000 }));
    const e = await expectRefusedThenFixed(await layoutWith('metadata-cap', fakes), [], /the metadata of 11 images and 260023 blobs would take at least \d+ bytes of memory to parse, more than the 67108864 allowed: readers would refuse the bundle/);
    expect(e.details).toMatchObject({ images: 11, blobs: 260_023 });
  });

  it('--split giving more volumes than a set may have: refused with a size that works, nothing read', async () => {
    // 10,001 layers of 100 KB, each alone in a volume of the head plus 150 KB (the head: from the refusal of a 1K cap).
    const layout = await layoutWith('volume-count', [{ ref: 'limits/many:1', configSize: 1000, layers: 10_001, layerSize: 100_000 }]);
    // Twice: a 1K cap is refused on the manifests' bytes alone, before the metadata is built; one just above those, on the whole head.
    let head = 1024;
    for (let i = 0; i < 2; i++) {
      const probe = await runFerry(['export', '--from', `oci:${layout}`, '-o', join(tmp.path, 'probe.tar'), '--split', String(head), '--json', '--cache', join(tmp.path, 'cache-l')]);
      head = errorOf(probe).details['headBytes'] as number;
    }
    const e = await expectRefusedThenFixed(layout, ['--split', String(head + 150_000)], /would cut this bundle into 10001 volumes, more than the 10000 a set may have; use --split \d+[MG] or more/);
    expect(e.details).toMatchObject({ volumes: 10_001, limit: 10_000 });
  });
});
