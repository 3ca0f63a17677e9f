import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { expandFileGlobs, globToRegExp } from '../../../src/fsys/glob.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

let tmp: TempDir;
beforeAll(async () => {
  tmp = makeTempDir('ferry-glob-');
  await mkdir(join(tmp.path, 'share'));
  for (const f of ['rel.002.tar', 'rel.000.tar', 'rel.001.tar', 'rel.sha256', 'other.000.tar', '.rel.000.tar.tmp', 'odd*name.tar']) await writeFile(join(tmp.path, 'share', f), '');
});
afterAll(async () => tmp?.cleanup());

describe('file-name globs for quoted arguments', () => {
  it('expands *, ? and [] in the file name, sorted, like sh; dot files only for a dot pattern', async () => {
    const dir = join(tmp.path, 'share');
    expect(await expandFileGlobs([join(dir, 'rel.*.tar')])).toEqual(['rel.000.tar', 'rel.001.tar', 'rel.002.tar'].map((f) => join(dir, f)));
    expect(await expandFileGlobs([join(dir, 'rel.00[02].tar'), join(dir, 'rel.sha256')])).toEqual(['rel.000.tar', 'rel.002.tar', 'rel.sha256'].map((f) => join(dir, f)));
    expect(await expandFileGlobs([join(dir, '*.000.tar')])).toEqual(['other.000.tar', 'rel.000.tar'].map((f) => join(dir, f)));
    expect(await expandFileGlobs([join(dir, 'rel.00?.tar')])).toHaveLength(3);
    expect(await expandFileGlobs([join(dir, '.rel*')])).toEqual([join(dir, '.rel.000.tar.tmp')]);
  });

  it('keeps plain names, stdin and a file whose real name has a wildcard', async () => {
    const dir = join(tmp.path, 'share');
    expect(await expandFileGlobs(['-', join(dir, 'missing.tar'), join(dir, 'odd*name.tar')])).toEqual(['-', join(dir, 'missing.tar'), join(dir, 'odd*name.tar')]);
  });

  it('a pattern that matches nothing is E_NOT_FOUND naming it', async () => {
    const arg = join(tmp.path, 'share', 'release.*.tar');
    let e: unknown;
    try { await expandFileGlobs([arg]); } catch (x) { e = x; }
    expect(isFerryError(e, 'E_NOT_FOUND')).toBe(true);
    expect((e as Error).message).toBe(`${arg}: no file matches`);
  });

  it('translates patterns without letting regex syntax through', () => {
    expect(globToRegExp('a+b.(c)*').test('a+b.(c)xyz')).toBe(true);
    expect(globToRegExp('a+b.(c)*').test('aab.(c)')).toBe(false);
    expect(globToRegExp('[!0-4]x').test('5x')).toBe(true);
    expect(globToRegExp('[!0-4]x').test('3x')).toBe(false);
  });
});
