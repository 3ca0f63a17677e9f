// ferry login / logout against the real registry (htpasswd and token auth), with the
// docker config.json as the one store: credentials are checked before they are stored,
// the entry is docker's (base64 user:password in `auth`), every other key of the file is
// kept, the file is 0600; the real docker CLI (client-side login, no daemon needed) and
// skopeo read and write the same file. The password prompt is run on a real pty.
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FERRY_BIN, REPO_ROOT } from '../support/cli.js';
import type { RegistryHandle } from '../support/registry.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { startSshd } from '../support/sshd.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { makeSshHome, startWitnessRelay } from './ssh-fixture.js';
import { authRegistry, ferry, forms, leftovers, PASSWORD, REPO, USER, WRONG } from './login-fixture.js';

const run = promisify(execFile);

let basic: RegistryHandle;
let token: RegistryHandle;
let tmp: TempDir;
let n = 0;
/** A fresh DOCKER_CONFIG directory (not created) and the env that points ferry at it. */
function dockerDir(): { dir: string; file: string; env: Record<string, string> } {
  const dir = join(tmp.path, `docker-${++n}`);
  return { dir, file: join(dir, 'config.json'), env: { HOME: tmp.path, DOCKER_CONFIG: dir } };
}
const b64 = (s: string) => Buffer.from(s).toString('base64');
const readJson = (f: string) => JSON.parse(readFileSync(f, 'utf8')) as Record<string, unknown> & { auths?: Record<string, Record<string, string>> };

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }

beforeAll(async () => {
  tmp = makeTempDir('ferry-login-');
  [basic, token] = await Promise.all([authRegistry('htpasswd', 1), authRegistry('token', 2)]);
});
afterAll(async () => {
  await Promise.all([basic?.stop(), token?.stop()]);
  await tmp?.cleanup();
});

/** A pull needs credentials on these registries: `plan` reads the manifests of REPO:1. */
const plan = (reg: RegistryHandle, env: Record<string, string>) => ferry(['plan', `${reg.host}/${REPO}:1`, '--cache', join(tmp.path, 'cache'), '--json'], env);

