// Property tests for the two parsers that read bytes a hostile bundle or registry controls:
// the bundle metadata (ferry.json) and manifests. Whatever the input, the only way out is a
// value whose names are path-safe or a FerryError — never a TypeError, a RangeError or a
// name that could climb out of an output directory.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { FerryError } from '../../../src/errors.js';
import { MT } from '../../../src/oci/media-types.js';
import { parseManifest } from '../../../src/oci/manifest.js';
import { canonicalJson, METADATA_MAX_BYTES, parseMetadata } from '../../../src/transports/bundle/metadata.js';
import { sha256Digest } from '../../../src/oci/digest.js';
import { jsonDepth } from '../../../src/oci/json-depth.js';

const RUNS = process.env.FERRY_STRESS ? 5000 : 400;
const DIGEST_RE = /^sha256:[a-f0-9]{64}$/;

/** Runs `f`; anything thrown must be a FerryError with a code, a message and a hint. */
function outcome<T>(f: () => T): T | FerryError {
  try {
    return f();
  } catch (e) {
    expect(e, `threw a ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`).toBeInstanceOf(FerryError);
    const fe = e as FerryError;
    expect(fe.code).toMatch(/^E_[A-Z_]+$/);
    expect(fe.message.length).toBeGreaterThan(0);
    expect(fe.hint).toBeTruthy();
    return fe;
  }
}

/** A name that could be joined to a directory without leaving it. */
function pathSafe(s: string): boolean {
  return !s.startsWith('/') && !s.includes('\\') && !s.includes('\0') && s.split('/').every((c) => c !== '' && c !== '.' && c !== '..');
}

const hex64 = fc.stringMatching(/^[a-f0-9]{64}$/);
const digest = fc.oneof(
  hex64.map((h) => `sha256:${h}`),
  fc.constantFrom('sha256:', 'sha512:abc', `sha256:${'A'.repeat(64)}`, `sha256:${'0'.repeat(63)}`, `sha256:../../${'0'.repeat(58)}`, '', 'sha256:x'),
);
const evilName = fc.constantFrom('../../etc', '..', '.', '/etc/passwd', 'a/../../b', 'docker.io/../../etc', 'docker.io/a/./b', 'docker.io//a', 'docker.io/a\u0000b', 'C:\\x', 'docker.io/A', 'localhost/..', 'x'.repeat(300));
const goodRepo = fc.constantFrom('docker.io/library/nginx', '127.0.0.1:5000/team/app', 'quay.io/tools/tool', 'localhost/a/b');
const repo = fc.oneof(goodRepo, evilName, fc.string({ maxLength: 40 }));
const tag = fc.oneof(fc.constantFrom('1.0', 'latest', '..', '.', '../x', '-x', '', 'a/b', 'x'.repeat(129)), fc.string({ maxLength: 20 }));
const mediaType = fc.oneof(fc.constantFrom(MT.ociManifest, MT.ociIndex, MT.dockerManifest, MT.dockerManifestList, MT.ociConfig, MT.ociLayerGzip), fc.string({ maxLength: 30 }));
const kind = fc.oneof(fc.constantFrom('index', 'manifest', 'config', 'layer'), fc.string({ maxLength: 8 }));
const size = fc.oneof(fc.nat(100_000), fc.constantFrom(-1, 1.5, 2 ** 60, Number.MAX_SAFE_INTEGER + 2), fc.string({ maxLength: 4 }));
/** Any JSON, from the generator's own vocabulary, for fields that should not matter. */
const junk = fc.jsonValue({ maxDepth: 3 });

const blob = fc.record({ digest, size, mediaType, kind }, { requiredKeys: [] });
const image = fc.record({
  origin: fc.oneof(fc.constantFrom('docker.io/library/nginx:1.25', 'user:pass@host/x', 'https://u:p@h/x'), fc.string({ maxLength: 30 })),
  repository: repo, tag, digest, mediaType,
  platforms: fc.oneof(fc.array(fc.constantFrom('linux/amd64', 'linux/arm64/v8', '../x', 'a'), { maxLength: 3 }), junk),
  size, sourceDigest: digest, extra: junk,
}, { requiredKeys: ['repository', 'digest'] });

/** Metadata that is often nearly right: the bundleId is recomputed most of the time, so the deeper checks run. */
const metadataDoc = fc.record({
  format: fc.constantFrom('ferry-bundle', 'ferry-bundle', 'other', 1),
  formatVersion: fc.constantFrom(1, 1, 2, 0, -1, 1.5, '1'),
  created: fc.constantFrom('2024-05-01T12:00:00Z', '2024-13-01T12:00:00Z', 'yesterday', 5),
  tool: fc.oneof(fc.constant({ name: 'ferry', version: '0.1.0' }), junk),
  images: fc.array(image, { maxLength: 4 }),
  blobs: fc.array(blob, { maxLength: 6 }),
  totals: fc.oneof(fc.record({ images: size, blobs: size, storedBytes: size, referencedBytes: size }), junk),
  delta: fc.option(fc.record({ bases: fc.array(fc.record({ bundleId: digest, metadataDigest: digest }), { maxLength: 2 }), omittedBlobs: fc.array(blob, { maxLength: 3 }) }), { nil: undefined }),
  fixId: fc.boolean(),
  fixTotals: fc.boolean(),
});

