// A registry layout is named by its rootdirectory. One folder too deep
// (…/docker/registry/v2): `inventory --layout` read an empty registry and
// exited 0 (the site "holds nothing"), `import --to registry-layout:` wrote
// docker/registry/v2/docker/registry/v2, which the registry never reads, and
// exited 0. A folder that is no registry storage is no empty site either.
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeManyImagesBundle } from '../support/bundles.js';
import { runFerry } from '../support/cli.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

let tmp: TempDir;
let root: string;
let bundlePath: string;

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint: string; details: Record<string, unknown> } }

beforeAll(async () => {
  tmp = makeTempDir('ferry-inventory-root-');
  const bundle = await writeManyImagesBundle(join(tmp.path, 'b.tar'), join(tmp.path, 'store'), { images: 3, seed: 0x1a7 });
  bundlePath = bundle.path;
  root = join(tmp.path, 'registry');
  const r = await runFerry(['import', bundle.path, '--to', `registry-layout:${root}`, '-q']);
  expect(r.code, r.stderr).toBe(0);
});

afterAll(async () => tmp?.cleanup());

describe('inventory --layout', () => {
  it('of the rootdirectory lists the images', async () => {
    const r = await runFerry(['inventory', '--layout', root]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { images: unknown[] }).images).toHaveLength(3);
  });

  it.each(['docker', 'docker/registry', 'docker/registry/v2'])('of %s below it is E_USAGE naming the rootdirectory', async (below) => {
    const r = await runFerry(['--json', 'inventory', '--layout', join(root, below)]);
    expect(r.code, r.stderr).toBe(2);
    const doc = JSON.parse(r.stdout) as ErrorDoc;
    expect(doc.error.code).toBe('E_USAGE');
    expect(doc.error.hint).toContain(`--layout ${root}`);
    expect(doc.error.details['root']).toBe(root);
  });

  it('of a folder that is no registry storage is E_NOT_FOUND', async () => {
    const other = join(tmp.path, 'other');
    await mkdir(other);
    await writeFile(join(other, 'notes.txt'), 'not a registry');
    const r = await runFerry(['--json', 'inventory', '--layout', other, '-o', join(tmp.path, 'inv.json')]);
    expect(r.code, r.stderr).toBe(5);
    expect((JSON.parse(r.stdout) as ErrorDoc).error.code).toBe('E_NOT_FOUND');
  });

  it('of an empty folder (a registry nothing was pushed to) is an empty inventory', async () => {
    const empty = join(tmp.path, 'empty');
    await mkdir(empty);
    const r = await runFerry(['inventory', '--layout', empty]);
    expect(r.code, r.stderr).toBe(0);
    expect((JSON.parse(r.stdout) as { images: unknown[] }).images).toEqual([]);
  });
});

describe('registry-layout: below the rootdirectory', () => {
  it.each(['docker', 'docker/registry', 'docker/registry/v2'])('import --to registry-layout:ROOT/%s is E_USAGE and writes nothing there', async (below) => {
    const target = join(root, below);
    const before = await readdir(target, { recursive: true });
    const r = await runFerry(['--json', 'import', bundlePath, '--to', `registry-layout:${target}`]);
    expect(r.code, r.stderr).toBe(2);
    const doc = JSON.parse(r.stdout) as ErrorDoc;
    expect(doc.error.code).toBe('E_USAGE');
    expect(doc.error.hint).toContain(`registry-layout:${root}`);
    expect(await readdir(target, { recursive: true })).toEqual(before);
  });

  it('export --from registry-layout:ROOT/docker is E_USAGE naming the root', async () => {
    const r = await runFerry(['--json', 'export', '--from', `registry-layout:${join(root, 'docker')}`, '-o', join(tmp.path, 'x.tar')]);
    expect(r.code, r.stderr).toBe(2);
    expect((JSON.parse(r.stdout) as ErrorDoc).error.details['root']).toBe(root);
  });
});
