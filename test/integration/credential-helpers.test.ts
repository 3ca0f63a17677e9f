// Docker credential helpers (credsStore, credHelpers in config.json): pulls read through
// them, ferry login/logout store and erase through them as docker does. Two helpers: a
// protocol-exact script keeping a JSON file (test/support/credential-helper.mjs), and the
// real Debian docker-credential-pass with a throwaway gpg key and pass store. The real
// docker CLI writes through the same helpers. A helper that is missing or fails is named,
// with what to do, and what it printed (here: the password) is never repeated.
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RegistryHandle } from '../support/registry.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { authRegistry, ferry, helperBin, passStore, PASSWORD, REPO, stopGpg, USER } from './login-fixture.js';

let reg: RegistryHandle;
let open: RegistryHandle;
let tmp: TempDir;
let bin: string;
let gpgEnv: Record<string, string>;
let n = 0;

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }
type HelperStore = Record<string, { Username: string; Secret: string }>;

beforeAll(async () => {
  tmp = makeTempDir('ferry-helpers-');
  [reg, open] = await Promise.all([authRegistry('htpasswd', 3), authRegistry('none', 4)]);
  bin = helperBin(join(tmp.path, 'bin'));
  gpgEnv = passStore(join(tmp.path, 'pass'));
});
afterAll(async () => {
  if (gpgEnv) stopGpg(gpgEnv);
  await Promise.all([reg?.stop(), open?.stop()]);
  await tmp?.cleanup();
});

/** A DOCKER_CONFIG holding `config`, the script helper's store and call log, and the env for ferry. */
function setup(config: unknown): { dir: string; file: string; store: string; log: string; env: Record<string, string> } {
  const dir = join(tmp.path, `docker-${++n}`);
  mkdirSync(dir);
  const file = join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  const store = join(dir, 'helper-store.json');
  const log = join(dir, 'helper.log');
  return { dir, file, store, log, env: { HOME: tmp.path, DOCKER_CONFIG: dir, PATH: `${bin}:${process.env.PATH}`, FERRY_TEST_HELPER_STORE: store, FERRY_TEST_HELPER_LOG: log, ...gpgEnv } };
}
const readJson = <T = Record<string, unknown>>(f: string): T => JSON.parse(readFileSync(f, 'utf8')) as T;
const calls = (log: string): string[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);
const plan = (r: RegistryHandle, env: Record<string, string>) => ferry(['plan', `${r.host}/${REPO}:1`, '--cache', join(tmp.path, 'cache'), '--json'], env);
const login = (env: Record<string, string>, json = false) => ferry(['login', reg.host, '-u', USER, '--password-stdin', ...(json ? ['--json'] : [])], env, `${PASSWORD}\n`);

/** The real Debian helper, run directly: what it holds (server URL → user). */
function passList(): Record<string, string> {
  return JSON.parse(execFileSync('docker-credential-pass', ['list'], { env: { ...process.env, ...gpgEnv }, encoding: 'utf8' })) as Record<string, string>;
}

