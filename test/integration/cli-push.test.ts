// `ferry push` end to end: a bundle into empty registries, checked with skopeo;
// a rerun skips everything; --project-map and a --to prefix place the images.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeoInspectDigest, skopeoInspectRaw } from '../support/skopeo.js';
import { validateRegistryImage } from '../support/validate.js';
import { catalog, type CliEnv, expectationsOf, ferryOk, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';

interface Receipt {
  images: { origin: string; repository: string; tag?: string; digest: string; status: string }[];
  blobs: { copied: number; skipped: number; mounted: number; bytesCopied: number };
  manifests: number;
}

let env: CliEnv;
let bundle: string;
let target: RegistryHandle;
let mirror: RegistryHandle;

beforeAll(async () => {
  env = await startCliEnv(0xe5);
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  [target, mirror] = await Promise.all([startRegistry(), startRegistry()]);
});
afterAll(async () => {
  await Promise.all([target?.stop(), mirror?.stop()]);
  await env?.stop();
});

async function checkDigests(reg: RegistryHandle, mapRepo: (repo: string) => string): Promise<void> {
  for (const x of expectationsOf(env.corpus)) {
    const repo = mapRepo(x.repo);
    const got = x.ref.startsWith('sha256:') ? (await skopeoInspectRaw(`${reg.host}/${repo}@${x.ref}`)).digest : await skopeoInspectDigest(`${reg.host}/${repo}:${x.ref}`);
    expect(got, `${repo} ${x.ref}`).toBe(x.digest);
    expect((await validateRegistryImage(reg.url, repo, x.ref)).digest).toBe(x.digest);
  }
}

describe('ferry push', () => {
  it('pushes every image into an empty registry with its original digest; a rerun skips everything', async () => {
    const first = jsonOf<Receipt>(await ferryOk(['push', bundle, '--to', target.host, '--plain-http', target.host, '--receipt', env.path('r1.json'), '--json']));
    expect(first.images.every((i) => i.status === 'done')).toBe(true);
    expect(first.blobs.copied + first.blobs.mounted).toBeGreaterThanOrEqual(env.corpus.blobs.size);
    await checkDigests(target, (r) => r);
    expect(await catalog(target.url)).toEqual([...env.corpus.repos.keys()].sort());

    const again = jsonOf<Receipt>(await ferryOk(['push', bundle, '--to', target.host, '--plain-http', target.host, '--receipt', env.path('r2.json'), '--json']));
    expect(again.images.every((i) => i.status === 'done')).toBe(true);
    expect(again.blobs.copied).toBe(0);
    expect(again.blobs.mounted).toBe(0);
    expect(again.blobs.bytesCopied).toBe(0);
  });

  it('--project-map and a --to prefix place the images under host/prefix/<mapped>', async () => {
    const host = env.corpus.host;
    const r = jsonOf<Receipt>(await ferryOk([
      'push', bundle, '--to', `${mirror.host}/mirror`, '--plain-http', mirror.host,
      '--project-map', `${host}/apps=team/apps`, '--rename', `${host}/a/b=x`, '--receipt', env.path('r3.json'), '--json',
    ]));
    expect(r.images.every((i) => i.status === 'done')).toBe(true);
    const mapRepo = (repo: string): string => `mirror/${repo.startsWith('apps/') ? `team/${repo}` : repo.startsWith('a/b/') ? `x/${repo.slice(4)}` : repo}`;
    await checkDigests(mirror, mapRepo);
    expect(await catalog(mirror.url)).toEqual([...env.corpus.repos.keys()].map(mapRepo).sort());
  });
});
