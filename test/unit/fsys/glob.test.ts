import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { expandFileGlobs, fileNameMatcher, nameMatcher } from '../../../src/fsys/glob.js';
import { matchesPattern } from '../../../src/app/repository-mapping.js';
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

  it('file-name patterns: sh wildcards and classes, everything else literal', () => {
    const m = (pattern: string, name: string) => fileNameMatcher(pattern)(name);
    expect(m('a+b.(c)*', 'a+b.(c)xyz')).toBe(true);
    expect(m('a+b.(c)*', 'aab.(c)')).toBe(false);
    expect(m('x(y)', 'xy'), 'parentheses are no regex group').toBe(false);
    expect(m('[!0-4]x', '5x')).toBe(true);
    expect(m('[!0-4]x', '3x')).toBe(false);
    expect(m('[[:digit:]].tar', '7.tar')).toBe(true);
    expect(m('{a,b}.tar', 'a.tar'), 'no brace expansion').toBe(false);
    expect(m('{a,b}.tar', '{a,b}.tar')).toBe(true);
    expect(m('!x', '!x'), 'a leading ! is a character').toBe(true);
    expect(m('a|b', 'a')).toBe(false);
    expect(m('*', '.hidden')).toBe(false);
    expect(m('?hidden', '.hidden')).toBe(false);
    expect(m('.*', '.hidden')).toBe(true);
    expect(m('*', 'a/b'), 'a file name, never a path').toBe(false);
    expect(m('REL.*', 'rel.000.tar'), 'case matters, as in sh').toBe(false);
    expect(['a', 'b', 'c'].filter(fileNameMatcher('[ab]')), 'safe as an Array#filter callback').toEqual(['a', 'b']);
  });
});

describe('name patterns (image references for --image; known_hosts in test/unit/ssh)', () => {
  it('* crosses / and dots, ? is one character, brackets and everything else are literal', () => {
    expect(matchesPattern('docker.io/library/nginx:1.25', 'docker.io/library/*')).toBe(true);
    expect(matchesPattern('docker.io/library/nginx:1.25', '*/nginx*')).toBe(true);
    expect(matchesPattern('127.0.0.1:5000/a/b/c:stable', '*/a/b/c:stable')).toBe(true);
    expect(matchesPattern('127.0.0.1:5000/a/b-c:other', '*/a/b/c:stable')).toBe(false);
    expect(matchesPattern('quay.io/x/app:1.25', '*:1.?5')).toBe(true);
    expect(matchesPattern('registry/app@sha256:0123', '*@sha256:01*')).toBe(true);
    expect(matchesPattern('a/b:1', '[ab]*')).toBe(false);
    expect(matchesPattern('x(y)', 'x(y)')).toBe(true);
    expect(matchesPattern('xy', 'x(y)')).toBe(false);
    expect(matchesPattern('a', 'a|b')).toBe(false);
    expect(matchesPattern('a', '{a,b}')).toBe(false);
    expect(matchesPattern('Team/App', 'team/app'), 'references are case-sensitive').toBe(false);
    expect(nameMatcher('team/app', { nocase: true })('Team/App')).toBe(true);
  });
});
