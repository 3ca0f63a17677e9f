// Credentials never leak: export, push and import with htpasswd and token registries,
// credentials from --username/--password-stdin, FERRY_USERNAME/FERRY_PASSWORD and a docker
// config.json, with --debug and --json, failing (wrong password) and succeeding. Everything
// produced is searched for the password and its encodings: stdout, stderr, the bundle
// (decompressed too), its sidecar metadata, receipts, and the process's command line
// sampled while it runs.
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decompress } from 'zstd-napi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { targetOf } from '../support/http.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { runTimed, type TimedResult } from './hostile-fixture.js';

const USER = 'courier';
const PASSWORD = 'Ferry-S3cret+/=pa55word!';
const WRONG = 'Wr0ng-Guess+/=pa55word?';

/** The secret as it could appear: raw, in Basic auth base64, alone in base64, URL-encoded. */
function forms(secret: string): string[] {
  return [secret, Buffer.from(`${USER}:${secret}`).toString('base64'), Buffer.from(secret).toString('base64'), encodeURIComponent(secret), Buffer.from(`${USER}:${secret}`).toString('base64url')];
}

let src: RegistryHandle;
let tokenReg: RegistryHandle;
let tmp: TempDir;
const cmdlines: string[] = [];

beforeAll(async () => {
  tmp = makeTempDir('ferry-secrets-');
  src = await startRegistry({ auth: 'htpasswd', users: { [USER]: PASSWORD } });
  tokenReg = await startRegistry({ auth: 'token', users: { [USER]: PASSWORD } });
  const rng = new Rng(0x5ec);
  const img = makeImage({ layers: [await makeLayer(rng, { size: 40_000 })], mediaTypes: 'oci' });
  await pushArtifact(targetOf(src), 'secret/app', img, ['1']);
}, 60_000);
afterAll(async () => {
  await src?.stop();
  await tokenReg?.stop();
  await tmp?.cleanup();
});

/** Runs ferry, sampling /proc/<pid>/cmdline every few ms while it runs. */
function run(args: string[], opts: { input?: string; env?: Record<string, string> } = {}): Promise<TimedResult> {
  return runTimed(args, {
    direct: true, ...(opts.input !== undefined ? { input: opts.input } : {}), env: { HOME: tmp.path, DOCKER_CONFIG: join(tmp.path, 'no-docker'), XDG_STATE_HOME: join(tmp.path, 'work', 'state'), ...opts.env },
    onSpawn: (child: ChildProcess) => {
      const t = setInterval(() => {
        try { cmdlines.push(readFileSync(`/proc/${child.pid}/cmdline`, 'latin1')); } catch { /* gone */ }
      }, 5);
      child.on('exit', () => clearInterval(t));
    },
  });
}

/** Every file under `dir`, and for zstd files their decompressed bytes too. */
function filesUnder(dir: string): Array<{ name: string; bytes: Buffer }> {
  const out: Array<{ name: string; bytes: Buffer }> = [];
  for (const name of readdirSync(dir, { recursive: true }) as string[]) {
    const p = join(dir, name);
    if (!statSync(p).isFile()) continue;
    const bytes = readFileSync(p);
    out.push({ name, bytes });
    if (bytes.readUInt32LE(0) === 0xfd2fb528) out.push({ name: `${name} (decompressed)`, bytes: decompress(bytes) });
  }
  return out;
}

function expectClean(what: string, text: string | Buffer): void {
  const hay = Buffer.isBuffer(text) ? text : Buffer.from(text);
  for (const secret of [PASSWORD, WRONG]) for (const f of forms(secret)) expect(hay.includes(f), `${what} holds ${JSON.stringify(f)}`).toBe(false);
}

