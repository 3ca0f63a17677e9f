// `ferry import --to KIND:TARGET BUNDLE` (the bundle after --to, a natural
// order in scripts): --to reads one or two words and the words after them as
// further volumes, so the bundle was swallowed and yargs said only "Not enough
// non-option arguments: got 0". Still a usage error, now saying what to write.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

let tmp: TempDir;
beforeAll(() => {
  tmp = makeTempDir('ferry-bundle-after-to-');
});
afterAll(async () => tmp?.cleanup());

it.each([['--to', 'oci:OUT'], ['--to=oci:OUT']])('import %s BUNDLE: E_USAGE whose hint puts the bundle first', async (...words) => {
  const out = join(tmp.path, 'out');
  const args = words.map((w) => w.replace('OUT', out));
  const r = await runFerry(['--json', 'import', ...args, join(tmp.path, 'release.tar')]);
  expect(r.code, r.stderr).toBe(2);
  const doc = JSON.parse(r.stdout) as { error: { code: string; hint: string } };
  expect(doc.error.code).toBe('E_USAGE');
  expect(doc.error.hint).toContain('name the bundle first, then --to: ferry import release.tar --to');
  expect(existsSync(out)).toBe(false);
});

it('import with no bundle and no --to keeps the general hint', async () => {
  const r = await runFerry(['--json', 'import']);
  expect(r.code).toBe(2);
  expect((JSON.parse(r.stdout) as { error: { hint: string } }).error.hint).toBe('run ferry --help, or ferry <command> --help');
});
