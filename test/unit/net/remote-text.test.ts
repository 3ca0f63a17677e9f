// The gate for text a server chose: no terminal control and no credential gets through,
// whatever the server wraps around it. Properties over random text (fast-check), plus the
// shapes servers and proxies really echo requests in.
import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { forgetSecrets, REDACTED, rememberSecret, remoteText, remoteUrl } from '../../../src/net/remote-text.js';
import { parseRegistryErrors } from '../../../src/net/registry-error.js';
import { harborError } from '../../../src/harbor/api.js';

const RUNS = process.env.FERRY_STRESS ? 5000 : 400;

/** What must never reach a terminal: C0 but tab/newline, DEL, C1, bidi controls. Written independently of src/. */
const FORBIDDEN = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;

/** Terminal sequences a hostile registry could send. */
const sequences = fc.constantFrom(
  '\x1b[2J', '\x1b[H', '\x1b[31;1m', '\x1b]0;pwned\x07', '\x1b]8;;http://evil\x1b\\', '\x1bP+q\x1b\\', '\x1bc', '\x9b2J', '\x9d0;x\x9c',
  '\r', '\b', '\x07', '\x00', '\u202e', '\u2066', '\u200f', '\x7f',
);
/** Random text: any code point, with terminal sequences mixed in. */
const hostileText = fc.array(fc.oneof(fc.string({ unit: 'binary', maxLength: 20 }), sequences), { maxLength: 12 }).map((parts) => parts.join(''));

afterEach(() => forgetSecrets());

describe('remoteText: terminal controls', () => {
  it('leaves no control character, whatever the input', () => {
    fc.assert(fc.property(hostileText, (t) => {
      expect(remoteText(t, 10_000)).not.toMatch(FORBIDDEN);
    }), { numRuns: RUNS });
  });

  it('keeps ordinary text, tabs and newlines, and removes a whole escape sequence (not just its ESC)', () => {
    expect(remoteText('blob unknown to registry\tline 2\nline 3')).toBe('blob unknown to registry\tline 2\nline 3');
    expect(remoteText('a\x1b[2J\x1b[31mred\x1b[0m b\x1b]0;title\x07c\r\u202eevil')).toBe('ared bcevil');
    expect(remoteText('ünïcödé ✓ 日本')).toBe('ünïcödé ✓ 日本');
  });

  it('bounds the length', () => {
    expect(remoteText('x'.repeat(10_000))).toHaveLength(301);
    expect(remoteText('x'.repeat(100), 10)).toBe(`${'x'.repeat(10)}…`);
  });
});

