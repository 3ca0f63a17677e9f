// The small parsers of `ferry serve`: Range headers, htpasswd files and Basic
// credentials, --listen, and the text a client controls as it reaches the log.
import { execFileSync } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseListen } from '../../../src/app/serve.js';
import { isFerryError } from '../../../src/errors.js';
import { Htpasswd } from '../../../src/serve/htpasswd.js';
import { parseRange } from '../../../src/serve/range.js';
import { printable } from '../../../src/serve/registry-api.js';
import { makeTempDir } from '../../support/tmp.js';

const tmp = makeTempDir('ferry-serve-unit-');
afterAll(() => tmp.cleanup());

describe('parseRange', () => {
  it('one range in its three forms, clipped to the blob; unsatisfiable past the end; anything else serves the whole blob', () => {
    expect(parseRange('bytes=0-9', 100)).toEqual({ start: 0, end: 9 });
    expect(parseRange('bytes=90-', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-10', 100)).toEqual({ start: 90, end: 99 });
    expect(parseRange('bytes=-1000', 100)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=50-5000', 100)).toEqual({ start: 50, end: 99 });
    expect(parseRange('bytes=0-99999999999999999999', 100)).toEqual({ start: 0, end: 99 });
    expect(parseRange('bytes=100-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=99999999999999999999-', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=-0', 100)).toBe('unsatisfiable');
    expect(parseRange('bytes=0-0', 0)).toBe('unsatisfiable');
    for (const h of [undefined, 'bytes=', 'bytes=-', 'items=0-1', 'bytes=0-1,3-4', 'bytes=5-1', 'bytes=a-b']) expect(parseRange(h, 100), String(h)).toBeUndefined();
  });
});

describe('parseListen', () => {
  it('takes ADDR:PORT and [v6]:PORT, refuses the rest with E_USAGE', () => {
    expect(parseListen('127.0.0.1:5000')).toEqual({ host: '127.0.0.1', port: 5000 });
    expect(parseListen('0.0.0.0:0')).toEqual({ host: '0.0.0.0', port: 0 });
    expect(parseListen('[::1]:5000')).toEqual({ host: '::1', port: 5000 });
    expect(parseListen('jump.corp.local:443')).toEqual({ host: 'jump.corp.local', port: 443 });
    for (const bad of ['5000', ':5000', '127.0.0.1', '127.0.0.1:65536', '::1:5000', 'a b:1', '127.0.0.1:50x']) {
      expect(() => parseListen(bad), bad).toThrowError(expect.objectContaining({ code: 'E_USAGE' }));
    }
  });
});

describe('Htpasswd', () => {
  it('accepts what htpasswd -B writes ($2y$), checks passwords, refuses other users and wrong passwords', async () => {
    const file = join(tmp.path, 'users');
    const lines = ['alice', 'bob'].map((u) => execFileSync('htpasswd', ['-niB', u], { input: `${u}-secret` }).toString().trim());
    await writeFile(file, `# site users\n\n${lines.join('\n')}\n`);
    const h = await Htpasswd.load(file);
    const basic = (u: string, p: string) => `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}`;
    expect(await h.check(basic('alice', 'alice-secret'))).toBe('alice');
    expect(await h.check(basic('alice', 'alice-secret'))).toBe('alice');
    expect(await h.check(basic('bob', 'bob-secret'))).toBe('bob');
    expect(await h.check(basic('alice', 'bob-secret'))).toBeUndefined();
    expect(await h.check(basic('carol', 'alice-secret'))).toBeUndefined();
    expect(await h.check(basic('alice', `alice-secret${'x'.repeat(80)}`))).toBeUndefined();
    for (const header of [undefined, '', 'Bearer x', 'Basic', 'Basic !!!', `Basic ${Buffer.from('nocolon').toString('base64')}`]) expect(await h.check(header)).toBeUndefined();
  });

  it('refuses, naming file and line, entries that are not bcrypt, duplicates, and an empty file (E_CONFIG)', async () => {
    const cases: [string, string][] = [
      ['md5', `${execFileSync('htpasswd', ['-nbm', 'u', 'p']).toString().trim()}\n`],
      ['sha', `${execFileSync('htpasswd', ['-nbs', 'u', 'p']).toString().trim()}\n`],
      ['plain', 'u:p\n'],
      ['nocolon', 'just-a-name\n'],
      ['dup', `${execFileSync('htpasswd', ['-nbB', 'u', 'p']).toString().trim()}\n${execFileSync('htpasswd', ['-nbB', 'u', 'q']).toString().trim()}\n`],
      ['empty', '# nobody\n'],
    ];
    for (const [name, text] of cases) {
      const file = join(tmp.path, name);
      await writeFile(file, text);
      const e = await Htpasswd.load(file).catch((x: unknown) => x);
      expect(isFerryError(e, 'E_CONFIG'), name).toBe(true);
      expect((e as Error).message, name).toContain(file);
    }
    const missing = await Htpasswd.load(join(tmp.path, 'none')).catch((x: unknown) => x);
    expect(isFerryError(missing, 'E_CONFIG')).toBe(true);
  });
});

describe('printable', () => {
  it('keeps printable ASCII, escapes the rest, and bounds the length', () => {
    expect(printable('GET /v2/', 100)).toBe('GET /v2/');
    expect(printable('a\u0000b\nc\u001b[31m\u00e9', 100)).toBe('a\\x00b\\x0ac\\x1b[31m\\xe9');
    expect(printable('x'.repeat(10), 4)).toBe('xxxx...');
  });
});
