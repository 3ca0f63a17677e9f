// `ferry push` into a Harbor (the contract fixture in front of the real registry):
// the preflight reports every missing project at once and sends nothing; --dry-run
// checks and sends nothing; --create-projects creates them and the push lands with
// the original digests.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HARBOR_ADMIN, HARBOR_ADMIN_PASSWORD, type HarborFixture, startHarborFixture } from '../support/harbor-fixture.js';
import { runFerry } from '../support/cli.js';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { skopeoInspectDigest, skopeoInspectRaw } from '../support/skopeo.js';
import { type CliEnv, entry, expectationsOf, expectNoSecret, ferryOk, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';

let env: CliEnv;
let harbor: HarborFixture;
let bundle: string;

beforeAll(async () => {
  env = await startCliEnv(0x4a2b);
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  harbor = await startHarborFixture({ projects: [{ name: 'library' }] });
});
afterAll(async () => {
  await harbor?.stop();
  await env?.stop();
});

const pushArgs = (...extra: string[]) => ['push', bundle, '--to', harbor.host, '--plain-http', harbor.host, '--username', HARBOR_ADMIN, '--password-stdin', ...extra];
const input = `${HARBOR_ADMIN_PASSWORD}\n`;
/** Repositories the registry behind Harbor holds on disk: none until something was pushed. */
const storedRepositories = () => {
  const dir = join(harbor.registry.storageDir, 'docker/registry/v2/repositories');
  return existsSync(dir) ? readdirSync(dir) : [];
};
const admin = () => ({ url: harbor.url, username: HARBOR_ADMIN, password: HARBOR_ADMIN_PASSWORD });
/** Harbor projects the corpus needs: the first path component of each repository. */
const neededProjects = () => [...new Set([...env.corpus.repos.keys()].map((r) => r.split('/')[0]!))].sort();

describe('ferry push into Harbor', () => {
  it('refuses before the first byte, naming every missing project at once', async () => {
    const r = await runFerry([...pushArgs('--json')], { input });
    expect(r.code).not.toBe(0);
    const missing = neededProjects().filter((p) => p !== 'library');
    expect(missing.length).toBeGreaterThan(1);
    for (const p of missing) expect(r.stdout + r.stderr).toContain(p);
    expectNoSecret(r, HARBOR_ADMIN_PASSWORD);
    expect(storedRepositories()).toEqual([]);
    expect(harbor.count('POST', '/api/v2.0/projects')).toBe(0);
  });

  it('--dry-run with --create-projects checks everything and changes nothing', async () => {
    const r = jsonOf<{ dryRun: boolean; images: { status: string }[]; preflight: { harbor: boolean; projects: { name: string; willCreate: boolean }[] } }>(
      await ferryOk(pushArgs('--create-projects', '--dry-run', '--json'), { input }),
    );
    expect(r.dryRun).toBe(true);
    expect(r.preflight.harbor).toBe(true);
    expect(r.preflight.projects.filter((p) => p.willCreate).map((p) => p.name).sort()).toEqual(neededProjects().filter((p) => p !== 'library'));
    expect(r.images.every((i) => i.status === 'planned')).toBe(true);
    expect(harbor.count('POST', '/api/v2.0/projects')).toBe(0);
    expect(storedRepositories()).toEqual([]);
  });

  it('--on-existing-tag fail in a dry run asks only the projects that exist, and finds no conflict', async () => {
    const r = jsonOf<{ dryRun: boolean; images: { status: string }[] }>(
      await ferryOk(pushArgs('--create-projects', '--dry-run', '--on-existing-tag', 'fail', '--json'), { input }),
    );
    expect(r.dryRun).toBe(true);
    expect(r.images.every((i) => i.status === 'planned')).toBe(true);
    expect(harbor.count('POST', '/api/v2.0/projects')).toBe(0);
    expect(storedRepositories()).toEqual([]);
  });

  it('--create-projects creates them, and every image lands with its original digest', async () => {
    const r = await ferryOk(pushArgs('--create-projects', '--json'), { input });
    expectNoSecret(r, HARBOR_ADMIN_PASSWORD);
    for (const p of neededProjects()) expect(harbor.projects.has(p), p).toBe(true);
    for (const x of expectationsOf(env.corpus)) {
      const ref = x.ref.startsWith('sha256:') ? `${harbor.host}/${x.repo}@${x.ref}` : `${harbor.host}/${x.repo}:${x.ref}`;
      const got = x.ref.startsWith('sha256:') ? (await skopeoInspectRaw(ref, admin())).digest : await skopeoInspectDigest(ref, admin());
      expect(got, ref).toBe(x.digest);
    }
  });

  it('--on-existing-tag through Harbor: same digests pass, a moved tag is listed by fail and left by skip', async () => {
    expect((await ferryOk(pushArgs('--on-existing-tag', 'fail', '--json'), { input })).code).toBe(0);
    const layer = await makeLayer(new Rng(0x4a2c), { size: 20_000, compressible: true });
    const other = makeImage({ layers: [layer], mediaTypes: 'oci', labels: { name: 'site-build' } });
    await pushArtifact(admin(), 'library/base-os', other, ['1.0']);
    const base = entry(env.corpus, 'library/base-os');

    const failed = await runFerry(pushArgs('--on-existing-tag', 'fail', '--json'), { input });
    expect(failed.code).toBe(2);
    expect(failed.stdout).toContain(`library/base-os:1.0  ${other.digest} → ${base.digest}`);
    expectNoSecret(failed, HARBOR_ADMIN_PASSWORD);

    const skipped = jsonOf<{ images: { repository: string; tag?: string; status: string }[] }>(await ferryOk(pushArgs('--on-existing-tag', 'skip', '--json'), { input }));
    expect(skipped.images.filter((i) => i.status === 'skipped').map((i) => `${i.repository}:${i.tag}`)).toEqual(['library/base-os:1.0']);
    expect(await skopeoInspectDigest(`${harbor.host}/library/base-os:1.0`, admin())).toBe(other.digest);
  });
});
