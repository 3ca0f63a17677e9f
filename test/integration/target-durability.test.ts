// Power-cut safety, read off the system calls ferry really makes (strace): every
// file is fsynced before the rename that publishes it, every directory it renamed
// into or created an entry in is fsynced after, and nothing points at data before
// that data is on disk (a registry layout's tags after its blobs, an OCI layout's
// index.json after its blobs). A rename can reach the disk before the data does,
// and a registry would then serve a tag whose blob is zeros.
import { spawn } from 'node:child_process';
import { mkdir, readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FERRY_BIN, REPO_ROOT, testStateHome } from '../support/cli.js';
import { type CliEnv, ferryOk, imagesList, startCliEnv, writeList } from './cli-fixture.js';

type Call = { op: 'fsync'; path: string } | { op: 'rename'; from: string; to: string } | { op: 'mkdir'; path: string };

let env: CliEnv;
let bundle: string;
let list: string;

beforeAll(async () => {
  env = await startCliEnv(0xd0ab);
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
});
afterAll(async () => env?.stop());

/**
 * Runs ferry under `strace -f -y` and returns its successful fsync, rename and
 * mkdir calls in the order they completed. Spawned directly (not runFerry):
 * strace has to be the parent of node.
 */
async function traced(args: string[]): Promise<Call[]> {
  const log = env.path('strace.log');
  const code = await new Promise<number | null>((resolve, reject) => {
    const child = spawn('strace', ['-f', '-y', '-qq', '-e', 'trace=fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat', '-o', log, process.execPath, FERRY_BIN, ...args], {
      cwd: REPO_ROOT, stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, XDG_STATE_HOME: testStateHome() },
    });
    let stderr = '';
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', (e) => reject(new Error(`strace could not run (it is needed for this test: apt-get install strace): ${e.message}`)));
    child.on('close', (c) => (c === 0 ? resolve(c) : reject(new Error(`ferry ${args.join(' ')} under strace exited ${c}:\n${stderr}`))));
  });
  expect(code).toBe(0);
  const calls: Call[] = [];
  // Calls of threads running at once are split in two lines ("<unfinished ...>", "<... fsync resumed>"): join them; a call counts where it completed.
  const started = new Map<string, string>();
  for (const raw of (await readFile(log, 'utf8')).split('\n')) {
    const pid = raw.split(' ', 1)[0]!;
    if (raw.endsWith('<unfinished ...>')) {
      started.set(pid, raw.slice(0, -'<unfinished ...>'.length).trimEnd());
      continue;
    }
    const resumed = /^\d+\s+<\.\.\. \w+ resumed>(.*)$/.exec(raw);
    const line = resumed ? `${started.get(pid) ?? ''}${resumed[1]}` : raw;
    if (!/= 0$/.test(line)) continue;
    let m = /\b(?:fsync|fdatasync)\(\d+<(.*)>\)/.exec(line);
    if (m) { calls.push({ op: 'fsync', path: m[1]! }); continue; }
    m = /\brename(?:at2?)?\((?:AT_FDCWD, )?"(.*?)", (?:AT_FDCWD, )?"(.*?)"/.exec(line);
    if (m) { calls.push({ op: 'rename', from: m[1]!, to: m[2]! }); continue; }
    m = /\bmkdir(?:at)?\((?:AT_FDCWD, )?"(.*?)"/.exec(line);
    if (m) calls.push({ op: 'mkdir', path: m[1]! });
  }
  return calls;
}

const isFsync = (c: Call, path: string) => c.op === 'fsync' && c.path === path;

/** Inside a run's own temp directory (a spool): scratch the run removes, published by nothing. */
const scratch = (path: string) => path.split('/').some((p) => p.startsWith('.ferry-tmp-'));

/** Every rename into `root`: its file fsynced before, its directory after; every directory made there: its parent fsynced after. */
function expectDurable(calls: Call[], root: string): number {
  let renames = 0;
  calls.forEach((c, i) => {
    if (c.op === 'rename' && c.to.startsWith(`${root}/`) && !scratch(c.to)) {
      renames++;
      expect(calls.slice(0, i).some((x) => isFsync(x, c.from)), `${c.to}: its data was not fsynced before the rename`).toBe(true);
      expect(calls.slice(i + 1).some((x) => isFsync(x, dirname(c.to))), `${c.to}: its directory was not fsynced after the rename`).toBe(true);
    }
    if (c.op === 'mkdir' && (c.path === root || c.path.startsWith(`${root}/`)) && !scratch(c.path)) {
      expect(calls.slice(i + 1).some((x) => isFsync(x, dirname(c.path))), `${c.path}: its parent was not fsynced after mkdir`).toBe(true);
    }
  });
  return renames;
}

describe('durable writes', () => {
  it('registry layout: each file fsynced before its rename, each directory after; every blob directory on disk before the first tag', async () => {
    const layout = env.path('layout');
    const calls = await traced(['import', bundle, '--to', 'registry-layout', layout, '-q']);
    expect(expectDurable(calls, layout)).toBeGreaterThan(env.corpus.blobs.size);
    const firstTag = calls.findIndex((c) => c.op === 'rename' && c.to.endsWith('/current/link'));
    expect(firstTag).toBeGreaterThan(0);
    const dataDirs = [...new Set(calls.flatMap((c) => (c.op === 'rename' && c.to.endsWith('/data') ? [dirname(c.to)] : [])))];
    expect(dataDirs.length).toBe(env.corpus.blobs.size + env.corpus.manifests.size);
    for (const d of dataDirs) expect(calls.slice(0, firstTag).some((x) => isFsync(x, d)), `${d} fsynced before the first tag`).toBe(true);
    // Each revision link only after its manifest's data directory is on disk.
    calls.forEach((c, i) => {
      const m = c.op === 'rename' ? /\/_manifests\/revisions\/sha256\/([0-9a-f]{64})\/link$/.exec(c.to) : null;
      if (!m) return;
      const data = join(layout, 'docker/registry/v2/blobs/sha256', m[1]!.slice(0, 2), m[1]!);
      expect(calls.slice(0, i).some((x) => isFsync(x, data)), `revision ${m[1]} before its data was on disk`).toBe(true);
    });
  });

  it('OCI layout: index.json renamed only after every blob and the blobs directory are on disk', async () => {
    const root = env.path('oci');
    const calls = await traced(['import', bundle, '--to', 'oci', root, '-q']);
    expectDurable(calls, root);
    const index = calls.findIndex((c) => c.op === 'rename' && c.to === join(root, 'index.json'));
    const lastBlob = calls.findLastIndex((c) => c.op === 'rename' && c.to.startsWith(join(root, 'blobs/sha256/')));
    expect(index).toBeGreaterThan(lastBlob);
    expect(calls.slice(lastBlob, index).some((x) => isFsync(x, join(root, 'blobs/sha256')))).toBe(true);
  });

  it('skopeo dir, docker archive and export: the file fsynced before the rename, the directory after', async () => {
    const dirs = env.path('dirs');
    expectDurable(await traced(['import', bundle, '--to', 'skopeo-dir', dirs, '-q']), dirs);
    const archiveDir = env.path('archive');
    expect(expectDurable(await traced(['import', bundle, '--to', 'docker-archive', join(archiveDir, 'images.tar'), '-q']), archiveDir)).toBeGreaterThan(0);
    const out = env.path('export');
    await mkdir(out);
    const calls = await traced(['export', '-f', list, '-o', join(out, 'release.tar'), '--cache', env.path('cache'), ...env.net, '-q']);
    expect(expectDurable(calls, out)).toBe(2); // the bundle and its .ferry.json
  });
});
