import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { sha256Digest } from '../../../src/oci/digest.js';
import {
  buildMetadata, canonicalJson, parseMetadata, serialiseMetadata, validateBundleName, type BundleImage, METADATA_MAX_BYTES,
} from '../../../src/transports/bundle/metadata.js';

const d = (s: string) => sha256Digest(s);

function sample(): ReturnType<typeof buildMetadata> {
  const images: BundleImage[] = [
    { origin: 'quay.io/a/b:2', repository: 'quay.io/a/b', tag: '2', digest: d('m2'), mediaType: 'application/vnd.oci.image.manifest.v1+json', platforms: ['linux/amd64'], size: 30 },
    { origin: '127.0.0.1:5000/x:1', repository: '127.0.0.1:5000/x', tag: '1', digest: d('m1'), mediaType: 'application/vnd.oci.image.manifest.v1+json', platforms: [], size: 20 },
  ];
  return buildMetadata({
    // Version 1, the format earlier ferry wrote: the cases below edit its JSON (version 2: its own describe).
    formatVersion: 1,
    created: '2024-01-02T03:04:05Z',
    toolVersion: '1.2.3',
    images,
    blobs: [
      { digest: d('m1'), size: 5, mediaType: 'application/vnd.oci.image.manifest.v1+json', kind: 'manifest' },
      { digest: d('m2'), size: 5, mediaType: 'application/vnd.oci.image.manifest.v1+json', kind: 'manifest' },
      { digest: d('c'), size: 5, mediaType: 'application/vnd.oci.image.config.v1+json', kind: 'config' },
      { digest: d('l'), size: 10, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', kind: 'layer' },
    ],
  });
}

describe('bundle metadata', () => {
  it('builds sorted, totalled metadata that parses back to the same document', () => {
    const m = sample();
    expect(m.images.map((i) => i.repository)).toEqual(['127.0.0.1:5000/x', 'quay.io/a/b']);
    expect(m.totals).toEqual({ images: 2, blobs: 4, storedBytes: 25, referencedBytes: 50 });
    const back = parseMetadata(serialiseMetadata(m), 'b.tar');
    expect(back).toEqual(m);
  });

  it('bundleId covers content only: same for another created/tool, different for other images', () => {
    const a = sample();
    const b = buildMetadata({ formatVersion: 1, created: '2030-01-01T00:00:00Z', toolVersion: '9', images: a.images, blobs: a.blobs });
    expect(b.bundleId).toBe(a.bundleId);
    const c = buildMetadata({ formatVersion: 1, created: a.created, toolVersion: '1', images: [{ ...a.images[0]!, size: 21 }, a.images[1]!], blobs: a.blobs });
    expect(c.bundleId).not.toBe(a.bundleId);
  });

  it('canonical JSON sorts keys at every level and drops white space', () => {
    expect(canonicalJson({ b: [{ z: 1, a: 'x' }], a: { d: 2, c: null } })).toBe('{"a":{"c":null,"d":2},"b":[{"a":"x","z":1}]}');
  });

  it('keeps unknown fields in the bundleId (additive fields do not break older readers)', () => {
    const m = JSON.parse(serialiseMetadata(sample()).toString()) as Record<string, unknown>;
    (m.images as Array<Record<string, unknown>>)[0]!.futureField = 'x';
    expect(() => parseMetadata(Buffer.from(JSON.stringify(m)), 'b.tar')).toThrow(/bundleId/);
    m.bundleId = sha256Digest(canonicalJson({ images: m.images, blobs: m.blobs }));
    expect(parseMetadata(Buffer.from(JSON.stringify(m)), 'b.tar').images).toHaveLength(2);
  });

  it('refuses wrong totals, duplicate blobs, bad order and metadata over the size cap', () => {
    const base = JSON.parse(serialiseMetadata(sample()).toString()) as Record<string, unknown>;
    const fix = (m: Record<string, unknown>) => { m.bundleId = sha256Digest(canonicalJson({ images: m.images, blobs: m.blobs })); return Buffer.from(JSON.stringify(m)); };
    const clone = () => JSON.parse(JSON.stringify(base)) as Record<string, unknown> & { blobs: unknown[]; totals: Record<string, number>; images: unknown[] };
    const t = clone(); t.totals.storedBytes = 1;
    expect(() => parseMetadata(fix(t), 'b.tar')).toThrow(/storedBytes/);
    const dup = clone(); dup.blobs.push(dup.blobs[3]); dup.totals.blobs = 5; dup.totals.storedBytes = 35;
    expect(() => parseMetadata(fix(dup), 'b.tar')).toThrow(/twice/);
    const order = clone(); order.blobs = [order.blobs[3], order.blobs[0], order.blobs[1], order.blobs[2]];
    expect(() => parseMetadata(fix(order), 'b.tar')).toThrow(/group/);
    const imgs = clone(); imgs.images.reverse();
    expect(() => parseMetadata(fix(imgs), 'b.tar')).toThrow(/out of order/);
    const err = (() => { try { parseMetadata(Buffer.alloc(METADATA_MAX_BYTES + 1, 0x20), 'big.tar'); } catch (e) { return e; } return undefined; })();
    expect(isFerryError(err, 'E_BUNDLE_INVALID')).toBe(true);
    expect((err as Error).message).toContain('big.tar');
  });

  it('validateBundleName: an optional registry host, then a grammar-valid path', () => {
    for (const ok of ['docker.io/library/nginx', '127.0.0.1:5000/a/b', 'localhost/x', 'registry.example.com:443/a__b/c-d', 'python', 'library/nginx', 'team/app', 'docker.io']) expect(validateBundleName(ok, 'n')).toBe(ok);
    for (const bad of ['../../etc', 'Nginx', 'docker.io/../etc', 'docker.io//x', '/docker.io/x', 'docker.io/X', 'docker.io/a/', '..', 'a:b/c', '127.0.0.1:5000', 'x/127.0.0.1:5000/y', `a/${'b'.repeat(254)}`]) {
      let e: unknown;
      try { validateBundleName(bad, 'images[0].repository'); } catch (x) { e = x; }
      expect(isFerryError(e, 'E_NAME_UNSAFE'), bad).toBe(true);
      expect((e as Error).message).toContain('images[0].repository');
    }
  });

  it('the JSON Schema patterns agree with the parser on names and platforms', async () => {
    const schema = JSON.parse(await readFile(new URL('../../../spec/bundle-metadata.schema.json', import.meta.url), 'utf8')) as {
      $defs: { image: { properties: Record<string, { pattern?: string; items?: { pattern: string } }> }; digest: { pattern: string } };
    };
    const repo = new RegExp(schema.$defs.image.properties['repository']!.pattern!);
    for (const ok of ['docker.io/library/nginx', '127.0.0.1:5000/a/b', 'localhost/x', 'python', 'team/app']) expect(repo.test(ok), ok).toBe(true);
    for (const bad of ['../../etc', 'docker.io/../etc', 'docker.io/X', 'Nginx', '127.0.0.1:5000', 'a/127.0.0.1:5000/b']) expect(repo.test(bad), bad).toBe(false);
    const tag = new RegExp(schema.$defs.image.properties['tag']!.pattern!);
    expect(tag.test('1.25')).toBe(true);
    expect(tag.test('../x')).toBe(false);
    expect(new RegExp(schema.$defs.digest.pattern).test(d('x'))).toBe(true);
  });
});
