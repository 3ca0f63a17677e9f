// Referrer discovery asks each registry as little as it can, counted at a proxy in
// front of the real docker-registry: over a WAN every request is a round trip, and the
// per-image lookups (three cosign tags, the referrers API, the fallback tag) used to be
// most of an export. A registry's missing referrers API is learnt once; a repository's
// tag list answers every scheme-tag question; what is carried stays the same when the
// registry will not list tags, and when it does have the referrers API.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cosignTag, generateCosignKeys, makeSignature, makeSubjectArtifact, pushReferrer, pushTagged } from '../support/cosign.js';
import type { Image } from '../support/images.js';
import { type CliEnv, entry, ferryOk, jsonOf, startCliEnv } from './cli-fixture.js';
import { startProxy, type Proxy, type ProxyHooks } from './registry-proxy.js';

interface ExportJson {
  images: number;
  referrers?: { images: { image: string; digest: string; referrers: { reference: string; digest: string; kind: string }[] }[]; skipped: unknown[] };
}

let env: CliEnv;
let web: Image;
let sbom: Image;
let webSigDigest: string;
let multiSigDigest: string;
let refIndexDigest: string;
/** Every tagged image of the corpus, `repo:tag`. */
let tagged: string[];
let repositories: string[];
/** Distinct images among them (two tags on one image are one subject). */
let subjects: number;

beforeAll(async () => {
  env = await startCliEnv(0x53);
  const keys = generateCosignKeys();
  web = entry(env.corpus, 'apps/web').artifact as Image;
  const webSig = makeSignature(`${env.corpus.host}/apps/web`, web.digest, [keys.privateKey]);
  await pushTagged(env.reg.url, 'apps/web', webSig);
  webSigDigest = webSig.manifest.digest;
  sbom = makeSubjectArtifact(web, 'web');
  refIndexDigest = (await pushReferrer(env.reg.url, 'apps/web', sbom, web.digest)).digest;
  const multi = entry(env.corpus, 'multi/arch').artifact;
  const multiSig = makeSignature(`${env.corpus.host}/multi/arch`, multi.digest, [keys.privateKey]);
  await pushTagged(env.reg.url, 'multi/arch', multiSig);
  multiSigDigest = multiSig.manifest.digest;
  tagged = env.corpus.entries.flatMap((e) => e.tags.map((t) => `${e.repo}:${t}`));
  repositories = [...new Set(env.corpus.entries.filter((e) => e.tags.length > 0).map((e) => e.repo))];
  subjects = new Set(env.corpus.entries.filter((e) => e.tags.length > 0).map((e) => `${e.repo}@${e.digest}`)).size;
});
afterAll(async () => env?.stop());

/** Exports every tagged corpus image through a proxy with `hooks`; returns the result and what the proxy saw. */
async function exportThrough(hooks: ProxyHooks, name: string, more: string[] = []): Promise<{ out: ExportJson; proxy: Proxy; host: string }> {
  const proxy = await startProxy(env.reg.url, hooks);
  try {
    const refs = [...tagged, ...more].map((r) => `${proxy.host}/${r}`);
    const out = jsonOf<ExportJson>(await ferryOk(['export', ...refs, '-o', env.path(`${name}.tar`), '--cache', env.path(`${name}-cache`), '--plain-http', proxy.host, '--json']));
    return { out, proxy, host: proxy.host };
  } finally {
    await proxy.stop();
  }
}

/** Referrers per image, host-free, sorted: what was carried. */
function carried(out: ExportJson, host: string): string[] {
  return (out.referrers?.images ?? []).flatMap((g) => g.referrers.map((r) => `${g.image} <- ${r.reference} ${r.kind} ${r.digest}`.replaceAll(`${host}/`, ''))).sort();
}

const referrersApiGets = (p: Proxy): number => p.log.filter((l) => l.method === 'GET' && l.path.includes('/referrers/')).length;
const schemeTagGets = (p: Proxy): string[] => p.log.filter((l) => l.method === 'GET' && /\/manifests\/sha256-/.test(l.path)).map((l) => l.path.split('/manifests/')[1]!);

describe('referrer discovery against distribution 2.8 (no referrers API)', () => {
  let plain: { out: ExportJson; proxy: Proxy; host: string };
  beforeAll(async () => {
    plain = await exportThrough({}, 'plain');
  });

  it('carries the signatures and the fallback index with its SBOM', () => {
    expect(carried(plain.out, plain.host)).toEqual([
      `apps/web:v1 <- apps/web:${cosignTag(web.digest, '.sig')} signature ${webSigDigest}`,
      `apps/web:v1 <- apps/web:${cosignTag(web.digest, '')} referrers-index ${refIndexDigest}`,
      `apps/web:v1 <- apps/web@${sbom.digest} sbom ${sbom.digest}`,
      `multi/arch:1.0 <- multi/arch:${cosignTag(entry(env.corpus, 'multi/arch').digest, '.sig')} signature ${multiSigDigest}`,
    ].sort());
  });

  it('asks the referrers API once for the whole registry: its 404 is remembered', () => {
    expect(referrersApiGets(plain.proxy)).toBe(1);
  });

  it('lists each repository\'s tags once, and fetches only the scheme tags that exist', () => {
    for (const repo of repositories) expect(plain.proxy.count('GET', `/v2/${repo}/tags/list`), repo).toBe(1);
    expect(schemeTagGets(plain.proxy).sort()).toEqual([
      cosignTag(web.digest, '.sig'), cosignTag(web.digest, ''), cosignTag(entry(env.corpus, 'multi/arch').digest, '.sig'),
    ].sort());
  });
});

