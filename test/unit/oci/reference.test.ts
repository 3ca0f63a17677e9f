import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { formatReference, isValidRegistry, isValidRepository, parseReference, splitQualifiedName, validateQualifiedName, validateRepository, validateTag } from '../../../src/oci/reference.js';

const HEX = 'a'.repeat(64);

describe('parseReference', () => {
  it.each([
    ['nginx', 'docker.io', 'library/nginx', 'latest', undefined],
    ['nginx:1.25', 'docker.io', 'library/nginx', '1.25', undefined],
    ['docker.io/library/nginx:1.25', 'docker.io', 'library/nginx', '1.25', undefined],
    ['index.docker.io/bitnami/redis:7', 'docker.io', 'bitnami/redis', '7', undefined],
    ['quay.io/calico/node:v3.26.1', 'quay.io', 'calico/node', 'v3.26.1', undefined],
    ['registry.local:5000/team/app@sha256:' + HEX, 'registry.local:5000', 'team/app', undefined, `sha256:${HEX}`],
    ['localhost/a/b/c:x', 'localhost', 'a/b/c', 'x', undefined],
    ['127.0.0.1:5000/a/b/c:tag_1.0-rc', '127.0.0.1:5000', 'a/b/c', 'tag_1.0-rc', undefined],
    ['[::1]:5000/app:1', '[::1]:5000', 'app', '1', undefined],
    ['user/app:1@sha256:' + HEX, 'docker.io', 'user/app', '1', `sha256:${HEX}`],
  ])('%s', (input, registry, repository, tag, digest) => {
    const r = parseReference(input);
    expect(r).toEqual({ registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}) });
  });

  it.each([
    ['', 'empty'],
    ['Nginx:1', 'repository'],
    ['nginx:-bad', 'tag'],
    ['nginx@sha256:abc', 'digest'],
    ['a//b', 'repository'],
    ['../etc/passwd', 'registry host'],
    ['registry.local:5000/../x', 'repository'],
    ['nginx 1.25', 'white space'],
    ['x'.repeat(300), 'longer'],
    ['127.0.0.1:99999/x:1', 'registry host'],
    ['registry.local:0/x:1', 'registry host'],
    ['[::1]:65536/x:1', 'registry host'],
  ])('refuses %j with a message naming where it came from', (input, why) => {
    try {
      parseReference(input, 'images.list:3');
      expect.unreachable();
    } catch (e) {
      expect(isFerryError(e, 'E_REFERENCE')).toBe(true);
      expect((e as Error).message).toContain('images.list:3');
      expect((e as Error).message).toContain(why);
    }
  });

  it('a port is 1-65535 (another number is no address: URL parsing threw later, as E_INTERNAL)', () => {
    expect(['h:1', 'h:65535', '[::1]:5000', '[::1]', '127.0.0.1'].every(isValidRegistry)).toBe(true);
    expect(['h:0', 'h:65536', 'h:99999', '[::1]:70000', 'h:00000000000000000001234567'].some(isValidRegistry)).toBe(false);
  });

  it('splitQualifiedName takes the same first components as hosts as parseReference (capitals included)', () => {
    for (const name of ['UPPER/x', 'Registry/team/app', 'localhost/a', 'h.example/a', 'h:5000/a', 'team/app', 'app']) {
      const split = splitQualifiedName(name);
      const r = (() => {
        try {
          return parseReference(name);
        } catch {
          return undefined;
        }
      })();
      if (r !== undefined && r.registry !== 'docker.io') expect(split.registry).toBe(r.registry);
      if (r?.registry === 'docker.io') expect(split.registry).toBeUndefined();
    }
    expect(splitQualifiedName('UPPER/x')).toEqual({ registry: 'UPPER', repository: 'x' });
  });

  it('round-trips through formatReference (property)', () => {
    const component = fc.stringMatching(/^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/).filter((s) => s.length > 0 && s.length < 30);
    const tag = fc.stringMatching(/^[\w][\w.-]{0,20}$/);
    fc.assert(fc.property(fc.array(component, { minLength: 1, maxLength: 4 }), tag, (parts, t) => {
      const text = `registry.example:5000/${parts.join('/')}:${t}`;
      const ref = parseReference(text);
      expect(formatReference(ref)).toBe(text);
      expect(parseReference(formatReference(ref))).toEqual(ref);
    }));
  });

  it('never throws anything but a FerryError, and never yields a path-escaping repository (fuzz)', () => {
    fc.assert(fc.property(fc.string({ maxLength: 300 }), (s) => {
      try {
        const r = parseReference(s);
        expect(isValidRepository(r.repository)).toBe(true);
        expect(r.repository.split('/')).not.toContain('..');
        expect(r.repository.startsWith('/')).toBe(false);
      } catch (e) {
        expect(isFerryError(e)).toBe(true);
      }
    }), { numRuns: 3000 });
  });
});

describe('name validation (names become paths)', () => {
  it.each(['../../etc', '/abs', 'a/../b', 'a/./b', 'UPPER', 'a\0b', 'a/b/', '', 'a b'])('refuses repository %j', (name) => {
    expect(() => validateRepository(name)).toThrow(expect.objectContaining({ code: 'E_NAME_UNSAFE' }));
  });
  it.each(['..', '.hidden', '-x', 'a/b', 'x'.repeat(129), ''])('refuses tag %j', (tag) => {
    expect(() => validateTag(tag)).toThrow(expect.objectContaining({ code: 'E_NAME_UNSAFE' }));
  });
  it('accepts qualified names with a registry part, refuses escapes after it', () => {
    expect(validateQualifiedName('127.0.0.1:5000/a/b/c')).toBe('127.0.0.1:5000/a/b/c');
    expect(validateQualifiedName('docker.io/library/nginx')).toBe('docker.io/library/nginx');
    expect(() => validateQualifiedName('127.0.0.1:5000/../x')).toThrow(expect.objectContaining({ code: 'E_NAME_UNSAFE' }));
  });
  it('names the refused value itself, whatever made it invalid (a bad host, the length, not a string)', () => {
    const long = `docker.io/${'a'.repeat(250)}`;
    for (const [name, shown] of [['bad host!/x', '"bad host!/x"'], [long, JSON.stringify(long)], [42, '"42"'], [undefined, '"undefined"']] as const) {
      expect(() => validateQualifiedName(name, 'images[3].repository')).toThrow(expect.objectContaining({
        code: 'E_NAME_UNSAFE', message: `images[3].repository: ${shown} is not a valid repository name ([registry host[:port]/]path)`,
      }));
    }
    expect(() => validateTag(7, 'images[3].tag')).toThrow(expect.objectContaining({ code: 'E_NAME_UNSAFE', message: 'images[3].tag: "7" is not a valid tag' }));
  });
});
