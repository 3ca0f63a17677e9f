import { createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { fingerprint, hostLookupName, keyTypeOf, parseKnownHosts, patternsMatch } from '../../../src/net/ssh/known-hosts.js';

function blob(type: string, body: Buffer): Buffer {
  const t = Buffer.from(type);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(t.length);
  return Buffer.concat([len, t, body]);
}

describe('known_hosts matching', () => {
  it('builds the lookup name as ssh does', () => {
    expect(hostLookupName('h.example', 22)).toBe('h.example');
    expect(hostLookupName('127.0.0.1', 2222)).toBe('[127.0.0.1]:2222');
    expect(hostLookupName('[::1]', 2222)).toBe('[::1]:2222');
  });

  it('plain patterns: lists, wildcards, negation, brackets taken literally', () => {
    expect(patternsMatch('a.example,[127.0.0.1]:2222', '[127.0.0.1]:2222')).toBe(true);
    expect(patternsMatch('[127.0.0.1]:2222', '1')).toBe(false);
    expect(patternsMatch('*.corp,!bad.corp', 'good.corp')).toBe(true);
    expect(patternsMatch('*.corp,!bad.corp', 'bad.corp')).toBe(false);
    expect(patternsMatch('host?', 'host1')).toBe(true);
    expect(patternsMatch('host?', 'host10')).toBe(false);
    expect(patternsMatch('*.EXAMPLE.com', 'a.example.com'), 'case-insensitive, as ssh').toBe(true);
    expect(patternsMatch('a.b', 'axb'), 'a dot is a dot').toBe(false);
  });

  it('hashed entries (HMAC-SHA1 over the lookup name)', () => {
    const salt = randomBytes(20);
    const name = '[10.0.0.5]:2222';
    const pattern = `|1|${salt.toString('base64')}|${createHmac('sha1', salt).update(name).digest('base64')}`;
    expect(patternsMatch(pattern, name)).toBe(true);
    expect(patternsMatch(pattern, '10.0.0.5')).toBe(false);
  });

  it('parses markers and skips malformed lines; fingerprints like ssh-keygen', () => {
    const key = blob('ssh-ed25519', randomBytes(36));
    const entries = parseKnownHosts(`# c\n\n@revoked * ssh-ed25519 ${key.toString('base64')}\nbroken-line\nh ssh-ed25519 ${key.toString('base64')} comment\n`, 'kh');
    expect(entries.map((e) => [e.marker, e.patterns, e.where])).toEqual([['@revoked', '*', 'kh:3'], ['', 'h', 'kh:5']]);
    expect(keyTypeOf(key)).toBe('ssh-ed25519');
    expect(fingerprint(key)).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
  });
});
