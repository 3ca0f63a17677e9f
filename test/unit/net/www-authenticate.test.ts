import { describe, expect, it } from 'vitest';
import { parseWwwAuthenticate } from '../../../src/net/auth.js';

describe('parseWwwAuthenticate', () => {
  it('reads a distribution Bearer challenge with a comma inside the quoted scope', () => {
    const header = 'Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push"';
    expect(parseWwwAuthenticate(header)).toEqual([
      { scheme: 'bearer', params: { realm: 'https://auth.example.com/token', service: 'registry.example.com', scope: 'repository:a/b:pull,push' } },
    ]);
  });

  it('reads Basic with a realm, case-insensitive scheme and parameter names', () => {
    expect(parseWwwAuthenticate('BASIC Realm="my registry"')).toEqual([{ scheme: 'basic', params: { realm: 'my registry' } }]);
  });

  it('splits several challenges in one header, with spaces around "=" and unquoted tokens', () => {
    const header = 'Basic realm="x, y", Bearer realm = "https://r/t" , service=reg.io, error="insufficient_scope"';
    expect(parseWwwAuthenticate(header)).toEqual([
      { scheme: 'basic', params: { realm: 'x, y' } },
      { scheme: 'bearer', params: { realm: 'https://r/t', service: 'reg.io', error: 'insufficient_scope' } },
    ]);
  });

  it('unescapes quoted-pair characters', () => {
    expect(parseWwwAuthenticate('Bearer realm="a\\"b\\\\c"')[0]?.params.realm).toBe('a"b\\c');
  });

  it('skips token68 challenges and keeps the following one', () => {
    expect(parseWwwAuthenticate('Negotiate abc123==, Basic realm="r"').map((c) => c.scheme)).toEqual(['negotiate', 'basic']);
  });

  it('gives a scheme with no parameters, and nothing for an empty header', () => {
    expect(parseWwwAuthenticate('Basic')).toEqual([{ scheme: 'basic', params: {} }]);
    expect(parseWwwAuthenticate('')).toEqual([]);
  });

  it('does not loop or throw on garbage', () => {
    for (const junk of ['"', '=,=,', 'Bearer realm="unterminated', 'Bearer ,,,, realm', '\u0000\u0001']) {
      expect(() => parseWwwAuthenticate(junk)).not.toThrow();
    }
    expect(parseWwwAuthenticate('Bearer realm="unterminated')[0]?.params.realm).toBe('unterminated');
  });
});
