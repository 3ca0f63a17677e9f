import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { lookupCredentials, normaliseAuthKey, registryEnvPrefix } from '../../../src/net/credentials.js';
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

  it('says so when a credential helper holds the credentials', () => {
    const env = { DOCKER_CONFIG: dockerConfig({ auths: { 'a.io': {} }, credsStore: 'desktop', credHelpers: { 'gcr.io': 'gcloud' } }) };
    expect(lookupCredentials('a.io', undefined, env).hint).toContain('docker-credential-desktop');
    expect(lookupCredentials('gcr.io', undefined, env).hint).toContain('docker-credential-gcloud');
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