describe('remoteText: credentials', () => {
  const user = fc.stringMatching(/^[a-z][a-z0-9$+._-]{0,15}$/);
  // Passwords as people and robots choose them: any printable character, at least 4 of them.
  const secret = fc.string({ unit: 'grapheme-ascii', minLength: 4, maxLength: 40 })
    .filter((s) => s.trim().length >= 4 && !REDACTED.includes(s) && !s.includes('…'));
  const forms = (u: string, s: string): string[] => [
    s,
    Buffer.from(`${u}:${s}`).toString('base64'),
    Buffer.from(`${u}:${s}`).toString('base64url'),
    Buffer.from(s).toString('base64'),
    encodeURIComponent(s),
    new URLSearchParams({ x: s }).toString().slice(2),
  ];
  /** A secret's form, with controls spliced in anywhere (they are stripped before redaction). */
  const spliced = (text: string, seqs: string[]): string => {
    const cut = [...text];
    seqs.forEach((q, i) => cut.splice((i * 7) % (cut.length + 1), 0, q));
    return cut.join('');
  };

  it('no registered secret survives, in any form it could be echoed in, with controls spliced in', () => {
    fc.assert(fc.property(user, secret, fc.nat({ max: 5 }), hostileText, hostileText, fc.array(sequences, { maxLength: 3 }), (u, s, which, before, after, seqs) => {
      forgetSecrets();
      rememberSecret(s, u);
      const form = forms(u, s)[which]!;
      const out = remoteText(`${before}${spliced(form, seqs)}${after}`, 100_000);
      for (const f of forms(u, s)) if (f.replace(/=+$/, '').length >= 4) expect(out).not.toContain(f.replace(/=+$/, ''));
      expect(out).not.toMatch(FORBIDDEN);
    }), { numRuns: RUNS });
  });

  it('credential-looking values are redacted without knowing them: headers, query and JSON fields, auth schemes, URL user info', () => {
    const value = fc.stringMatching(/^[A-Za-z0-9+/_.~-]{6,40}={0,2}$/);
    const shape = fc.constantFrom(
      (v: string) => `Authorization: Basic ${v}`,
      (v: string) => `authorization: Bearer ${v}\r\nuser-agent: ferry`,
      (v: string) => `Proxy-Authorization: Basic ${v}`,
      (v: string) => `{"Authorization":["Basic ${v}"],"User-Agent":["ferry"]}`,
      (v: string) => `map[Authorization:[Bearer ${v}] Accept:[*/*]]`,
      (v: string) => `GET /token?scope=x&password=${v}&service=y`,
      (v: string) => `grant_type=refresh_token&refresh_token=${v}&client_id=ferry`,
      (v: string) => `{"token": "${v}", "access_token":"${v}"}`,
      (v: string) => `'identitytoken': '${v}'`,
      (v: string) => `X-Auth-Token=${v}`,
      // In a URL's user info a slash is written %2F (a raw one would end the authority).
      (v: string) => `see https://robot$ci:${v.replace(/\//g, '%2F')}@harbor.corp.local/api`,
      (v: string) => `Cookie: sid=${v}`,
      (v: string) => `client_secret: "${v}"`,
    );
    fc.assert(fc.property(value, shape, hostileText, (v, make, noise) => {
      const out = remoteText(`echo: ${make(v)} ${noise.replace(new RegExp(v.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'), 'g'), '')}`, 100_000);
      expect(out).not.toContain(v.replace(/=+$/, ''));
      expect(out).not.toContain(v.replace(/\//g, '%2F').replace(/=+$/, ''));
      expect(out).toContain(REDACTED);
    }), { numRuns: RUNS });
  });

  it('keeps the messages registries really send readable', () => {
    expect(remoteText('manifest unknown')).toBe('manifest unknown');
    // The placeholder of ferry's own hints stays; a real name (tokens travel as user names) goes.
    expect(remoteText('or ssh://user@host:port/dir for another port')).toBe('or ssh://user@host:port/dir for another port');
    expect(remoteText('https://ghp_abc123@github.com/x')).not.toContain('ghp_abc123');
    expect(remoteText('https://user:pw@h/x')).not.toContain('pw');
    expect(remoteText('unauthorized: authentication required')).toBe('unauthorized: authentication required');
    expect(remoteText('blob upload invalid: digest sha256:' + 'a'.repeat(64) + ' does not match')).toContain('sha256:' + 'a'.repeat(64));
    expect(remoteText('token expired; digest invalid')).toBe('token expired; digest invalid');
  });

  it('remoteUrl names scheme, host and path, never user info or query', () => {
    expect(remoteUrl(new URL('https://u:pw@s3.example/bucket/o?X-Amz-Signature=abc&token=t'))).toBe('https://s3.example/bucket/o');
    expect(remoteUrl('ftp://u:pw@files.example/x?y')).toBe('ftp://files.example/x');
    expect(remoteUrl('data:text/plain;base64,' + 'A'.repeat(500)).length).toBeLessThan(60);
    expect(remoteUrl('http://exa\u001bmple\u202e/')).not.toMatch(FORBIDDEN);
  });
});

describe('where registry error text enters messages', () => {
  const echo = (headers: string) => Buffer.from(JSON.stringify({ errors: [{ code: 'DENIED\x1b[2J', message: `requested access to the resource is denied; request was ${headers}\x1b]0;owned\x07\u202e` }] }));

  it('parseRegistryErrors redacts and strips code and message (so do the messages and --json details built from them)', () => {
    rememberSecret('Ferry-S3cret+/=pa55word!', 'courier');
    const basic = Buffer.from('courier:Ferry-S3cret+/=pa55word!').toString('base64');
    const [e] = parseRegistryErrors(echo(`{"Authorization":["Basic ${basic}"],"X-Pass":["Ferry-S3cret+/=pa55word!"]}`));
    expect(e!.code).toBe('DENIED');
    expect(JSON.stringify(e)).not.toContain(basic);
    expect(JSON.stringify(e)).not.toContain('Ferry-S3cret');
    expect(JSON.stringify(e)).not.toMatch(FORBIDDEN);
    expect(e!.message).toContain('requested access to the resource is denied');
  });

  it('keeps at most 10 entries of a body that lists thousands', () => {
    const body = Buffer.from(JSON.stringify({ errors: Array.from({ length: 5000 }, () => ({ code: 'X', message: 'y' })) }));
    expect(parseRegistryErrors(body)).toHaveLength(10);
  });

  it('a Harbor API error echoing the Authorization header keeps neither the header value nor controls', () => {
    const basic = Buffer.from('robot$ci:tok-3n-Secret').toString('base64');
    const err = harborError(403, echo(`Authorization: Basic ${basic}`), { registry: 'harbor.corp', user: 'robot$ci', what: 'creating project "x"' });
    expect(err.code).toBe('E_DENIED');
    const doc = JSON.stringify({ m: err.message, d: err.details, h: err.hint });
    expect(doc).not.toContain(basic);
    expect(doc).not.toMatch(FORBIDDEN);
  });
});
