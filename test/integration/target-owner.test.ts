// Issue #15: ferry runs as root on the jump host, the registry serves its storage as
// its own user (Debian: docker-registry). What ferry writes there must belong to that
// user, or the registry's next push fails with 500 "permission denied". Checked by
// running the real docker-registry as that user on the layout ferry wrote, and
// pushing to it with skopeo.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmod, chown, lstat, mkdir, readdir, writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { freePort } from '../support/registry.js';
import { destFlags, skopeoInspectDigest, skopeoOk, srcFlags } from '../support/skopeo.js';
import { type CliEnv, entry, ferryOk, imagesList, jsonOf, pushExtraImage, startCliEnv, writeList } from './cli-fixture.js';

let env: CliEnv;
let bundle: string;
let registryUser: { uid: number; gid: number };

beforeAll(async () => {
  env = await startCliEnv(0x0e4e);
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  const id = (flag: string) => Number(execFileSync('id', [flag, 'docker-registry'], { encoding: 'utf8' }).trim());
  try {
    registryUser = { uid: id('-u'), gid: id('-g') };
  } catch (e) {
    throw new Error(`the docker-registry user is needed (it comes with the docker-registry package: apt-get install docker-registry): ${(e as Error).message}`);
  }
  // The registry user must be able to reach what lies under the test's temp folder.
  await chmod(env.tmp.path, 0o755);
});
afterAll(async () => env?.stop());

/** Every path under `root` (root included) whose owner is not `want`. */
async function wrongOwners(root: string, want: { uid: number; gid: number }): Promise<string[]> {
  const bad: string[] = [];
  const visit = async (p: string): Promise<void> => {
    const st = await lstat(p);
    if (st.uid !== want.uid || st.gid !== want.gid) bad.push(`${p} (${st.uid}:${st.gid})`);
    if (st.isDirectory()) for (const n of await readdir(p)) await visit(join(p, n));
  };
  await visit(root);
  return bad;
}

/** The real registry, run as `user`, serving `storage`. */
async function registryAs(storage: string, user: { uid: number; gid: number }): Promise<{ host: string; url: string; log: () => string; stop(): Promise<void> }> {
  const confDir = env.path('registry-as-user');
  await mkdir(confDir, { mode: 0o755 });
  const port = await freePort();
  const config = join(confDir, 'config.yml');
  await writeFile(config, [
    'version: 0.1', 'log:', '  level: warn', 'storage:', '  filesystem:', `    rootdirectory: ${JSON.stringify(storage)}`,
    '  delete:', '    enabled: true', 'http:', `  addr: "127.0.0.1:${port}"`, '', ''].join('\n'), { mode: 0o644 });
  const child: ChildProcess = spawn('/usr/bin/docker-registry', ['serve', config], { uid: user.uid, gid: user.gid, stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout!.on('data', (c: Buffer) => { log = (log + c.toString()).slice(-20_000); });
  child.stderr!.on('data', (c: Buffer) => { log = (log + c.toString()).slice(-20_000); });
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 15_000;
  for (;;) {
    const status = await new Promise<number | undefined>((resolve) => {
      const req = request(`${url}/v2/`, (res) => { res.resume(); resolve(res.statusCode); });
      req.on('error', () => resolve(undefined));
      req.end();
    });
    if (status === 200) break;
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`docker-registry as uid ${user.uid} did not start:\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    host: `127.0.0.1:${port}`, url, log: () => log,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

describe('file ownership in a registry layout (issue #15)', () => {
  it('as root, new files and folders take the layout root\'s owner; the registry running as that user then takes pushes', async () => {
    const layout = env.path('owned-layout');
    await mkdir(layout, { mode: 0o755 });
    await chown(layout, registryUser.uid, registryUser.gid);
    await ferryOk(['import', bundle, '--to', 'registry-layout', layout, '-q']);
    expect(await wrongOwners(layout, registryUser)).toEqual([]);

    const reg = await registryAs(layout, registryUser);
    try {
      // Into a repository ferry wrote: a new tag and layers new to it (skopeo), and a fresh upload of a new blob.
      const web = entry(env.corpus, 'apps/web');
      await skopeoOk(['copy', ...srcFlags(), ...destFlags(), `docker://${env.reg.host}/apps/web:v1`, `docker://${reg.host}/library/base-os:from-web`]);
      expect(await skopeoInspectDigest(`${reg.host}/library/base-os:from-web`)).toBe(web.digest);
      const extra = await pushExtraImage(reg.url, 'library/base-os', 'extra', 0x0e4e1);
      expect(await skopeoInspectDigest(`${reg.host}/library/base-os:extra`)).toBe(extra.digest);
    } catch (e) {
      throw new Error(`${(e as Error).message}\n--- registry log:\n${reg.log()}`, { cause: e });
    } finally {
      await reg.stop();
    }
  });

  it('--owner UID:GID gives every new file and folder that owner (the target root too when ferry makes it)', async () => {
    const dirs = env.path('owner-flag');
    const r = await runFerry(['import', bundle, '--to', 'skopeo-dir', dirs, '--owner', '4242:4343', '--json']);
    expect(r.code, r.stderr).toBe(0);
    expect(await wrongOwners(dirs, { uid: 4242, gid: 4343 })).toEqual([]);
    const oci = env.path('owner-names');
    await ferryOk(['import', bundle, '--to', 'oci', oci, '--owner', 'docker-registry:docker-registry', '-q']);
    expect(await wrongOwners(oci, registryUser)).toEqual([]);
  });

  it('a bad --owner is refused before anything is written', async () => {
    for (const [owner, kind, target] of [['nobody-here-zz:1', 'registry-layout', env.path('bad-owner')], ['12:x y', 'oci', env.path('bad-owner2')], ['1:1', 'registry', '127.0.0.1:1']] as const) {
      const r = await runFerry(['import', bundle, '--to', kind, target, '--owner', owner, '--json']);
      expect(r.code, `${owner}: ${r.stderr}`).toBe(2);
      const err = jsonOf<{ error: { code: string; message: string } }>(r).error;
      expect(err.code).toBe('E_USAGE');
      expect(err.message).toContain('--owner');
      if (kind !== 'registry') await expect(lstat(target)).rejects.toThrow(/ENOENT/);
    }
  });
});
