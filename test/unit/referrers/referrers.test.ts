import { createHash, createPublicKey } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { ImageRequest } from '../../../src/copy/plan.js';
import { parseDigest } from '../../../src/oci/digest.js';
import { checkSignature, type SignatureLayer } from '../../../src/referrers/cosign.js';
import type { FoundReferrer, Subject } from '../../../src/referrers/discover.js';
import { kindOf, ReferrerFinder } from '../../../src/referrers/discover.js';
import type { ImageSource } from '../../../src/transports/types.js';
import { groupReferrers, referrerRequests } from '../../../src/referrers/requests.js';
import { cosignTag, parseSchemeTag, referrersTag } from '../../../src/referrers/scheme.js';
import { generateCosignKeys, makeSignature, SIGNATURE_ANNOTATION } from '../../support/cosign.js';

const d = (s: string) => parseDigest(`sha256:${createHash('sha256').update(s).digest('hex')}`);

describe('tag scheme', () => {
  it('names and parses cosign and fallback tags', () => {
    const x = d('x');
    expect(cosignTag(x, '.sig')).toBe(`sha256-${x.slice(7)}.sig`);
    expect(parseSchemeTag(cosignTag(x, '.att'))).toEqual({ subject: x, kind: 'attestation' });
    expect(parseSchemeTag(cosignTag(x, '.sbom'))).toEqual({ subject: x, kind: 'sbom' });
    expect(parseSchemeTag(referrersTag(x))).toEqual({ subject: x, kind: 'referrers-index' });
    for (const t of ['latest', undefined, `sha256-${x.slice(7)}.sigx`, `sha256-${x.slice(8)}.sig`, `sha512-${x.slice(7)}`]) expect(parseSchemeTag(t)).toBeUndefined();
  });

  it('classifies OCI artifact types', () => {
    expect(kindOf('application/vnd.dev.cosign.artifact.sig.v1+json')).toBe('signature');
    expect(kindOf('application/vnd.dsse.envelope.v1+json')).toBe('attestation');
    expect(kindOf('application/spdx+json')).toBe('sbom');
    expect(kindOf('application/vnd.cyclonedx+json')).toBe('sbom');
    expect(kindOf(undefined)).toBe('referrer');
  });
});

describe('referrer requests', () => {
  const subject: Subject = { sourceRepository: 'r.io/a', targetRepository: 'r.io/a', digest: d('img'), origin: 'r.io/a:1' };
  const sig: FoundReferrer = { subject, digest: d('sig'), tag: cosignTag(d('img'), '.sig'), kind: 'signature', via: 'tag' };
  const api: FoundReferrer = { subject, digest: d('sbom'), kind: 'sbom', via: 'api' };
  const inIndex: FoundReferrer = { subject, digest: d('att'), kind: 'attestation', via: 'index' };

  it('pins tags by digest, keeps API referrers digest-only, leaves index entries inside their index', () => {
    const reqs = referrerRequests([api, inIndex, sig], [], []);
    expect(reqs).toEqual([
      { sourceRepository: 'r.io/a', sourceReference: sig.digest, targetRepository: 'r.io/a', targetTag: sig.tag, origin: `r.io/a:${sig.tag!}` },
      { sourceRepository: 'r.io/a', sourceReference: api.digest, targetRepository: 'r.io/a', origin: `r.io/a@${api.digest}` },
    ].sort((a, b) => (a.origin < b.origin ? -1 : 1)));
  });

  it('does not ask twice for what the user listed or what is already exported', () => {
    const listed: ImageRequest = { sourceRepository: 'r.io/a', sourceReference: sig.tag!, targetRepository: 'r.io/a', targetTag: sig.tag!, origin: 'x' };
    expect(referrerRequests([sig, sig, api], [listed], [{ repository: 'r.io/a', digest: api.digest }])).toEqual([]);
  });

  it('groups by subject for the export result', () => {
    const g = groupReferrers([sig, api, sig]);
    expect(g).toHaveLength(1);
    expect(g[0]!.image).toBe('r.io/a:1');
    expect(g[0]!.referrers.map((r) => r.kind).sort()).toEqual(['sbom', 'signature']);
  });
});

describe('cosign signature check', () => {
  const keys = generateCosignKeys();
  const image = d('image');
  const layerOf = (made: ReturnType<typeof makeSignature>): { layer: SignatureLayer; payload: Buffer } => {
    const l = made.manifest.layers[0]! as { mediaType: string; digest: string; size: number; bytes?: Buffer; annotations?: Record<string, string> };
    return { layer: { payload: parseDigest(l.digest), size: l.size, mediaType: l.mediaType, signature: l.annotations![SIGNATURE_ANNOTATION]! }, payload: l.bytes! };
  };

  it('accepts a signature made with the key over a payload naming the image', async () => {
    const { layer, payload } = layerOf(makeSignature('r.io/a', image, [keys.privateKey]));
    expect(checkSignature(layer, payload, createPublicKey(keys.publicPem), image)).toBeUndefined();
  });

  it('rejects another key, a changed payload, another image, a missing payload or annotation', async () => {
    const pub = createPublicKey(keys.publicPem);
    const other = createPublicKey(generateCosignKeys().publicPem);
    const good = layerOf(makeSignature('r.io/a', image, [keys.privateKey]));
    expect(checkSignature(good.layer, good.payload, other, image)).toMatch(/does not verify/);
    const tampered = layerOf(makeSignature('r.io/a', image, [keys.privateKey], { tamper: (p) => Buffer.from(p.toString().replace('r.io/a', 'r.io/b')) }));
    expect(checkSignature(tampered.layer, tampered.payload, pub, image)).toMatch(/does not verify/);
    expect(checkSignature(good.layer, good.payload, pub, d('other'))).toMatch(new RegExp(`signs ${image}, not`));
    expect(checkSignature(good.layer, undefined, pub, image)).toMatch(/not in this bundle/);
    expect(checkSignature({ ...good.layer, signature: undefined }, good.payload, pub, image)).toMatch(/no dev.cosignproject.cosign\/signature/);
    expect(checkSignature({ ...good.layer, signature: 'bm90IGEgc2lnbmF0dXJl' }, good.payload, pub, image)).toMatch(/does not verify/);
    expect(checkSignature({ ...good.layer, mediaType: 'application/octet-stream' }, good.payload, pub, image)).toMatch(/not a cosign simple-signing/);
  });
});

describe('referrer discovery over many subjects', () => {
  const source = { description: 'nowhere' } as unknown as ImageSource;

  it('keeps a bounded number of subjects in flight, not all of them (10,000 at once held ~100 MB of promises)', async () => {
    const finder = new ReferrerFinder(source, { jobs: 4 });
    let inFlight = 0;
    let most = 0;
    let done = 0;
    await finder.all(Array.from({ length: 10_000 }, (_, i) => i), async () => {
      most = Math.max(most, ++inFlight);
      await new Promise((r) => setImmediate(r));
      inFlight--;
      done++;
    });
    expect(done).toBe(10_000);
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(16);
  });

  it('starts no further subject after the first failure', async () => {
    const finder = new ReferrerFinder(source, { jobs: 1 });
    const started: number[] = [];
    await expect(finder.all([0, 1, 2, 3, 4, 5, 6, 7, 8, 9], async (i) => {
      started.push(i);
      await new Promise((r) => setImmediate(r));
      if (i === 0) throw new Error('registry said no');
    })).rejects.toThrow('registry said no');
    expect(started.length).toBeLessThanOrEqual(4);
  });
});
