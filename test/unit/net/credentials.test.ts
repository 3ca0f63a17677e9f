import { lstatSync, mkdirSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { dockerServerKey, eraseDockerCredentials, lookupCredentials, normaliseAuthKey, registryEnvPrefix, storeDockerCredentials } from '../../../src/net/credentials.js';
import { makeTempDir } from '../../support/tmp.js';

const tmp = makeTempDir('ferry-creds-');
afterAll(() => tmp.cleanup());

let n = 0;
/** A DOCKER_CONFIG directory holding `config`. */
function dockerConfig(config: unknown): string {
  const dir = join(tmp.path, `cfg-${n++}`);
  mkdirSync(dir);
  writeFileSync(join(dir, 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
  return dir;
}

const b64 = (s: string) => Buffer.from(s).toString('base64');

describe('lookupCredentials', () => {
  const cfg = dockerConfig({
    auths: {
      'https://index.docker.io/v1/': { auth: b64('hubuser:hub:pass') },
      'reg.example.com:5000': { username: 'u2', password: 'p2' },
      'https://secure.example.com': { identitytoken: 'refresh-xyz' },
    },
  });

  it('prefers explicit credentials over everything', () => {
    const env = { FERRY_USERNAME: 'e', FERRY_PASSWORD: 'p', DOCKER_CONFIG: cfg };
    expect(lookupCredentials('docker.io', { username: 'x', password: 'y', source: '--username' }, env).credentials).toEqual({ username: 'x', password: 'y', source: '--username' });
  });

  it('prefers the per-registry environment over the generic one', () => {
    const env = {
      [`${registryEnvPrefix('127.0.0.1:5000')}_USERNAME`]: 'specific',
      [`${registryEnvPrefix('127.0.0.1:5000')}_PASSWORD`]: 'sp',
      FERRY_USERNAME: 'generic',
      FERRY_PASSWORD: 'gp',
      DOCKER_CONFIG: cfg,
    };
    expect(registryEnvPrefix('127.0.0.1:5000')).toBe('FERRY_REGISTRY_127_0_0_1_5000');
    expect(lookupCredentials('127.0.0.1:5000', undefined, env).credentials).toMatchObject({ username: 'specific', password: 'sp' });
    expect(lookupCredentials('other.io', undefined, env).credentials).toMatchObject({ username: 'generic', password: 'gp', source: 'FERRY_USERNAME' });
  });

  it('rejects half of a username/password pair', () => {
    try {
      lookupCredentials('r.io', undefined, { FERRY_USERNAME: 'only' });
      expect.unreachable();
    } catch (e) {
      expect(isFerryError(e, 'E_CONFIG')).toBe(true);
      expect((e as Error).message).toContain('FERRY_PASSWORD');
    }
  });

  it('reads docker config: base64 auth (password with a colon), docker.io ↔ index.docker.io', () => {
    const env = { DOCKER_CONFIG: cfg };
    expect(lookupCredentials('docker.io', undefined, env).credentials).toMatchObject({ username: 'hubuser', password: 'hub:pass', source: join(cfg, 'config.json') });
    expect(lookupCredentials('reg.example.com:5000', undefined, env).credentials).toMatchObject({ username: 'u2', password: 'p2' });
    expect(lookupCredentials('secure.example.com', undefined, env).credentials).toMatchObject({ identityToken: 'refresh-xyz' });
    expect(lookupCredentials('reg.example.com', undefined, env)).toEqual({});
  });

  it('falls back to $HOME/.docker/config.json without DOCKER_CONFIG', () => {
    const home = join(tmp.path, 'home');
    mkdirSync(join(home, '.docker'), { recursive: true });
    writeFileSync(join(home, '.docker', 'config.json'), JSON.stringify({ auths: { 'r.io': { auth: b64('h:p') } } }));
    expect(lookupCredentials('r.io', undefined, { HOME: home }).credentials).toMatchObject({ username: 'h', password: 'p' });
    expect(lookupCredentials('r.io', undefined, { HOME: join(tmp.path, 'nowhere') })).toEqual({});
  });

  it('a helper that is not installed: no credentials, and a hint naming it for when the registry asks', () => {
    const env = { DOCKER_CONFIG: dockerConfig({ auths: { 'a.io': {} }, credsStore: 'nosuch-one', credHelpers: { 'gcr.io': 'nosuch-two' } }), PATH: '/nonexistent' };
    expect(lookupCredentials('a.io', undefined, env).credentials).toBeUndefined();
    expect(lookupCredentials('a.io', undefined, env).hint).toContain('docker-credential-nosuch-one');
    expect(lookupCredentials('gcr.io', undefined, env).hint).toMatch(/docker-credential-nosuch-two \(credHelpers in .*config\.json\) is not installed; install it/);
  });

  it('prefers the exact key docker writes over other spellings of the host', () => {
    const env = { DOCKER_CONFIG: dockerConfig({ auths: { 'https://r.io/': { auth: b64('old:one') }, 'r.io': { auth: b64('new:one') } } }) };
    expect(lookupCredentials('r.io', undefined, env).credentials).toMatchObject({ username: 'new', password: 'one' });
  });

  it('reports a broken config file or auth entry as E_CONFIG naming the file', () => {
    const broken = dockerConfig('{not json');
    expect(() => lookupCredentials('a.io', undefined, { DOCKER_CONFIG: broken })).toThrow(/config\.json/);
    // JSON, but not an object: E_CONFIG too (it was a TypeError, E_INTERNAL).
    for (const doc of ['null', '[]', '"auths"']) {
      const dir = dockerConfig(doc);
      let code = 'accepted';
      try { lookupCredentials('a.io', undefined, { DOCKER_CONFIG: dir }); } catch (e) { code = isFerryError(e) ? e.code : String(e); }
      expect(code, doc).toBe('E_CONFIG');
    }
    const badAuth = dockerConfig({ auths: { 'a.io': { auth: b64('nocolon') } } });
    try {
      lookupCredentials('a.io', undefined, { DOCKER_CONFIG: badAuth });
      expect.unreachable();
    } catch (e) {
      expect(isFerryError(e, 'E_CONFIG')).toBe(true);
      expect((e as Error).message).toContain(join(badAuth, 'config.json'));
      expect((e as Error).message).not.toContain('nocolon');
    }
  });
});

describe('normaliseAuthKey', () => {
  it('strips scheme and path, maps Docker Hub names together', () => {
    expect(normaliseAuthKey('https://index.docker.io/v1/')).toBe('docker.io');
    expect(normaliseAuthKey('registry-1.docker.io')).toBe('docker.io');
    expect(normaliseAuthKey('http://Reg.Example.com:5000/v2/')).toBe('reg.example.com:5000');
  });
});

describe('credential helpers (the protocol-exact script helper, test/support/credential-helper.mjs)', () => {
  const bin = join(tmp.path, 'bin');
  mkdirSync(bin);
  symlinkSync(fileURLToPath(new URL('../../support/credential-helper.mjs', import.meta.url)), join(bin, 'docker-credential-ferrytest'));
  const withHelper = (config: unknown, store: Record<string, { Username: string; Secret: string }>) => {
    const dir = dockerConfig(config);
    writeFileSync(join(dir, 'store.json'), JSON.stringify(store));
    return { DOCKER_CONFIG: dir, PATH: `${bin}:${process.env['PATH']}`, FERRY_TEST_HELPER_STORE: join(dir, 'store.json') };
  };

  it('asks the helper with docker\'s server key: host[:port], Docker Hub as its v1 URL; <token> is an identity token', () => {
    const env = withHelper({ credsStore: 'ferrytest' }, {
      'r.io:5000': { Username: 'u', Secret: 's' },
      'https://index.docker.io/v1/': { Username: '<token>', Secret: 'refresh-abc' },
    });
    expect(lookupCredentials('r.io:5000', undefined, env).credentials).toEqual({ username: 'u', password: 's', source: `docker-credential-ferrytest (${join(env.DOCKER_CONFIG, 'config.json')})` });
    expect(lookupCredentials('docker.io', undefined, env).credentials).toMatchObject({ identityToken: 'refresh-abc' });
    expect(lookupCredentials('other.io', undefined, env)).toEqual({});
  });

  it('the helper first, as docker; the inline entry when the helper has none', () => {
    const env = withHelper({ credsStore: 'ferrytest', auths: { 'a.io': { auth: b64('inline:a') }, 'b.io': { auth: b64('inline:b') } } }, { 'a.io': { Username: 'helper', Secret: 'a' } });
    expect(lookupCredentials('a.io', undefined, env).credentials).toMatchObject({ username: 'helper' });
    expect(lookupCredentials('b.io', undefined, env).credentials).toMatchObject({ username: 'inline', password: 'b' });
  });

  it('a helper that fails: its one-line reason in the hint, never what could hold a secret', () => {
    const env = { ...withHelper({ credsStore: 'ferrytest' }, {}), FERRY_TEST_HELPER_FAIL: '1' };
    const hint = lookupCredentials('a.io', undefined, env).hint!;
    expect(hint).toContain('docker-credential-ferrytest failed to get the credentials for a.io: keychain locked; input was a.io');
  });

  it('refuses a helper name that is not one (no paths, no options)', () => {
    const env = { DOCKER_CONFIG: dockerConfig({ credsStore: '../../bin/sh' }) };
    expect(() => lookupCredentials('a.io', undefined, env)).toThrow(/not a helper name/);
  });
});

describe('dockerServerKey', () => {
  it('is what docker login writes: host[:port], Docker Hub\'s v1 URL', () => {
    expect(dockerServerKey('docker.io')).toBe('https://index.docker.io/v1/');
    expect(dockerServerKey('registry-1.docker.io')).toBe('https://index.docker.io/v1/');
    expect(dockerServerKey('Harbor.Corp.local:8443')).toBe('harbor.corp.local:8443');
  });
});

describe('storeDockerCredentials / eraseDockerCredentials', () => {
  it('keeps every other key, writes 0600 through a symlinked config.json, and erases every spelling', async () => {
    const real = dockerConfig({ auths: { 'x.io': { auth: b64('x:y') }, 'https://r.io': { auth: b64('old:pw') } }, psFormat: 'table {{.ID}}' });
    const linked = join(tmp.path, `linked-${n++}`);
    mkdirSync(linked);
    symlinkSync(join(real, 'config.json'), join(linked, 'config.json'));
    const env = { DOCKER_CONFIG: linked };
    const stored = await storeDockerCredentials('r.io', 'u', 'p:w', env);
    expect(stored).toEqual({ file: join(linked, 'config.json'), key: 'r.io' });
    expect(lstatSync(join(linked, 'config.json')).isSymbolicLink()).toBe(true);
    expect(statSync(join(real, 'config.json')).mode & 0o777).toBe(0o600);
    const doc = JSON.parse(readFileSync(join(real, 'config.json'), 'utf8')) as { auths: Record<string, unknown> };
    expect(doc).toEqual({ auths: { 'x.io': { auth: b64('x:y') }, 'https://r.io': { auth: b64('old:pw') }, 'r.io': { auth: b64('u:p:w') } }, psFormat: 'table {{.ID}}' });
    expect(lookupCredentials('r.io', undefined, env).credentials).toMatchObject({ username: 'u', password: 'p:w' });
    expect(readdirSync(real)).toEqual(['config.json']);

    const erased = await eraseDockerCredentials('r.io', env);
    expect(erased.keys.sort()).toEqual(['https://r.io', 'r.io']);
    expect(JSON.parse(readFileSync(join(real, 'config.json'), 'utf8'))).toEqual({ auths: { 'x.io': { auth: b64('x:y') } }, psFormat: 'table {{.ID}}' });
  });

  it('creates the directory (0700) and the file when there is none', async () => {
    const dir = join(tmp.path, `fresh-${n++}`, '.docker');
    await storeDockerCredentials('docker.io', 'hub', 'pw', { DOCKER_CONFIG: dir });
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    expect(JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'))).toEqual({ auths: { 'https://index.docker.io/v1/': { auth: b64('hub:pw') } } });
    expect(await eraseDockerCredentials('index.docker.io', { DOCKER_CONFIG: join(tmp.path, 'none') })).toEqual({ file: join(tmp.path, 'none', 'config.json'), keys: [], helperKeys: [] });
  });
});