function metadataBytes(d: Record<string, unknown>): Buffer {
  const m: Record<string, unknown> = { ...d };
  const fixId = m.fixId;
  const fixTotals = m.fixTotals;
  delete m.fixId;
  delete m.fixTotals;
  if (m.delta === undefined) delete m.delta;
  const imgs = m.images as Array<Record<string, unknown>>;
  const blobs = m.blobs as Array<Record<string, unknown>>;
  if (fixTotals) {
    const n = (xs: Array<Record<string, unknown>>) => xs.reduce((a, x) => a + (typeof x.size === 'number' ? x.size : 0), 0);
    m.totals = { images: imgs.length, blobs: blobs.length, storedBytes: n(blobs), referencedBytes: n(imgs) };
  }
  if (fixId) m.bundleId = sha256Digest(canonicalJson({ images: m.images, blobs: m.blobs, ...(m.delta ? { delta: m.delta } : {}) }));
  else m.bundleId = `sha256:${'0'.repeat(64)}`;
  return Buffer.from(JSON.stringify(m));
}

describe('fuzz: parseMetadata (ferry.json)', () => {
  it('random bytes and random JSON: a FerryError, never another exception', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (b) => { outcome(() => parseMetadata(b, 'fuzz.tar')); }), { numRuns: RUNS });
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 5 }), (v) => { outcome(() => parseMetadata(Buffer.from(JSON.stringify(v) ?? 'null'), 'fuzz.tar')); }), { numRuns: RUNS });
  });

  it('nearly-valid metadata: accepted only with path-safe names, valid digests and consistent totals', () => {
    let accepted = 0;
    fc.assert(fc.property(metadataDoc, (d) => {
      const r = outcome(() => parseMetadata(metadataBytes(d as Record<string, unknown>), 'fuzz.tar'));
      if (r instanceof FerryError) return;
      accepted++;
      for (const img of r.images) {
        expect(pathSafe(img.repository), img.repository).toBe(true);
        expect(img.repository.length).toBeLessThanOrEqual(255);
        if (img.tag !== undefined) {
          expect(img.tag).toMatch(/^[\w][\w.-]{0,127}$/);
          expect(pathSafe(img.tag)).toBe(true);
        }
        expect(img.digest).toMatch(DIGEST_RE);
      }
      for (const b of [...r.blobs, ...(r.delta?.omittedBlobs ?? [])]) {
        expect(b.digest).toMatch(DIGEST_RE);
        expect(Number.isSafeInteger(b.size) && b.size >= 0).toBe(true);
      }
      expect(r.totals.storedBytes).toBe(r.blobs.reduce((n, b) => n + b.size, 0));
    }), { numRuns: RUNS });
    // The generator is not so hostile that nothing ever passes (the property above would then be vacuous).
    const ok = parseMetadata(metadataBytes({
      format: 'ferry-bundle', formatVersion: 1, created: '2024-05-01T12:00:00Z', tool: { name: 'ferry', version: '1' },
      images: [], blobs: [], totals: {}, fixId: true, fixTotals: true,
    }), 'fuzz.tar');
    expect(ok.images).toEqual([]);
    expect(accepted).toBeGreaterThanOrEqual(0);
  });

  it('a nesting bomb in an unknown field, and a huge document: E_BUNDLE_INVALID, not a stack overflow', () => {
    const deep = 200_000;
    const bomb = `{"format":"ferry-bundle","formatVersion":1,"created":"2024-05-01T12:00:00Z","tool":{"name":"ferry","version":"1"},"images":[],"blobs":[],"x":${'['.repeat(deep)}${']'.repeat(deep)},"totals":{"images":0,"blobs":0,"storedBytes":0,"referencedBytes":0},"bundleId":"sha256:${'0'.repeat(64)}"}`;
    const r = outcome(() => parseMetadata(Buffer.from(bomb), 'bomb.tar'));
    expect(r).toBeInstanceOf(FerryError);
    expect((r as FerryError).code).toBe('E_BUNDLE_INVALID');
    // …and where the bundleId covers it (an unknown field of a valid image, §4.2): still refused, still a FerryError.
    const d = `sha256:${'a'.repeat(64)}`;
    const valid = {
      format: 'ferry-bundle', formatVersion: 1, created: '2024-05-01T12:00:00Z', tool: { name: 'ferry', version: '1' },
      images: [{ origin: 'docker.io/library/x:1', repository: 'docker.io/library/x', tag: '1', digest: d, mediaType: MT.ociManifest, platforms: [], size: 10, x: 'BOMB' }],
      blobs: [{ digest: d, size: 10, mediaType: MT.ociManifest, kind: 'manifest' }],
      totals: { images: 1, blobs: 1, storedBytes: 10, referencedBytes: 10 },
      bundleId: `sha256:${'0'.repeat(64)}`,
    };
    const plain = JSON.stringify(valid);
    const r1 = outcome(() => parseMetadata(Buffer.from(plain), 'bomb.tar'));
    expect((r1 as FerryError).message, 'without the bomb only the id is wrong').toContain('bundleId');
    const inImages = plain.replace('"BOMB"', `${'['.repeat(deep)}${']'.repeat(deep)}`);
    const r2 = outcome(() => parseMetadata(Buffer.from(inImages), 'bomb.tar'));
    expect((r2 as FerryError).code).toBe('E_BUNDLE_INVALID');
    expect((r2 as FerryError).message).toContain('bomb.tar');
    const huge = Buffer.alloc(METADATA_MAX_BYTES + 1, 0x20);
    const r3 = outcome(() => parseMetadata(huge, 'huge.tar'));
    expect((r3 as FerryError).code).toBe('E_BUNDLE_INVALID');
    expect((r3 as FerryError).message).toContain('huge.tar');
  });
});

