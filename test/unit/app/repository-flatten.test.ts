// --flatten and the target-tag collision check: the rule on examples, and as properties
// over generated valid names (fast-check), independent of any registry.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { assertNoTagCollisions } from '../../../src/app/bundle-requests.js';
import { flattenRepository, mapRepository, parseFlatten, parseRenames } from '../../../src/app/repository-mapping.js';
import type { ImageRequest } from '../../../src/copy/plan.js';
import { isFerryError } from '../../../src/errors.js';
import { isValidRepository } from '../../../src/oci/reference.js';

const alnum = fc.stringMatching(/^[a-z0-9]{1,6}$/);
const component = fc.tuple(alnum, fc.array(fc.tuple(fc.constantFrom('.', '_', '__', '-', '--'), alnum), { maxLength: 2 }))
  .map(([head, rest]) => head + rest.map(([s, a]) => s + a).join(''));
const repository = fc.array(component, { minLength: 1, maxLength: 7 }).map((c) => c.join('/'));

describe('flattenRepository', () => {
  it('keeps the first N-1 components and joins the rest with "-"', () => {
    expect(flattenRepository('a/b/c/d', 2)).toBe('a/b-c-d');
    expect(flattenRepository('a/b/c/d', 3)).toBe('a/b/c-d');
    expect(flattenRepository('a/b/c/d', 1)).toBe('a-b-c-d');
    expect(flattenRepository('a/b', 2)).toBe('a/b');
    expect(flattenRepository('nginx', 1)).toBe('nginx');
  });

  it('always gives a valid name of at most N components and the same length', () => {
    fc.assert(fc.property(repository, fc.integer({ min: 1, max: 8 }), (name, depth) => {
      const flat = flattenRepository(name, depth);
      expect(isValidRepository(flat)).toBe(true);
      expect(flat.split('/').length).toBeLessThanOrEqual(depth);
      expect(flat.length).toBe(name.length);
      if (name.split('/').length <= depth) expect(flat).toBe(name);
    }));
  });

  it('applies after renames and before the prefix', () => {
    expect(mapRepository('docker.io/a/b/c', [], 'mirror/x', 2)).toBe('mirror/x/a/b-c');
    expect(mapRepository('docker.io/a/b/c', parseRenames(['docker.io/a=team/apps']), '', 2)).toBe('team/apps-b-c');
  });
});

describe('parseFlatten', () => {
  it('accepts depths and refuses anything else with E_USAGE naming the value', () => {
    expect(parseFlatten(undefined)).toBeUndefined();
    expect(parseFlatten('2')).toBe(2);
    for (const bad of ['0', '-1', '1.5', 'x', '', '99']) {
      try {
        parseFlatten(bad);
        expect.unreachable(bad);
      } catch (e) {
        expect(isFerryError(e, 'E_USAGE'), bad).toBe(true);
        expect((e as Error).message).toContain(`--flatten ${bad}`);
      }
    }
  });
});

describe('assertNoTagCollisions', () => {
  const req = (origin: string, targetRepository: string, targetTag: string | undefined, digest: string): ImageRequest => ({
    sourceRepository: origin, sourceReference: digest, targetRepository, origin, ...(targetTag !== undefined ? { targetTag } : {}),
  });
  const d1 = `sha256:${'1'.repeat(64)}`;
  const d2 = `sha256:${'2'.repeat(64)}`;

  it('lets the same image arrive twice, different tags share a repository, and digest-only images pass', () => {
    expect(() => assertNoTagCollisions([
      req('r/a/b/c:1', 'a/b-c', '1', d1), req('r/a/b/c:1', 'a/b-c', '1', d1),
      req('r/a/b-c:2', 'a/b-c', '2', d2), req('r/a/b-c@x', 'a/b-c', undefined, d2), req('r/a/b/c@y', 'a/b-c', undefined, d1),
    ])).not.toThrow();
  });

  it('names every clash and both of its images', () => {
    try {
      assertNoTagCollisions([req('r/a/b/c:1', 'a/b-c', '1', d1), req('r/a/b-c:1', 'a/b-c', '1', d2), req('r/x/y/z:2', 'x/y-z', '2', d1), req('r/x/y-z:2', 'x/y-z', '2', d2)]);
      expect.unreachable();
    } catch (e) {
      expect(isFerryError(e, 'E_USAGE')).toBe(true);
      const m = (e as Error).message;
      expect(m).toContain('2 target tags');
      for (const s of [`a/b-c:1 ← r/a/b/c:1 (${d1}), r/a/b-c:1 (${d2})`, `x/y-z:2 ← r/x/y/z:2 (${d1}), r/x/y-z:2 (${d2})`]) expect(m).toContain(s);
    }
  });
});
