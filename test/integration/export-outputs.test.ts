// What an export writes must never replace what it reads, and a split set
// written over an earlier one of the same name must leave no volume of the
// earlier set beside it. Real bundle files, the real CLI.
import { createHash } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeManyImagesBundle } from '../support/bundles.js';
import { runFerry } from '../support/cli.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

let tmp: TempDir;
let bundle: string;
let sums: Map<string, string>;

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; details: Record<string, unknown> } }

async function digestsOf(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  for (const name of (await readdir(dir)).sort()) {
    out.set(name, createHash('sha256').update(await readFile(join(dir, name))).digest('hex'));
  }
  return out;
}

beforeAll(async () => {
  tmp = makeTempDir('ferry-export-outputs-');
  await mkdir(join(tmp.path, 'in'));
  // 8 images with 32 KiB layers of their own: a --split of 128K gives several volumes.
  bundle = (await writeManyImagesBundle(join(tmp.path, 'in', 'rel.tar'), join(tmp.path, 'store'), { images: 8, seed: 0x5e7, ownLayerBytes: 32 * 1024, bases: 2 })).path;
  const split = await runFerry(['export', '--from', `bundle:${bundle}`, '-o', join(tmp.path, 'in', 'set.tar'), '--split', '128K', '-q']);
  expect(split.code, split.stderr).toBe(0);
  await writeFile(join(tmp.path, 'in', 'images.list'), '127.0.0.1:5000/gen/r0000:v0\n');
  sums = await digestsOf(join(tmp.path, 'in'));
}, 120_000);

afterAll(async () => tmp?.cleanup());

describe('export -o onto a file the export reads', () => {
  const inDir = (name: string): string => join(tmp.path, 'in', name);
  const cases: Array<[string, () => string[]]> = [
    ['the --from bundle itself (with --platform it would keep a subset)', () => ['--from', `bundle:${bundle}`, '--platform', 'linux/amd64', '-o', bundle]],
    ['the --from bundle\'s .ferry.json sidecar', () => ['--from', `bundle:${bundle}`, '-o', `${bundle}.ferry.json`]],
    ['a volume of the --from set', () => ['--from', `bundle:${inDir('set.sha256')}`, '-o', inDir('set.001.tar')]],
    ['the --from set again, split (its list and volumes)', () => ['--from', `bundle:${inDir('set.sha256')}`, '-o', inDir('set.tar'), '--split', '200K']],
    ['one volume of the --from set named, the set split again', () => ['--from', `bundle:${inDir('set.000.tar')}`, '-o', inDir('set.tar'), '--split', '200K']],
    ['the -f image list', () => ['--from', `bundle:${bundle}`, '-f', inDir('images.list'), '-o', inDir('images.list')]],
    ['the --since base', () => ['--from', `bundle:${bundle}`, '--since', bundle, '-o', bundle]],
  ];
  it.each(cases)('is refused before a byte: %s', async (_what, args) => {
    const r = await runFerry(['--json', 'export', ...args()]);
    expect(r.code, r.stderr).toBe(2);
    const doc = JSON.parse(r.stdout) as ErrorDoc;
    expect(doc.error.code).toBe('E_USAGE');
    expect(doc.error.message).toContain('which this run reads');
    // Nothing the run reads was touched, nothing was added beside it.
    expect(await digestsOf(join(tmp.path, 'in'))).toEqual(sums);
  });

  it('a new name beside the inputs still exports', async () => {
    const out = join(tmp.path, 'copy.tar');
    const r = await runFerry(['export', '--from', `bundle:${join(tmp.path, 'in', 'set.sha256')}`, '-o', out, '-q']);
    expect(r.code, r.stderr).toBe(0);
    expect((await runFerry(['verify', out, '-q'])).code).toBe(0);
  });
});

describe('export --split over an earlier set of the same name', () => {
  it('removes the earlier volumes the new list does not name; the glob then reads one bundle', async () => {
    const dir = join(tmp.path, 'resplit');
    const out = join(dir, 'rel.tar');
    const first = await runFerry(['--json', 'export', '--from', `bundle:${bundle}`, '-o', out, '--split', '128K']);
    expect(first.code, first.stderr).toBe(0);
    const before = (JSON.parse(first.stdout) as { volumes: unknown[] }).volumes.length;
    expect(before).toBeGreaterThan(2);
    // A larger cut: fewer volumes.
    const second = await runFerry(['--json', 'export', '--from', `bundle:${bundle}`, '-o', out, '--split', '1M']);
    expect(second.code, second.stderr).toBe(0);
    expect((JSON.parse(second.stdout) as { volumes: unknown[] }).volumes).toHaveLength(1);
    const names = (await readdir(dir)).sort();
    expect(names).toEqual(['rel.000.tar', 'rel.ferry.json', 'rel.sha256']);
    const verify = await runFerry(['verify', join(dir, 'rel.*.tar'), '-q']);
    expect(verify.code, verify.stderr).toBe(0);
    // A file of the stem's shape that no list of ferry's named is not ferry's to remove.
    await writeFile(join(dir, 'rel.007.tar'), 'not a volume ferry wrote');
    const third = await runFerry(['export', '--from', `bundle:${bundle}`, '-o', out, '--split', '128K', '-q']);
    expect(third.code, third.stderr).toBe(0);
    expect(await readdir(dir)).toContain('rel.007.tar');
  });
});