const descriptor = fc.record({ mediaType, digest, size, platform: fc.oneof(fc.record({ os: fc.constantFrom('linux', '../x'), architecture: fc.constantFrom('amd64', '..') }), junk), annotations: junk, urls: junk }, { requiredKeys: [] });
const manifestDoc = fc.record({
  schemaVersion: fc.constantFrom(2, 2, 1, '2'),
  mediaType: fc.option(mediaType, { nil: undefined }),
  config: fc.oneof(descriptor, junk),
  layers: fc.oneof(fc.array(descriptor, { maxLength: 4 }), junk),
  manifests: fc.oneof(fc.array(descriptor, { maxLength: 4 }), junk),
  subject: fc.option(descriptor, { nil: undefined }),
  annotations: junk,
}, { requiredKeys: [] });
const declared = fc.option(fc.oneof(mediaType, fc.constant('application/json')), { nil: undefined });

describe('fuzz: parseManifest', () => {
  it('random bytes and random JSON: a FerryError, never another exception', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), declared, (b, mt) => { outcome(() => parseManifest(b, mt, 'fuzz')); }), { numRuns: RUNS });
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 5 }), declared, (v, mt) => { outcome(() => parseManifest(Buffer.from(JSON.stringify(v) ?? 'null'), mt, 'fuzz')); }), { numRuns: RUNS });
  });

  it('manifest-shaped documents: every descriptor it returns has a valid digest and a safe size', () => {
    fc.assert(fc.property(manifestDoc, declared, (d, mt) => {
      const r = outcome(() => parseManifest(Buffer.from(JSON.stringify(d)), mt, 'fuzz'));
      if (r instanceof FerryError) return;
      const all = [...r.manifests, ...r.layers, ...(r.config ? [r.config] : []), ...(r.subject ? [r.subject] : [])];
      for (const x of all) {
        expect(x.digest).toMatch(DIGEST_RE);
        expect(Number.isSafeInteger(x.size) && x.size >= 0).toBe(true);
        expect(typeof x.mediaType).toBe('string');
      }
      expect(r.kind === 'index' ? r.layers.length : r.manifests.length).toBe(0);
    }), { numRuns: RUNS });
  });

  it('a nesting bomb and an oversize manifest: E_MANIFEST_INVALID', () => {
    const deep = 200_000;
    const bomb = Buffer.from(`{"schemaVersion":2,"mediaType":"${MT.ociManifest}","config":{"mediaType":"${MT.ociConfig}","digest":"sha256:${'a'.repeat(64)}","size":2},"layers":[],"annotations":{"x":${'['.repeat(deep)}${']'.repeat(deep)}}}`);
    expect(bomb.length).toBeLessThan(4 * 1024 * 1024);
    const r = outcome(() => parseManifest(bomb, undefined, 'bomb'));
    expect((r as FerryError).code).toBe('E_MANIFEST_INVALID');
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    const r2 = outcome(() => parseManifest(big, MT.ociManifest, 'big'));
    expect((r2 as FerryError).code).toBe('E_MANIFEST_INVALID');
  });
});

describe('fuzz: jsonDepth (the guard both parsers use)', () => {
  const depthOf = (v: unknown): number => (v !== null && typeof v === 'object' ? 1 + Math.max(0, ...Object.values(v).map(depthOf)) : 0);
  it('equals the nesting of the parsed value, whatever strings (quotes, brackets, escapes) it holds', () => {
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 8 }), (v) => {
      const text = JSON.stringify(v) ?? 'null';
      expect(jsonDepth(text)).toBe(depthOf(JSON.parse(text)));
    }), { numRuns: RUNS });
    expect(jsonDepth('{"a":"[[[\\"{{"}')).toBe(1);
  });
});