describe('the protocol-exact script helper', () => {
  it('credsStore: login stores through it (an empty auths entry beside, as docker), a pull gets from it, logout erases', async () => {
    const s = setup({ credsStore: 'ferrytest', auths: { 'other.example.com': { auth: 'eDp5' } } });
    const r = await login(s.env, true);
    expect(r.code, r.stderr).toBe(0);
    const doc = JSON.parse(r.stdout) as Record<string, unknown>;
    const errors = schemaErrors(cliSchemaRef('loginResult'), doc);
    expect(errors, describeErrors(errors)).toEqual([]);
    expect(doc).toMatchObject({ stored: 'helper', helper: 'docker-credential-ferrytest', key: reg.host });
    expect(readJson<HelperStore>(s.store)).toEqual({ [reg.host]: { Username: USER, Secret: PASSWORD } });
    expect(readJson(s.file)).toEqual({ credsStore: 'ferrytest', auths: { 'other.example.com': { auth: 'eDp5' }, [reg.host]: {} } });
    expect(readFileSync(s.file, 'utf8')).not.toContain(Buffer.from(`${USER}:${PASSWORD}`).toString('base64'));

    expect((await plan(reg, s.env)).code).toBe(0);
    expect(calls(s.log)).toEqual([`store ${reg.host}`, `get ${reg.host}`]);

    const out = await ferry(['logout', reg.host, '--json'], s.env);
    expect(out.code, out.stderr).toBe(0);
    expect(JSON.parse(out.stdout)).toMatchObject({ removed: true, keys: [reg.host], helperKeys: [reg.host], helper: 'docker-credential-ferrytest' });
    expect(readJson(s.store)).toEqual({});
    expect(readJson(s.file)).toEqual({ credsStore: 'ferrytest', auths: { 'other.example.com': { auth: 'eDp5' } } });
    const denied = await plan(reg, s.env);
    expect(denied.code).toBe(4);
    expect(calls(s.log).slice(2)).toEqual(['list ', `erase ${reg.host}`, `get ${reg.host}`]);
  });

  it('credHelpers names the helper per registry, over credsStore', async () => {
    const s = setup({ credsStore: 'not-installed', credHelpers: { [reg.host]: 'ferrytest' } });
    expect((await login(s.env)).code).toBe(0);
    expect(readJson<HelperStore>(s.store)[reg.host]).toEqual({ Username: USER, Secret: PASSWORD });
    expect((await plan(reg, s.env)).code).toBe(0);
    // A registry without credentials and no helper entry of its own asks credsStore, which is missing: no matter, it needs none.
    expect((await plan(open, s.env)).code).toBe(0);
  });

  it('the real docker CLI stores through the same helper; ferry reads what it stored', async () => {
    const s = setup({ credsStore: 'ferrytest' });
    const code = await new Promise<number | null>((resolve) => {
      const child = spawn('docker', ['login', reg.host, '-u', USER, '--password-stdin'], { env: { ...process.env, ...s.env, PATH: `${bin}:/usr/local/bin` }, stdio: ['pipe', 'ignore', 'ignore'] });
      child.on('close', resolve);
      child.stdin.end(`${PASSWORD}\n`);
    });
    expect(code).toBe(0);
    expect(readJson<HelperStore>(s.store)[reg.host]).toEqual({ Username: USER, Secret: PASSWORD });
    expect((await plan(reg, s.env)).code).toBe(0);
  });

  it('a missing helper is named with what to do: login stores nothing (exit 9); a pull that needs credentials says why it has none', async () => {
    const s = setup({ credsStore: 'nosuch' });
    const before = readFileSync(s.file, 'utf8');
    const r = await ferry(['login', reg.host, '-u', USER, '--password-stdin', '--json'], s.env, `${PASSWORD}\n`);
    expect(r.code).toBe(9);
    const err = (JSON.parse(r.stdout) as ErrorDoc).error;
    expect(err.code).toBe('E_PEER_MISSING');
    expect(err.message).toContain('docker-credential-nosuch');
    expect(err.message).toContain(s.file);
    expect(err.hint).toMatch(/install it .*or remove the entry/);
    expect(readFileSync(s.file, 'utf8')).toBe(before);

    const pull = await plan(reg, s.env);
    expect(pull.code).toBe(4);
    const perr = (JSON.parse(pull.stdout) as ErrorDoc).error;
    expect(perr.code).toBe('E_AUTH');
    expect(perr.hint).toContain('docker-credential-nosuch');
    // A registry that asks for nothing does not care.
    expect((await plan(open, s.env)).code).toBe(0);
  });

  it('a failing helper is named, and what it printed — here the password it was given — is not repeated', async () => {
    const s = setup({ credsStore: 'ferrytest' });
    const r = await ferry(['login', reg.host, '-u', USER, '--password-stdin', '--debug'], { ...s.env, FERRY_TEST_HELPER_FAIL: '1' }, `${PASSWORD}\n`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('E_CONFIG');
    expect(r.stderr).toContain('docker-credential-ferrytest failed to store the credentials');
    expect(r.stderr).toContain('its output is not shown');
    // A get that fails shows the helper's one-line reason (no secret in it): here the input was the server URL.
    const pull = await plan(reg, { ...s.env, FERRY_TEST_HELPER_FAIL: '1' });
    expect(pull.code).toBe(4);
    expect((JSON.parse(pull.stdout) as ErrorDoc).error.hint).toContain(`docker-credential-ferrytest failed to get the credentials for ${reg.host}: keychain locked`);
  });
});

describe('the real docker-credential-pass (Debian golang-docker-credential-helpers)', () => {
  it('ferry login stores in the pass store, a pull reads it, ferry logout erases it', async () => {
    const s = setup({ credsStore: 'pass' });
    const r = await login(s.env, true);
    expect(r.code, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ stored: 'helper', helper: 'docker-credential-pass' });
    expect(passList()).toEqual({ [reg.host]: USER });
    expect(readJson(s.file)).toEqual({ credsStore: 'pass', auths: { [reg.host]: {} } });
    // Nothing of the password in the store's files: pass keeps it gpg-encrypted.
    const files = execFileSync('find', [gpgEnv['PASSWORD_STORE_DIR']!, '-type', 'f'], { encoding: 'utf8' }).trim().split('\n');
    for (const f of files) expect(readFileSync(f).includes(PASSWORD), f).toBe(false);

    expect((await plan(reg, s.env)).code).toBe(0);
    const out = await ferry(['logout', reg.host], s.env);
    expect(out.code, out.stderr).toBe(0);
    expect(passList()).toEqual({});
    expect((await plan(reg, s.env)).code).toBe(4);
  });

  it('a pass store without a key for it: login fails naming the helper, with its reason and the set-up hint; nothing stored', async () => {
    const s = setup({ credsStore: 'pass' });
    const broken = { ...s.env, PASSWORD_STORE_DIR: join(tmp.path, 'uninitialised-store') };
    const r = await ferry(['login', reg.host, '-u', USER, '--password-stdin'], broken, `${PASSWORD}\n`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('docker-credential-pass failed to store the credentials');
    expect(r.stderr).toContain('pass init');
    expect(readJson(s.file)).toEqual({ credsStore: 'pass' });
  });
});
