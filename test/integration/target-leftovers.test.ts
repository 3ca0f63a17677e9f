// Killed runs (SIGKILL: the OOM killer, a closed laptop, `kill -9`) leave
// `.ferry-tmp-*` files beside their outputs, as large as the bundle or every layer.
// The next run of ferry removes them — those whose process is gone — and never a
// live run's. Checked with real kills of real runs, for export, docker-archive, the
// registry layout and the OCI layout.
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { mkdir, readdir, rm, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { makeImage, makeStreamLayer } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { entriesUnder } from '../support/walk.js';
import { type CliEnv, ferryOk, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';

/** How ferry tags its temp names with the host (sha256 of the host name, 8 hex), derived here independently. */
const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

let env: CliEnv;
let list: string;
let bundle: string;
let sleeper: ChildProcess;

beforeAll(async () => {
  env = await startCliEnv(0x1ef7);
  // Two 12 MiB layers that do not compress: writing them takes long enough to be killed in the middle.
  const layers = [await makeStreamLayer({ seed: 0x1ef71, size: 12 << 20, compressible: false, files: 1 }), await makeStreamLayer({ seed: 0x1ef72, size: 12 << 20, compressible: false, files: 1 })];
  await pushArtifact(env.reg.url, 'big/app', makeImage({ layers, mediaTypes: 'oci' }), ['1.0']);
  list = await writeList(env.path('images.list'), `${imagesList(env.corpus)}${env.reg.host}/big/app:1.0\n`);
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  // A live process whose pid names a temp file of "another run in progress".
  sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 120000)'], { stdio: 'ignore' });
});
afterAll(async () => {
  sleeper?.kill('SIGKILL');
  await env?.stop();
});

/** Temps (.ferry-tmp-) and an export's work files (.ferry-resume-, continued by the next run). */
function tempsUnder(dir: string): string[] {
  return entriesUnder(dir, /^\.ferry-(tmp|resume)-/);
}

/** Bytes in a temp entry (a spool directory's files included). */
function bytesOf(path: string): number {
  try {
    const st = statSync(path);
    if (!st.isDirectory()) return st.size;
    return readdirSync(path).reduce((n, name) => n + bytesOf(join(path, name)), 0);
  } catch {
    return 0; // renamed or removed meanwhile
  }
}

/**
 * Runs ferry and SIGKILLs it the moment a temp of its own holds data under `watch`;
 * repeats until `kills` runs died that way (a run that finished first does not count).
 * Returns the temps they left.
 */
async function killMidWrite(args: string[], watch: string, kills: number): Promise<string[]> {
  let killed = 0;
  for (let attempt = 0; killed < kills && attempt < kills * 4; attempt++) {
    const before = new Set(tempsUnder(watch));
    let timer: NodeJS.Timeout | undefined;
    const r = await runFerry(args, {
      onSpawn: (child) => {
        timer = setInterval(() => {
          if (tempsUnder(watch).some((t) => !before.has(t) && bytesOf(t) > 1 << 20)) {
            clearInterval(timer);
            child.kill('SIGKILL');
          }
        }, 2);
      },
    });
    clearInterval(timer);
    if (r.signal === 'SIGKILL') killed++;
  }
  expect(killed, 'runs killed while writing').toBe(kills);
  return tempsUnder(watch);
}

describe('leftovers of killed runs', () => {
  it('export: the work files of killed runs are continued or removed by the next run; a live run\'s temp is kept', async () => {
    const out = env.path('export-out');
    await mkdir(out);
    const args = ['export', '-f', list, '-o', join(out, 'release.tar'), '--cache', env.path('export-cache'), ...env.net, '-q'];
    await ferryOk(args); // fills the cache: the killed runs below go straight to writing the bundle
    await rm(join(out, 'release.tar'));
    // What a run still in progress on this host (pid alive) has written so far.
    const live = `.ferry-tmp-other.tar.${sleeper.pid}-${HOST_TAG}.aaaaaaaa`;
    await writeFile(join(out, live), 'a live run\'s');
    // (Each killed run already removed the one before it's: what is left is the last one's.)
    const left = await killMidWrite(args, out, 2);
    expect(left.filter((t) => t.includes('release.tar')).length).toBeGreaterThan(0);
    expect(existsSync(join(out, 'release.tar'))).toBe(false);

    await ferryOk(args);
    expect((await readdir(out)).sort()).toEqual([live, 'release.tar', 'release.tar.ferry.json'].sort());
  });

  it('import --to docker-archive: spools of killed runs are removed by the next run', async () => {
    const dir = env.path('archive-out');
    const args = ['import', bundle, '--to', 'docker-archive', join(dir, 'images.tar'), '-q'];
    expect((await killMidWrite(args, dir, 2)).length).toBeGreaterThan(0);
    const r = jsonOf<{ warnings?: string[] }>(await ferryOk([...args.slice(0, -1), '--json']));
    expect(tempsUnder(dir)).toEqual([]);
    expect(await readdir(dir)).toEqual(['images.tar']);
    expect(r.warnings?.some((w) => /removed \d+ leftovers of interrupted ferry runs \(\d+(\.\d+)? MiB\)/.test(w))).toBe(true);
  });

  it('import --to registry-layout and --to oci: temps a killed run left inside the target are removed by the rerun', async () => {
    for (const kind of ['registry-layout', 'oci']) {
      const target = env.path(`${kind}-killed`);
      const args = ['import', bundle, '--to', kind, target, '-q'];
      expect((await killMidWrite(args, target, 1)).length, kind).toBeGreaterThan(0);
      await ferryOk(args);
      expect(tempsUnder(target), kind).toEqual([]);
    }
  });
});
