// Names in a docker archive keep their registry (what the loaders then show), and
// `--rename` takes a registry host[:port] as its target; other targets still take
// repository paths only and say so.
import { describe, expect, it } from 'vitest';
import { mapFullName, mapRepository, parseRenames } from '../../../src/app/repository-mapping.js';
import { isFerryError } from '../../../src/errors.js';

const fails = (f: () => unknown, code: string, re?: RegExp): void => {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(isFerryError(err, code as never), String(err)).toBe(true);
  if (re) expect(`${(err as Error).message}\n${(err as { hint?: string }).hint ?? ''}`).toMatch(re);
};

describe('mapFullName', () => {
  it('keeps the full source name, docker.io/library included', () => {
    expect(mapFullName('quay.io/calico/node', [])).toBe('quay.io/calico/node');
    expect(mapFullName('docker.io/library/nginx', [])).toBe('docker.io/library/nginx');
    expect(mapFullName('127.0.0.1:5000/a/b/c', [])).toBe('127.0.0.1:5000/a/b/c');
    // a bundle made from a layout on disk has no registry: the name stays as it is
    expect(mapFullName('team/app', [])).toBe('team/app');
  });

  it('applies the longest --rename prefix, to a host:port registry too', () => {
    const renames = parseRenames(['quay.io=127.0.0.1:5941', 'quay.io/calico=registry.local/mirror/calico', 'docker.io/library=library']);
    expect(mapFullName('quay.io/calico/node', renames)).toBe('registry.local/mirror/calico/node');
    expect(mapFullName('quay.io/jetstack/cert-manager', renames)).toBe('127.0.0.1:5941/jetstack/cert-manager');
    expect(mapFullName('docker.io/library/nginx', renames)).toBe('library/nginx');
    expect(mapFullName('quay.io/calico/node', parseRenames(['quay.io/calico/node=[::1]:5000/node']))).toBe('[::1]:5000/node');
  });

  it('refuses a result that is not a name (a registry alone, odd bytes)', () => {
    fails(() => mapFullName('quay.io/calico/node', parseRenames(['quay.io/calico/node=127.0.0.1:5941'])), 'E_NAME_UNSAFE', /name for quay\.io\/calico\/node/);
  });
});

describe('parseRenames', () => {
  it('accepts a repository path or a registry host[:port] with an optional path', () => {
    expect(parseRenames(['quay.io=127.0.0.1:5941', 'a=localhost', 'b=reg.local:5000/x/', 'c=team/apps'])).toEqual([
      { from: 'quay.io', to: '127.0.0.1:5941' }, { from: 'a', to: 'localhost' }, { from: 'b', to: 'reg.local:5000/x' }, { from: 'c', to: 'team/apps' },
    ]);
  });

  it('refuses targets that are neither', () => {
    fails(() => parseRenames(['quay.io=../etc']), 'E_NAME_UNSAFE');
    fails(() => parseRenames(['quay.io=Host:port:1/x']), 'E_NAME_UNSAFE');
    fails(() => parseRenames(['quay.io=a b']), 'E_NAME_UNSAFE');
    fails(() => parseRenames(['quay.io']), 'E_USAGE');
  });
});

describe('mapRepository (registry layouts, dirs, OCI layouts, push)', () => {
  it('still drops the host, and says a host:port rename target is for docker archives', () => {
    expect(mapRepository('quay.io/calico/node', [])).toBe('calico/node');
    fails(() => mapRepository('quay.io/calico/node', parseRenames(['quay.io=127.0.0.1:5941'])), 'E_USAGE', /docker-archive/);
  });
});
