// Credentials never leak: export, push and import with htpasswd and token registries,
// credentials from --username/--password-stdin, FERRY_USERNAME/FERRY_PASSWORD and a docker
// config.json, with --debug and --json, failing (wrong password) and succeeding. Everything
// produced is searched for the password and its encodings: stdout, stderr, the bundle
// (decompressed too), its sidecar metadata, receipts, and the process's command line
// sampled while it runs.
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { decompress } from 'zstd-napi';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { targetOf } from '../support/http.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { runTimed, startFaultProxy, type TimedResult } from './hostile-fixture.js';
import { startProxy } from './registry-proxy.js';

const USER = 'courier';
const PASSWORD = 'Ferry-S3cret+/=pa55word!';
const WRONG = 'Wr0ng-Guess+/=pa55word?';

/** The secret as it could appear: raw, in Basic auth base64, alone in base64, URL- and form-encoded. */
function forms(secret: string): string[] {
  return [
    secret, Buffer.from(`${USER}:${secret}`).toString('base64'), Buffer.from(secret).toString('base64'), encodeURIComponent(secret),
    Buffer.from(`${USER}:${secret}`).toString('base64url'), new URLSearchParams({ s: secret }).toString().slice(2),
  ];
}

/** Terminal controls a hostile server could send to repaint the screen (C0 but tab/newline, DEL, C1, bidi overrides). */
const CONTROLS = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/u;
const SCREEN_PAINT = '\x1b[2J\x1b[H\x1b]0;owned\x07\x9b31m\r\u202e';

/** An error body that echoes the whole request back, as some proxies and registries do, with terminal sequences mixed in. */
function echoBody(req: IncomingMessage, code: string, body = ''): string {
  const auth = req.headers.authorization === undefined ? '' : `Authorization: ${req.headers.authorization}\r\n`;
  return JSON.stringify({ errors: [{ code, message: `${SCREEN_PAINT}request ${req.method} ${auth}body=${body} url=${req.url} headers=${JSON.stringify(req.headers)}${SCREEN_PAINT}` }] });
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
});
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

  it('a registry, proxy or token service echoing the request in its error body: no credential and no terminal control reaches the output', async () => {
    const ref = (host: string) => `${host}/secret/app:1`;
    const runs: Array<[string, TimedResult]> = [];
    const exportVia = async (name: string, host: string, flags: string[], opts: { input?: string; env?: Record<string, string> }) => {
      runs.push([name, await run(['export', ref(host), '-o', join(tmp.path, 'echo.tar'), '--cache', join(tmp.path, 'echo-cache'), '--plain-http', host, '--no-referrers', ...flags], opts)]);
    };

    // 1. A proxy before the htpasswd registry answers the authenticated manifest request with 403 and the request echoed.
    const proxy = await startProxy(src.url, {
      inject: (req) => (req.method === 'GET' && (req.url ?? '').includes('/manifests/') && req.headers.authorization
        ? { status: 403, headers: { 'content-type': 'application/json' }, body: echoBody(req, 'DENIED') } : undefined),
    });
    // 2. A token registry whose challenge names a hostile token service that echoes the request (Basic header, or
    //    the refresh token in a form body) in a 401.
    const tokenService: Server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        res.writeHead(401, { 'content-type': 'application/json' });
        res.end(echoBody(req, 'UNAUTHORIZED', Buffer.concat(chunks).toString('utf8')));
      });
    });
    await new Promise<void>((r) => tokenService.listen(0, '127.0.0.1', r));
    const realm = `http://127.0.0.1:${(tokenService.address() as AddressInfo).port}/token`;
    const tokenProxy = await startFaultProxy(tokenReg.url, async (_req, res, { fetch }) => {
      const up = await fetch();
      const challenge = up.headers['www-authenticate'];
      const headers = { ...up.headers, ...(typeof challenge === 'string' ? { 'www-authenticate': challenge.replace(/realm="[^"]*"/, `realm="${realm}"`) } : {}) };
      res.writeHead(up.status, headers);
      res.end(up.body);
      return true;
    });
    try {
      for (const flags of [['--json'], ['--debug']]) {
        await exportVia(`echoing proxy, --password-stdin ${flags.join(' ')}`, proxy.host, ['--username', USER, '--password-stdin', ...flags], { input: `${PASSWORD}\n` });
        await exportVia(`echoing token service, FERRY_PASSWORD ${flags.join(' ')}`, tokenProxy.host, flags, { env: { FERRY_USERNAME: USER, FERRY_PASSWORD: PASSWORD } });
      }
      const dockerDir = join(tmp.path, 'docker-echo');
      await mkdir(dockerDir, { recursive: true });
      await writeFile(join(dockerDir, 'config.json'), JSON.stringify({ auths: { [tokenProxy.host]: { identitytoken: PASSWORD } } }));
      await exportVia('echoing token service, docker config identitytoken --json --debug', tokenProxy.host, ['--json', '--debug'], { env: { DOCKER_CONFIG: dockerDir } });
    } finally {
      await proxy.stop();
      await tokenProxy.stop();
      await new Promise<void>((r) => tokenService.close(() => r()));
    }

    // The requests did carry the secret to the echoing servers: the echo is real, so is the test.
    expect(proxy.log.some((l) => l.headers.authorization === `Basic ${Buffer.from(`${USER}:${PASSWORD}`).toString('base64')}`)).toBe(true);
    for (const [name, r] of runs) {
      expect(r.code, `${name}: ${r.stderr}`).toBe(4);
      expect(r.stderr + r.stdout, name).toMatch(/E_DENIED|E_AUTH/);
      // The registry's own words still come through.
      expect(r.stderr + r.stdout, name).toMatch(/request (GET|POST)/);
      expectClean(`${name} stdout`, r.stdout);
      expectClean(`${name} stderr`, r.stderr);
      expect(r.stdout, `${name} stdout`).not.toMatch(CONTROLS);
      expect(r.stderr, `${name} stderr`).not.toMatch(CONTROLS);
    }
  }, 120_000);
});