describe('the same referrers when the registry helps less or more', () => {
  it('a registry that refuses tag lists: each tag is asked for, the same referrers are carried', async () => {
    const denied = await exportThrough({
      inject: (req) => (req.url?.includes('/tags/list') ? { status: 403, headers: { 'content-type': 'application/json' }, body: '{"errors":[{"code":"DENIED","message":"listing denied"}]}' } : undefined),
    }, 'no-list');
    const plain = await exportThrough({}, 'plain-again');
    expect(carried(denied.out, denied.host)).toEqual(carried(plain.out, plain.host));
    expect(denied.out.images).toBe(plain.out.images);
    // Without a list, every subject's three cosign tags and its fallback tag are asked for.
    expect(schemeTagGets(denied.proxy).length).toBeGreaterThanOrEqual(4 * subjects);
  });

  it('a registry with the referrers API: every subject asks it, the fallback tag is not used, the listed SBOM travels by digest', async () => {
    const index = (manifests: unknown[]): string => JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests });
    const withApi = await exportThrough({
      inject: (req) => {
        const m = /\/referrers\/(sha256:[a-f0-9]{64})/.exec(req.url ?? '');
        if (!m) return undefined;
        const listed = m[1] === web.digest ? [{ mediaType: sbom.mediaType, digest: sbom.digest, size: sbom.size, artifactType: 'application/spdx+json' }] : [];
        return { status: 200, headers: { 'content-type': 'application/vnd.oci.image.index.v1+json' }, body: index(listed) };
      },
    }, 'api');
    // One per subject, and one per referrer found (the two signatures, the SBOM): their own referrers.
    expect(referrersApiGets(withApi.proxy)).toBe(subjects + 3);
    expect(schemeTagGets(withApi.proxy)).not.toContain(cosignTag(web.digest, ''));
    expect(carried(withApi.out, withApi.host)).toEqual([
      `apps/web:v1 <- apps/web:${cosignTag(web.digest, '.sig')} signature ${webSigDigest}`,
      `apps/web:v1 <- apps/web@${sbom.digest} sbom ${sbom.digest}`,
      `multi/arch:1.0 <- multi/arch:${cosignTag(entry(env.corpus, 'multi/arch').digest, '.sig')} signature ${multiSigDigest}`,
    ].sort());
  });
});

describe('tag lists in pages', () => {
  const json = { 'content-type': 'application/json' };
  let webTags: string[];
  /** apps/web twice (v1 and the digest-only image): a list of up to two pages is worth it there. */
  let pinned: string;
  let reference: { out: ExportJson; host: string };
  beforeAll(async () => {
    webTags = ((await (await fetch(`${env.reg.url}/v2/apps/web/tags/list`)).json()) as { tags: string[] }).tags.sort();
    expect(webTags.length).toBeGreaterThanOrEqual(3);
    pinned = `apps/web@${entry(env.corpus, 'apps/web', false).digest}`;
    reference = await exportThrough({}, 'pages-ref', [pinned]);
  });
  /** Serves apps/web's tag list in `pages` pages, page k linking to `next(k + 1)`. */
  const paged = (pages: number, next: (k: number) => string): ProxyHooks => ({
    inject: (req) => {
      const m = /^\/v2\/apps\/web\/tags\/list\?n=1000(?:&page=(\d+))?$/.exec(req.url ?? '');
      if (!m) return undefined;
      const k = Number(m[1] ?? 0);
      const size = Math.ceil(webTags.length / pages);
      const headers: Record<string, string> = k + 1 < pages ? { ...json, link: `<${next(k + 1)}>; rel="next"` } : json;
      return { status: 200, headers, body: JSON.stringify({ name: 'apps/web', tags: webTags.slice(k * size, (k + 1) * size) }) };
    },
  });
  const here = (k: number): string => `/v2/apps/web/tags/list?n=1000&page=${k}`;
  const webLists = (p: Proxy): number => p.count('GET', '/v2/apps/web/tags/list');
  const webSchemeGets = (p: Proxy): number => p.log.filter((l) => l.method === 'GET' && l.path.startsWith('/v2/apps/web/manifests/sha256-')).length;
  /** apps/web's scheme tags that exist: the .sig and the fallback index. */
  const existing = (): number => webTags.filter((t) => t.startsWith('sha256-')).length;

  it('pages are followed while they are no more than the images to look up there; the same referrers travel', async () => {
    const two = await exportThrough(paged(2, here), 'pages-two', [pinned]);
    expect(webLists(two.proxy)).toBe(2);
    expect(carried(two.out, two.host)).toEqual(carried(reference.out, reference.host));
    expect(webSchemeGets(two.proxy)).toBe(existing());
  });

  it('a longer list, or a next page on another origin, leaves apps/web to tag-by-tag lookups: the same referrers travel', async () => {
    const long = await exportThrough(paged(3, here), 'pages-long', [pinned]);
    expect(webLists(long.proxy)).toBe(2);
    expect(carried(long.out, long.host)).toEqual(carried(reference.out, reference.host));
    expect(webSchemeGets(long.proxy)).toBeGreaterThan(existing());
    const away = await exportThrough(paged(2, (k) => `http://other.invalid${here(k)}`), 'pages-away', [pinned]);
    expect(webLists(away.proxy)).toBe(1);
    expect(carried(away.out, away.host)).toEqual(carried(reference.out, reference.host));
    expect(webSchemeGets(away.proxy)).toBeGreaterThan(existing());
  });
});
