// A folder named where a bundle is read (the folder it was copied into, say)
// was E_IO "EISDIR: illegal operation on a directory, read" with no hint, and
// for diff, inventory --bundle and export --since "(a local file): … give the
// name of a file to write": neither names the mistake. It is a usage error.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { writeManyImagesBundle } from '../support/bundles.js';
import { runFerry } from '../support/cli.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

let tmp: TempDir;
let bundle: string;
let folder: string;

beforeAll(async () => {
  tmp = makeTempDir('ferry-bundle-folder-');
  bundle = (await writeManyImagesBundle(join(tmp.path, 'b.tar'), join(tmp.path, 'store'), { images: 2, seed: 0xf01 })).path;
  folder = join(tmp.path, 'carried');
  await mkdir(folder);
});

afterAll(async () => tmp?.cleanup());

const cases: Array<[string, () => string[]]> = [
  ['verify', () => ['verify', folder]],
  ['inspect', () => ['inspect', folder]],
  ['import', () => ['import', folder, '--to', `oci:${join(tmp.path, 'out')}`]],
  ['push', () => ['push', folder, '--to', '127.0.0.1:1/x']],
  ['export --from bundle:', () => ['export', '--from', `bundle:${folder}`, '-o', join(tmp.path, 'x.tar')]],
  ['diff', () => ['diff', folder, bundle]],
  ['inventory --bundle', () => ['inventory', '--bundle', folder]],
  ['export --since', () => ['export', '--from', `bundle:${bundle}`, '--since', folder, '-o', join(tmp.path, 'd.tar')]],
];

it.each(cases)('%s of a folder is E_USAGE naming it as a directory', async (_what, args) => {
  const r = await runFerry(['--json', ...args()]);
  expect(r.code, r.stderr).toBe(2);
  const doc = JSON.parse(r.stdout) as { error: { code: string; message: string; hint: string; details: { file: string } } };
  expect(doc.error.code).toBe('E_USAGE');
  expect(doc.error.message).toContain(`${folder} is a directory`);
  expect(doc.error.hint).not.toBe('');
  expect(doc.error.details.file).toBe(folder);
});
