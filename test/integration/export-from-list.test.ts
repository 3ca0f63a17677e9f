// `export --from KIND:DIR -f LIST` takes exactly the listed images: the listed tags (not
// every tag of a listed repository), a digest-pinned line that one manifest, and a line
// the place does not hold fails the export naming the line (or, with --skip-missing, is
// left out and reported). The layout is a real docker-registry 2.8's storage, filled by
// pushing to it, then read by ferry with the registry stopped.
import { join } from 'node:path';
import { access } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { makeImage, makeLayer, Rng, type Artifact } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { jsonOf, writeList } from './cli-fixture.js';
import { readMetadata } from '../support/bundle-metadata.js';

let tmp: TempDir;
let layout: string;
const app: Record<string, Artifact> = {};
let n = 0;
const path = (name: string) => join(tmp.path, `${String(++n).padStart(3, '0')}-${name}`);

beforeAll(async () => {
  tmp = makeTempDir('ferry-from-list-');
  layout = path('storage');
  const reg = await startRegistry({ storageDir: layout });
  try {
    const rng = new Rng(0x11f7);
    const base = await makeLayer(rng.fork('base'), { size: 3_000 });
    for (const tag of ['1.0', '2.0', 'latest']) {
      app[tag] = makeImage({ layers: [base, await makeLayer(rng.fork(tag), { size: 1_500 })], mediaTypes: 'oci', labels: { tag } });
      await pushArtifact(reg.url, 'team/app', app[tag], [tag]);
    }
    await pushArtifact(reg.url, 'tools', makeImage({ layers: [base], mediaTypes: 'docker' }), ['1', '2']);
  } finally {
    await reg.stop();
  }
}, 120_000);
afterAll(async () => {
  await tmp?.cleanup();
});

interface ExportDoc { images: number; skipped?: { image: string; where?: string; code: string }[] }
interface ErrorDoc { error: { code: string; message: string; details: Record<string, unknown> } }

async function exportList(lines: string[], extra: string[] = []) {
  const list = await writeList(path('images.list'), `${lines.join('\n')}\n`);
  const out = path('b.tar');
  const r = await runFerry(['export', '--from', `registry-layout:${layout}`, '-f', list, '-o', out, '--cache', path('cache'), '--json', ...extra]);
  return { r, out, list };
}

async function imagesIn(bundle: string): Promise<string[]> {
  const meta = await readMetadata(`${bundle}.ferry.json`);
  return meta.images.map((i) => `${i.repository}${i.tag !== undefined ? `:${i.tag}` : ''}@${i.digest}`).sort();
}

describe('export --from registry-layout:DIR -f LIST', () => {
  it('takes the listed tags only, not every tag of a listed repository', async () => {
    const { r, out } = await exportList(['team/app:1.0', 'tools:2']);
    expect(r.code, r.stderr).toBe(0);
    const images = await imagesIn(out);
    expect(images).toHaveLength(2);
    expect(images[0]).toBe(`team/app:1.0@${app['1.0']!.digest}`);
    expect(images[1]).toMatch(/^tools:2@sha256:/);
  });

  it('a bare name is :latest; a digest-pinned line is that one manifest, under its listed tag', async () => {
    const { r, out } = await exportList(['team/app', `team/app:stable@${app['2.0']!.digest}`]);
    expect(r.code, r.stderr).toBe(0);
    expect(await imagesIn(out)).toEqual([`team/app:latest@${app['latest']!.digest}`, `team/app:stable@${app['2.0']!.digest}`].sort());
  });

  it('a listed image the layout does not hold fails the export, naming it and its line; nothing is written', async () => {
    const { r, out, list } = await exportList(['team/app:1.0', 'team/app:9.9', 'nothere/at-all:1']);
    expect(r.code).not.toBe(0);
    const err = jsonOf<ErrorDoc>(r).error;
    expect(err.code).toBe('E_NOT_FOUND');
    expect(err.message).toContain(' team/app:9.9: ');
    expect(err.message).toContain('nothere/at-all:1');
    await expect(access(out)).rejects.toThrow();
    // --skip-missing: the rest is exported and what was left out is reported with its line.
    const skipped = await runFerry(['export', '--from', `registry-layout:${layout}`, '-f', list, '-o', out, '--cache', path('cache'), '--json', '--skip-missing']);
    expect(skipped.code, skipped.stderr).toBe(0);
    const doc = jsonOf<ExportDoc>(skipped);
    expect(doc.images).toBe(1);
    expect(doc.skipped?.map((s) => [s.image, s.where, s.code])).toEqual([
      [expect.stringContaining('team/app:9.9'), `${list}:2`, 'E_NOT_FOUND'],
      [expect.stringContaining('nothere/at-all:1'), `${list}:3`, 'E_NOT_FOUND'],
    ]);
  });
});