describe('credentials never appear in anything ferry produces', () => {
  it('export, push and import with every credential source, right and wrong, with --debug and --json', async () => {
    const work = join(tmp.path, 'work');
    await mkdir(work);
    const dockerDir = join(tmp.path, 'docker');
    await mkdir(dockerDir);
    const bundle = join(work, 'release.tar.zst');
    const runs: Array<[string, TimedResult]> = [];
    const ref = `${src.host}/secret/app:1`;

    for (const [pw, flags] of [[WRONG, ['--debug']], [WRONG, ['--json']], [PASSWORD, ['--debug', '--json']]] as const) {
      runs.push([`export --password-stdin ${flags.join(' ')}`, await run(['export', ref, '-o', bundle, '--cache', join(work, 'cache'), '--plain-http', src.host, '--username', USER, '--password-stdin', '--compression', 'zstd', ...flags], { input: `${pw}\n` })]);
    }
    runs.push(['export FERRY_USERNAME/PASSWORD wrong', await run(['export', ref, '-o', join(work, 'x.tar'), '--cache', join(work, 'cache2'), '--plain-http', src.host, '--debug'], { env: { FERRY_USERNAME: USER, FERRY_PASSWORD: WRONG } })]);
    runs.push(['verify --debug', await run(['verify', bundle, '--debug'])]);

    for (const [pw, flags] of [[WRONG, ['--debug']], [PASSWORD, ['--debug', '--json']]] as const) {
      runs.push([`push env ${flags.join(' ')}`, await run(['push', bundle, '--to', `${tokenReg.host}/env`, '--plain-http', tokenReg.host, '--receipt', join(work, `push-${pw === PASSWORD ? 'ok' : 'bad'}.json`), ...flags], { env: { FERRY_USERNAME: USER, FERRY_PASSWORD: pw } })]);
    }
    for (const [pw, flags] of [[WRONG, ['--json', '--debug']], [PASSWORD, ['--debug']]] as const) {
      await writeFile(join(dockerDir, 'config.json'), JSON.stringify({ auths: { [tokenReg.host]: { auth: Buffer.from(`${USER}:${pw}`).toString('base64') } } }));
      runs.push([`import --to registry docker config ${flags.join(' ')}`, await run(['import', bundle, '--to', 'registry', `${tokenReg.host}/cfg`, '--plain-http', tokenReg.host, ...flags], { env: { DOCKER_CONFIG: dockerDir } })]);
    }
    runs.push(['import --to registry-layout', await run(['import', bundle, '--to', 'registry-layout', join(work, 'layout'), '--debug', '--json'])]);

    // The runs did what they say: wrong passwords fail with E_AUTH, right ones succeed.
    const byName = new Map(runs);
    for (const [name, r] of runs) {
      if (name.includes('wrong') || name === 'export --password-stdin --debug' || name === 'export --password-stdin --json' || name === 'push env --debug' || name === 'import --to registry docker config --json --debug') {
        expect(r.code, `${name}: ${r.stderr}`).toBe(4);
        expect(r.stderr + r.stdout).toContain('E_AUTH');
      } else expect(r.code, `${name}: ${r.stderr}`).toBe(0);
    }
    expect(byName.size).toBe(runs.length);

    for (const [name, r] of runs) {
      expectClean(`${name} stdout`, r.stdout);
      expectClean(`${name} stderr`, r.stderr);
    }
    const files = filesUnder(work);
    expect(files.some((f) => f.name.endsWith('release.tar.zst (decompressed)'))).toBe(true);
    expect(files.some((f) => f.name.endsWith('.ferry.json'))).toBe(true);
    expect(files.some((f) => f.name.startsWith('push-ok'))).toBe(true);
    // Receipts of runs without --receipt: the state folder (XDG_STATE_HOME), under `work`.
    expect(files.some((f) => f.name.includes('state/ferry/receipts/'))).toBe(true);
    for (const f of files) expectClean(f.name, f.bytes);
    expect(cmdlines.length).toBeGreaterThan(runs.length);
    for (const c of cmdlines) expectClean('/proc/<pid>/cmdline', c);
  }, 180_000);
});
