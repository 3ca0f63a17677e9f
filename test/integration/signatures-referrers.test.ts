// Signatures, attestations and SBOMs cross the gap with their images: ferry export
// finds cosign tags and OCI 1.1 referrers (fallback tag on distribution 2.8), import
// and push land them with their tags and digests (checked with the real registry and
// skopeo), and `ferry verify --key` checks cosign signatures offline.
import { writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { parseDigest } from '../../src/oci/digest.js';
import { openRegistrySource } from '../../src/transports/registry/open.js';
import { runFerry } from '../support/cli.js';
import {
  cosignTag, generateCosignKeys, type KeyPair, makeAttestation, makeSignature, makeSubjectArtifact, pushReferrer, pushTagged, type Signature,
} from '../support/cosign.js';
import type { Image, Index } from '../support/images.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeoInspectDigest, skopeoInspectRaw } from '../support/skopeo.js';
import { type CliEnv, entry, type Expectation, ferryOk, jsonOf, readBundleTar, serveAndCheck, startCliEnv } from './cli-fixture.js';
import { metadataOf } from '../support/bundle-metadata.js';

interface ExportJson {
  images: number;
  referrers?: { images: { image: string; digest: string; referrers: { reference: string; digest: string; kind: string }[] }[]; skipped: unknown[] };
}
interface VerifyJson {
  signatures?: { image: string; digest: string; status: string; valid: number; problems: string[] }[];
}
interface ErrorJson {
  error: { code: string; message: string; details: Record<string, unknown> };
}

let env: CliEnv;
let keys: KeyPair;
let pub: string;
let wrongPub: string;
let web: Image;
let multi: Index;
let webSig: Signature;
let webAtt: { manifest: Image; tag: string };
let sbom: Image;
let refIndex: Index;
let multiSig: Signature;
let bundle: string;
let exported: ExportJson;

const q = (repo: string) => `${env.corpus.host}/${repo}`;

beforeAll(async () => {
  env = await startCliEnv(0x51);
  keys = generateCosignKeys();
  pub = env.path('cosign.pub');
  wrongPub = env.path('other.pub');
  await writeFile(pub, keys.publicPem);
  await writeFile(wrongPub, generateCosignKeys().publicPem);
  const url = env.reg.url;

  web = entry(env.corpus, 'apps/web').artifact as Image;
  webSig = makeSignature(q('apps/web'), web.digest, [keys.privateKey]);
  await pushTagged(url, 'apps/web', webSig);
  webAtt = makeAttestation(q('apps/web'), web.digest, keys.privateKey);
  await pushTagged(url, 'apps/web', webAtt);
  sbom = makeSubjectArtifact(web, 'web');
  refIndex = await pushReferrer(url, 'apps/web', sbom, web.digest);

  multi = entry(env.corpus, 'multi/arch').artifact as Index;
  multiSig = makeSignature(q('multi/arch'), multi.digest, [keys.privateKey]);
  await pushTagged(url, 'multi/arch', multiSig);

  // a/b/c: the payload was changed after signing. multi/tools: a valid signature of apps/web copied onto it.
  const abc = entry(env.corpus, 'a/b/c').artifact;
  await pushTagged(url, 'a/b/c', makeSignature(q('a/b/c'), abc.digest, [keys.privateKey], {
    tamper: (p) => Buffer.from(p.toString('utf8').replace(q('a/b/c'), q('a/b/x'))),
  }));
  const tools = entry(env.corpus, 'multi/tools').artifact;
  await pushTagged(url, 'multi/tools', makeSignature(q('multi/tools'), tools.digest, [keys.privateKey], { claimDigest: web.digest }));

  bundle = env.path('signed.tar');
  exported = jsonOf<ExportJson>(await ferryOk(['export', `${q('apps/web')}:v1`, `${q('multi/arch')}:1.0`, `${q('library/base-os')}:1.0`, '-o', bundle, '--cache', env.path('cache'), ...env.net, '--json']));
});
afterAll(async () => env?.stop());

/**
 * What a registry holding bundle `signed.tar` must serve: the images and every referrer, same digests.
 * (The `sha256-<hex>` referrers index is checked raw in checkReferrers: skopeo 1.9's plain inspect
 * refuses an index whose entries are artifacts rather than images.)
 */
function expectations(): Expectation[] {
  return [
    { repo: 'apps/web', ref: 'v1', digest: web.digest },
    { repo: 'apps/web', ref: webSig.tag, digest: webSig.manifest.digest },
    { repo: 'apps/web', ref: webAtt.tag, digest: webAtt.manifest.digest },
    { repo: 'apps/web', ref: sbom.digest, digest: sbom.digest },
    { repo: 'multi/arch', ref: '1.0', digest: multi.digest },
    { repo: 'multi/arch', ref: multiSig.tag, digest: multiSig.manifest.digest },
    { repo: 'library/base-os', ref: '1.0', digest: entry(env.corpus, 'library/base-os').digest },
  ];
}

async function checkReferrers(reg: RegistryHandle): Promise<void> {
  const listed = await skopeoInspectRaw(`${reg.host}/apps/web:${cosignTag(web.digest, '')}`);
  expect(listed.digest).toBe(refIndex.digest);
  // The artifact's bytes, `subject` included, are what was pushed: its digest stays valid.
  const raw = await skopeoInspectRaw(`${reg.host}/apps/web@${sbom.digest}`);
  expect(raw.bytes.equals(sbom.bytes)).toBe(true);
  expect((JSON.parse(raw.bytes.toString('utf8')) as { subject: { digest: string } }).subject.digest).toBe(web.digest);
  expect(await skopeoInspectDigest(`${reg.host}/apps/web:${webSig.tag}`)).toBe(webSig.manifest.digest);
}

describe('export carries signatures, attestations and referrers', () => {
  it('adds the .sig, .att and the referrers index (with the subject artifact inside) to the bundle, and says which image each belongs to', async () => {
    const groups = exported.referrers!.images;
    const forWeb = groups.find((g) => g.image === `${q('apps/web')}:v1`)!;
    expect(forWeb.digest).toBe(web.digest);
    expect(forWeb.referrers).toEqual(expect.arrayContaining([
      { reference: `${q('apps/web')}:${webSig.tag}`, digest: webSig.manifest.digest, kind: 'signature' },
      { reference: `${q('apps/web')}:${webAtt.tag}`, digest: webAtt.manifest.digest, kind: 'attestation' },
      { reference: `${q('apps/web')}:${cosignTag(web.digest, '')}`, digest: refIndex.digest, kind: 'referrers-index' },
      { reference: `${q('apps/web')}@${sbom.digest}`, digest: sbom.digest, kind: 'sbom' },
    ]));
    expect(groups.find((g) => g.image === `${q('multi/arch')}:1.0`)!.referrers.map((r) => r.digest)).toEqual([multiSig.manifest.digest]);
    expect(groups.some((g) => g.image.includes('base-os'))).toBe(false);
    expect(exported.images).toBe(3 + 4);

    const entries = await readBundleTar(bundle);
    const meta = metadataOf(entries.find((e) => e.name === 'ferry.json')!.body!);
    const tags = meta.images.map((i) => `${i.repository}:${i.tag ?? i.digest}`);
    expect(tags).toEqual(expect.arrayContaining([`${q('apps/web')}:${webSig.tag}`, `${q('apps/web')}:${webAtt.tag}`, `${q('apps/web')}:${cosignTag(web.digest, '')}`, `${q('multi/arch')}:${multiSig.tag}`]));
    // Every manifest and payload stored under its own digest: the entry hashes to its name.
    for (const d of [webSig.manifest.digest, webSig.manifest.layers[0]!.digest, webAtt.manifest.digest, sbom.digest, refIndex.digest, multiSig.manifest.digest]) {
      const e = entries.find((x) => x.name === `blobs/sha256/${d.slice(7)}`);
      expect(e, d).toBeDefined();
      expect(e!.digest).toBe(d);
    }
  });

  it('distribution 2.8 has no referrers API: the source says so (undefined), so the sha256-<hex> tag above was the way', async () => {
    const src = openRegistrySource({ registry: env.reg.host, plainHttp: true });
    try {
      expect(await src.referrers('apps/web', parseDigest(web.digest))).toBeUndefined();
    } finally {
      await src.close();
    }
  });

  it('--no-referrers leaves them behind', async () => {
    const out = env.path('plain.tar');
    const r = jsonOf<ExportJson>(await ferryOk(['export', `${q('apps/web')}:v1`, '-o', out, '--cache', env.path('cache'), ...env.net, '--no-referrers', '--json']));
    expect(r.images).toBe(1);
    expect(r.referrers).toBeUndefined();
  });

  it('--platform on a signed index warns that its signature will not match', async () => {
    const r = await ferryOk(['export', `${q('multi/arch')}:1.0`, '--platform', 'linux/amd64', '-o', env.path('amd64.tar'), '--cache', env.path('cache'), ...env.net]);
    expect(r.stderr).toContain(`${q('multi/arch')}:1.0: the index ${multi.digest} is signed (${multiSig.tag})`);
    expect(r.stderr).toContain('will not verify');
  });
});

describe('import and push land them', () => {
  it('registry-layout: served by docker-registry, the .sig/.att/referrers tags resolve with the same digests', async () => {
    const dir = env.path('layout');
    await ferryOk(['import', bundle, '--to', 'registry-layout', dir, '-q']);
    await serveAndCheck(dir, expectations(), checkReferrers);
  });

  it('push into a fresh registry: the same', async () => {
    const target = await startRegistry();
    try {
      await ferryOk(['push', bundle, '--to', target.host, '--plain-http', target.host, '-q']);
      for (const x of expectations()) {
        const got = x.ref.startsWith('sha256:') ? (await skopeoInspectRaw(`${target.host}/${x.repo}@${x.ref}`)).digest : await skopeoInspectDigest(`${target.host}/${x.repo}:${x.ref}`);
        expect(got, `${x.repo} ${x.ref}`).toBe(x.digest);
      }
      await checkReferrers(target);
    } finally {
      await target.stop();
    }
  });
});

describe('ferry verify --key', () => {
  it('passes with the signing key: signed images verified, the unsigned one reported', async () => {
    const r = jsonOf<VerifyJson>(await ferryOk(['verify', bundle, '--key', pub, '--json']));
    const by = new Map(r.signatures!.map((s) => [s.image, s]));
    expect(by.get(`${q('apps/web')}:v1`)).toMatchObject({ status: 'verified', valid: 1, digest: web.digest });
    expect(by.get(`${q('multi/arch')}:1.0`)).toMatchObject({ status: 'verified', valid: 1 });
    expect(by.get(`${q('library/base-os')}:1.0`)).toMatchObject({ status: 'unsigned', valid: 0 });
    // The signatures, attestation and referrers are not themselves subjects.
    expect(r.signatures).toHaveLength(3);
  });

  it('fails with another key, naming the image', async () => {
    const r = await runFerry(['verify', bundle, '--key', wrongPub, '--json']);
    const err = jsonOf<ErrorJson>(r).error;
    expect(err.code).toBe('E_VERIFY_FAILED');
    expect(r.code).toBe(EXIT_STATUS.E_VERIFY_FAILED);
    expect(err.message).toContain(`${q('apps/web')}:v1`);
    expect(err.message).toContain('does not verify with the key');
  });

  it('--require-signed rejects the unsigned image', async () => {
    const r = await runFerry(['verify', bundle, '--key', pub, '--require-signed']);
    expect(r.code).toBe(EXIT_STATUS.E_VERIFY_FAILED);
    expect(r.stderr).toContain('E_VERIFY_FAILED');
    expect(r.stderr).toContain(`${q('library/base-os')}:1.0`);
    expect(r.stderr).not.toContain(`${q('apps/web')}:v1 (`);
  });

  it('fails on a payload changed after signing', async () => {
    const out = env.path('tampered.tar');
    await ferryOk(['export', `${q('a/b/c')}:stable`, '-o', out, '--cache', env.path('cache'), ...env.net, '-q']);
    await ferryOk(['verify', out]); // every digest is right: only the signature can tell
    const r = await runFerry(['verify', out, '--key', pub, '--json']);
    const err = jsonOf<ErrorJson>(r).error;
    expect(err.code).toBe('E_VERIFY_FAILED');
    expect(err.message).toContain(`${q('a/b/c')}:stable`);
    expect(err.message).toContain('does not verify');
  });

  it('fails on a valid signature of another image copied onto this one', async () => {
    const out = env.path('replayed.tar');
    await ferryOk(['export', `${q('multi/tools')}:2024.1`, '-o', out, '--cache', env.path('cache'), ...env.net, '-q']);
    const r = await runFerry(['verify', out, '--key', pub, '--json']);
    const err = jsonOf<ErrorJson>(r).error;
    expect(err.code).toBe('E_VERIFY_FAILED');
    expect(err.message).toContain(`${q('multi/tools')}:2024.1`);
    expect(err.message).toContain(`signs ${web.digest}`);
  });

  it('--require-signed without --key is a usage error', async () => {
    const r = await runFerry(['verify', bundle, '--require-signed']);
    expect(r.code).toBe(EXIT_STATUS.E_USAGE);
  });
});