describe('ferry login', () => {
  it('refuses wrong credentials with E_AUTH and stores nothing (Basic and token auth)', async () => {
    for (const reg of [basic, token]) {
      const d = dockerDir();
      const r = await ferry(['login', reg.host, '-u', USER, '--password-stdin', '--json'], d.env, `${WRONG}\n`);
      expect(r.code, r.stderr).toBe(4);
      const doc = JSON.parse(r.stdout) as ErrorDoc;
      expect(schemaErrors(cliSchemaRef('errorDocument'), doc)).toEqual([]);
      expect(doc.error.code).toBe('E_AUTH');
      expect(doc.error.message).toContain(`${reg.host} refused user "${USER}"`);
      expect(doc.error.message).toContain('nothing was stored');
      expect(existsSync(d.dir)).toBe(false);
    }
  });

  it('stores docker\'s entry (base64 user:password), keeps every other key, 0600, atomically; a pull then uses it', async () => {
    const d = dockerDir();
    mkdirSync(d.dir);
    const others = {
      auths: { 'other.example.com': { auth: b64('someone:else') }, 'https://old.example.com/v1/': { identitytoken: 'tok' } },
      proxies: { default: { httpProxy: 'http://proxy.example.com:3128', noProxy: '*.corp' } },
      HttpHeaders: { 'User-Agent': 'site' },
      detachKeys: 'ctrl-x,x',
      currentContext: 'default',
      plugins: { x: { y: 'z' } },
    };
    writeFileSync(d.file, JSON.stringify(others), { mode: 0o644 });
    expect((await plan(basic, d.env)).code).toBe(4);

    const r = await ferry(['login', basic.host, '-u', USER, '--password-stdin', '--json'], d.env, `${PASSWORD}\n`);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    const errors = schemaErrors(cliSchemaRef('loginResult'), doc);
    expect(errors, describeErrors(errors)).toEqual([]);
    expect(doc).toEqual({ registry: basic.host, username: USER, file: d.file, key: basic.host, stored: 'config-file' });

    const written = readJson(d.file);
    expect(written.auths![basic.host]).toEqual({ auth: b64(`${USER}:${PASSWORD}`) });
    expect({ ...written, auths: { ...written.auths } }).toEqual({ ...others, auths: { ...others.auths, [basic.host]: { auth: b64(`${USER}:${PASSWORD}`) } } });
    expect(statSync(d.file).mode & 0o777).toBe(0o600);
    expect(leftovers(d.dir)).toEqual([]);

    expect((await plan(basic, d.env)).code).toBe(0);
    // containers/image (skopeo) reads the same entry.
    const sk = await run('skopeo', ['inspect', '--authfile', d.file, '--tls-verify=false', '--raw', `docker://${basic.host}/${REPO}:1`]);
    expect(JSON.parse(sk.stdout)).toHaveProperty('layers');

    // Without --json: a line for people, and the warning that the file holds the password unencrypted.
    const human = await ferry(['login', basic.host, '-u', USER, '--password-stdin'], d.env, `${PASSWORD}\n`);
    expect(human.stdout).toBe(`logged in to ${basic.host} as ${USER}; credentials in ${d.file}\n`);
    expect(human.stderr).toContain(`stored unencrypted (base64) in ${d.file}`);
  });

  it('a token registry: the check goes through its token service', async () => {
    const d = dockerDir();
    const before = token.issuer!.requests;
    const r = await ferry(['login', token.host, '-u', USER, '--password-stdin'], d.env, `${PASSWORD}\n`);
    expect(r.code, r.stderr).toBe(0);
    expect(token.issuer!.requests).toBeGreaterThan(before);
    expect((await plan(token, d.env)).code).toBe(0);
  });

  it('refuses what cannot work before contacting anything: --password-stdin without -u, no terminal to ask, not a host', async () => {
    const d = dockerDir();
    const noUser = await ferry(['login', basic.host, '--password-stdin', '--json'], d.env, `${PASSWORD}\n`);
    expect(noUser.code).toBe(2);
    expect((JSON.parse(noUser.stdout) as ErrorDoc).error.message).toContain('--password-stdin needs the user name');
    const noTty = await ferry(['login', basic.host, '-u', USER], d.env);
    expect(noTty.code).toBe(2);
    expect(noTty.stderr).toContain('no terminal to ask for the password');
    expect(noTty.stderr).toContain('--password-stdin');
    const empty = await ferry(['login', basic.host, '-u', USER, '--password-stdin'], d.env, '\n');
    expect(empty.code).toBe(2);
    const badHost = await ferry(['login', 'not a host', '-u', USER, '--password-stdin'], d.env, `${PASSWORD}\n`);
    expect(badHost.code).toBe(2);
    expect(existsSync(d.dir)).toBe(false);
  });

  it('asks on a terminal: the user name echoes, the password does not', async () => {
    const d = dockerDir();
    // util-linux script(1) gives ferry a real pty; we type only once each prompt is there.
    const cmd = [process.execPath, FERRY_BIN, 'login', basic.host].map((a) => `'${a}'`).join(' ');
    const child = spawn('script', ['-qefc', cmd, '/dev/null'], { cwd: REPO_ROOT, env: { ...process.env, ...d.env, NO_COLOR: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
    let screen = '';
    const typed = new Set<string>();
    child.stdout.on('data', (c: Buffer) => {
      screen += c.toString('utf8');
      if (screen.includes('Username: ') && !typed.has('user')) {
        typed.add('user');
        child.stdin.write(`${USER}\r`);
      }
      if (screen.includes('Password: ') && !typed.has('password')) {
        typed.add('password');
        child.stdin.write(`${PASSWORD}\r`);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(code, screen).toBe(0);
    expect(screen).toMatch(new RegExp(`Username: ${USER}`));
    expect(screen).toContain(`logged in to ${basic.host} as ${USER}`);
    for (const f of forms(PASSWORD)) expect(screen.includes(f), `the screen shows ${f}`).toBe(false);
    expect(readJson(d.file).auths![basic.host]).toEqual({ auth: b64(`${USER}:${PASSWORD}`) });
  });
});

describe('ferry logout', () => {
  it('removes every spelling of the host and nothing else; again: not logged in, exit 0', async () => {
    const d = dockerDir();
    mkdirSync(d.dir);
    const keep = { 'other.example.com': { auth: b64('someone:else') } };
    writeFileSync(d.file, JSON.stringify({ auths: { ...keep, [basic.host]: { auth: b64(`${USER}:${PASSWORD}`) }, [`https://${basic.host}`]: { auth: b64('old:one') }, [`http://${basic.host}/v2/`]: { auth: b64('older:one') } }, credsStore: undefined, detachKeys: 'ctrl-q' }));
    const r = await ferry(['logout', basic.host, '--json'], d.env);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as { removed: boolean; keys: string[] };
    const errors = schemaErrors(cliSchemaRef('logoutResult'), doc);
    expect(errors, describeErrors(errors)).toEqual([]);
    expect(doc.removed).toBe(true);
    expect(doc.keys.sort()).toEqual([basic.host, `http://${basic.host}/v2/`, `https://${basic.host}`].sort());
    expect(readJson(d.file)).toEqual({ auths: keep, detachKeys: 'ctrl-q' });
    expect(statSync(d.file).mode & 0o777).toBe(0o600);
    expect((await plan(basic, d.env)).code).toBe(4);

    const again = await ferry(['logout', basic.host], d.env);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`not logged in to ${basic.host}`);
  });
});

describe('ferry login --ssh', () => {
  it('checks the credentials through the jump host: the registry sees only sshd', async () => {
    const sshd = await startSshd();
    const home = makeSshHome(sshd);
    const relay = await startWitnessRelay(basic.port);
    try {
      const d = dockerDir();
      const env = { ...d.env, HOME: home.home, SSH_AUTH_SOCK: '' };
      const wrong = await ferry(['login', relay.host, '-u', USER, '--password-stdin', '--ssh', home.alias], env, `${WRONG}\n`);
      expect(wrong.code, wrong.stderr).toBe(4);
      const r = await ferry(['login', relay.host, '-u', USER, '--password-stdin', '--ssh', home.alias], env, `${PASSWORD}\n`);
      expect(r.code, r.stderr).toBe(0);
      expect(relay.connections.length).toBeGreaterThan(0);
      expect(new Set(relay.connections.map((c) => c.comm.replace(/-session$/, '')))).toEqual(new Set(['sshd']));
      expect(readJson(d.file).auths![relay.host]).toEqual({ auth: b64(`${USER}:${PASSWORD}`) });
    } finally {
      await Promise.all([relay.stop(), sshd.stop(), home.tmp.cleanup()]);
    }
  });
});

describe('docker and ferry share the file', () => {
  // The docker CLI logs in client-side when no daemon is running. Its PATH leaves out
  // docker-credential-pass, which docker would otherwise pick as its default store.
  const dockerEnv = (d: { dir: string }) => ({ ...process.env, DOCKER_CONFIG: d.dir, HOME: tmp.path, PATH: '/usr/local/bin:/usr/bin/nonexistent' });
  const docker = (args: string[], d: { dir: string }, input?: string) => new Promise<{ code: number | null; out: string }>((resolve) => {
    const child = spawn('docker', args, { env: dockerEnv(d), stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    child.stderr.on('data', (c: Buffer) => (out += c.toString()));
    child.on('close', (code) => resolve({ code, out }));
    child.stdin.end(input);
  });

  it('docker login → ferry pulls with it and ferry logout removes it; ferry login → docker logout removes it', async () => {
    const d = dockerDir();
    const dl = await docker(['login', basic.host, '-u', USER, '--password-stdin'], d, `${PASSWORD}\n`);
    expect(dl.code, dl.out).toBe(0);
    expect(readJson(d.file).auths![basic.host]).toHaveProperty('auth');
    expect((await plan(basic, d.env)).code).toBe(0);
    const out = await ferry(['logout', basic.host], d.env);
    expect(out.code).toBe(0);
    expect(readJson(d.file).auths ?? {}).not.toHaveProperty(basic.host);

    const fl = await ferry(['login', basic.host, '-u', USER, '--password-stdin'], d.env, `${PASSWORD}\n`);
    expect(fl.code, fl.stderr).toBe(0);
    const dout = await docker(['logout', basic.host], d);
    expect(dout.code, dout.out).toBe(0);
    expect(readJson(d.file).auths ?? {}).not.toHaveProperty(basic.host);
    expect((await plan(basic, d.env)).code).toBe(4);
  });
});
