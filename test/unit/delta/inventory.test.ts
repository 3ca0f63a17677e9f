import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { isFerryError } from '../../../src/errors.js';
import type { Digest } from '../../../src/oci/digest.js';
import { nextLinkTarget } from '../../../src/transports/registry/pages.js';
import { diffInventories } from '../../../src/delta/diff.js';
import { buildInventory, inventoryId, parseInventory, serialiseInventory } from '../../../src/delta/inventory.js';
import { canonicalJson } from '../../../src/transports/bundle/metadata.js';

const d = (s: string): Digest => `sha256:${createHash('sha256').update(s).digest('hex')}` as Digest;

function inv(images: { repository: string; tag?: string | undefined; digest: Digest }[], blobs: [string, number][]) {
  return buildInventory({ source: { kind: 'registry-layout', description: 'test' }, images, blobs: blobs.map(([s, size]) => ({ digest: d(s), size })) });
}

describe('inventory document', () => {
  it('round-trips; the id covers images and blobs, not time or source', () => {
    const a = inv([{ repository: 'b/x', tag: '1', digest: d('m1') }, { repository: 'a/y', digest: d('m2') }], [['l2', 20], ['l1', 10], ['l1', 10]]);
    const back = parseInventory(serialiseInventory(a), 'a.json');
    expect(back).toEqual(a);
    expect(a.images.map((i) => i.repository)).toEqual(['a/y', 'b/x']);
    expect(a.blobs).toHaveLength(2);
    const b = buildInventory({ source: { kind: 'registry', description: 'other' }, images: [...a.images].reverse(), blobs: [...a.blobs].reverse(), created: new Date(0) });
    expect(b.id).toBe(a.id);
    expect(inv(a.images, [['l1', 10]]).id).not.toBe(a.id);
  });

  it('refuses a tampered document, a bad name, a newer version', () => {
    const a = inv([{ repository: 'x', tag: '1', digest: d('m') }], [['l', 1]]);
    const edit = (f: (o: Record<string, any>) => void) => {
      const o = JSON.parse(serialiseInventory(a).toString()) as Record<string, any>;
      f(o);
      return Buffer.from(JSON.stringify(o));
    };
    const code = (bytes: Buffer) => {
      try {
        parseInventory(bytes, 'site.json');
        return 'ok';
      } catch (e) {
        if (!isFerryError(e)) throw e;
        expect(e.message).toContain('site.json');
        return e.code;
      }
    };
    expect(code(edit((o) => { o.blobs[0].size = 2; }))).toBe('E_BUNDLE_INVALID');
    expect(code(edit((o) => { o.images[0].repository = '../../etc'; }))).toBe('E_NAME_UNSAFE');
    expect(code(edit((o) => { o.version = 99; }))).toBe('E_BUNDLE_INVALID');
    expect(code(edit((o) => { o.format = 'ferry-bundle'; }))).toBe('E_BUNDLE_INVALID');
    expect(code(Buffer.from('not json'))).toBe('E_BUNDLE_INVALID');
    expect(code(edit(() => {}))).toBe('ok');
  });

  it('id is independent of input order (property)', () => {
    fc.assert(fc.property(fc.array(fc.tuple(fc.string({ minLength: 1, maxLength: 5 }), fc.nat(1000)), { maxLength: 20 }), (blobs) => {
      const seen = new Map<string, number>();
      for (const [s, n] of blobs) if (!seen.has(s)) seen.set(s, n);
      const uniq = [...seen];
      expect(inv([], uniq).id).toBe(inv([], [...uniq].reverse()).id);
    }));
  });
});

describe('registry pagination', () => {
  it('hashes {images, blobs} as canonicalJson writes them, without building the text', () => {
    const image = fc.record({ repository: fc.stringMatching(/^[a-z0-9]+(\/[a-z0-9]+){0,2}$/), tag: fc.option(fc.stringMatching(/^\w[\w.-]{0,20}$/), { nil: undefined }), digest: fc.string().map(d) });
    const blob = fc.record({ digest: fc.string().map(d), size: fc.nat() });
    fc.assert(fc.property(fc.array(image, { maxLength: 20 }), fc.array(blob, { maxLength: 20 }), (imgs, blobs) => {
      const images = imgs.map((i) => (i.tag === undefined ? { repository: i.repository, digest: i.digest } : i));
      const expected = `sha256:${createHash('sha256').update(canonicalJson({ images, blobs })).digest('hex')}`;
      expect(inventoryId(images, blobs)).toBe(expected);
    }), { numRuns: 300 });
  });

  it('reads the rel="next" target of a Link header (the registry client then keeps it on the registry\'s origin)', () => {
    expect(nextLinkTarget('</v2/_catalog?last=b&n=2>; rel="next"')).toBe('/v2/_catalog?last=b&n=2');
    expect(nextLinkTarget(['</v2/x?last=a>; rel="prev"', '</v2/x?last=c>; rel=next'])).toBe('/v2/x?last=c');
    expect(nextLinkTarget(undefined)).toBeUndefined();
    expect(nextLinkTarget('</v2/x>; rel="prev"')).toBeUndefined();
  });
});

describe('diff', () => {
  it('finds added, removed, changed images and blob bytes each way; drops hosts when only one side has them', () => {
    const a = inv([{ repository: 'apps/web', tag: '1', digest: d('w1') }, { repository: 'apps/old', tag: '1', digest: d('o') }, { repository: 'apps/api', tag: '1', digest: d('a') }], [['base', 100], ['web1', 10]]);
    const b = buildInventory({
      source: { kind: 'bundle', description: 'b' },
      images: [{ repository: 'reg.example/apps/web', tag: '1', digest: d('w2') }, { repository: 'reg.example/apps/new', tag: '1', digest: d('n') }, { repository: 'reg.example/apps/api', tag: '1', digest: d('a') }],
      blobs: [{ digest: d('base'), size: 100 }, { digest: d('web2'), size: 30 }, { digest: d('new'), size: 5 }],
    });
    const r = diffInventories({ where: 'a', kind: 'inventory', inventory: a }, { where: 'b', kind: 'bundle', inventory: b });
    expect(r.hostsDropped).toBe(true);
    expect(r.images.changed).toEqual([{ image: 'apps/web:1', from: d('w1'), to: d('w2') }]);
    expect(r.images.added.map((x) => x.image)).toEqual(['apps/new:1']);
    expect(r.images.removed.map((x) => x.image)).toEqual(['apps/old:1']);
    expect(r.images.unchanged).toBe(1);
    expect(r.blobs.onlyB).toEqual({ count: 2, bytes: 35 });
    expect(r.blobs.onlyA).toEqual({ count: 1, bytes: 10 });
    expect(r.blobs.both).toEqual({ count: 1, bytes: 100 });
  });
});
