// The page-walk guards of registry listings, on their own: a page read twice (whatever the
// order of its query) and a walk past its cap are E_REGISTRY naming the registry.
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { RegistryClient } from '../../../src/transports/registry/client.js';
import { PageTrail } from '../../../src/transports/registry/pages.js';

const client = new RegistryClient({ registry: 'registry.test:5000' }, {});

function refusal(f: () => void): string {
  try {
    f();
  } catch (e) {
    if (isFerryError(e, 'E_REGISTRY')) return e.message;
    throw e;
  }
  throw new Error('expected E_REGISTRY');
}

describe('PageTrail', () => {
  it('refuses a page already read, the query in any order', () => {
    const trail = new PageTrail(client, 'catalog', 100);
    trail.enter('/v2/_catalog?n=100');
    trail.enter(new URL('http://registry.test:5000/v2/_catalog?n=100&last=b'));
    expect(refusal(() => trail.enter(new URL('http://registry.test:5000/v2/_catalog?last=b&n=100')))).toMatch(/registry\.test:5000: catalog: .*already read \(\/v2\/_catalog\)/);
  });

  it('refuses the page past the cap, all of them new', () => {
    const trail = new PageTrail(client, 'tags of a/b', 3);
    for (const last of ['a', 'b', 'c']) trail.enter(`/v2/a/b/tags/list?last=${last}`);
    expect(refusal(() => trail.enter('/v2/a/b/tags/list?last=d'))).toMatch(/more than 3 pages/);
  });
});
