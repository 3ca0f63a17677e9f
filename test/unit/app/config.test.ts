import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { defaultConfigFile, envName, loadSettings, parseConfig, SETTABLE_FLAGS } from '../../../src/app/config.js';
import { connectionFor, pullConnectionFor, type RegistryAccess } from '../../../src/app/registry-access.js';
import { isFerryError } from '../../../src/errors.js';

const dir = mkdtempSync(join(tmpdir(), 'ferry-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function configError(fn: () => unknown): { message: string; code: string } {
  try {
    fn();
  } catch (e) {
    if (isFerryError(e)) return { message: e.message, code: e.code };
    throw e;
  }
  throw new Error('expected an error');
}

describe('config file', () => {
  it('reads global flags and per-registry settings, paths relative to the file', () => {
    const file = join(dir, 'a', 'config.json');
    const c = parseConfig(JSON.stringify({
      jobs: 8, 'plain-http': '10.0.0.5:5000', 'ca-file': 'certs/root.pem', 'ssh-key': ['k1', '/abs/k2'],
      registries: { 'Harbor.corp.local': { caFile: 'harbor.pem', insecure: false }, 'docker.io': { mirror: 'mirror.corp:5000' } },
    }), file);
    expect(c.flags).toEqual({ jobs: 8, 'plain-http': ['10.0.0.5:5000'], 'ca-file': join(dir, 'a', 'certs/root.pem'), 'ssh-key': [join(dir, 'a', 'k1'), '/abs/k2'] });
    expect(c.registries).toEqual({ 'harbor.corp.local': { caFile: join(dir, 'a', 'harbor.pem'), insecure: false }, 'docker.io': { mirror: 'mirror.corp:5000' } });
  });

  it('refuses typos, wrong types, credentials and bad hosts, naming the file and key', () => {
    const f = join(dir, 'x.json');
    const cases: [unknown, string][] = [
      [{ jbos: 3 }, 'jbos'],
      [{ jobs: 'many' }, 'jobs'],
      [{ jobs: 0 }, 'jobs'],
      [{ username: 'bob' }, 'username'],
      [{ registries: { 'harbor.corp': { cafile: 'x' } } }, 'registries.harbor.corp.cafile'],
      [{ registries: { 'harbor.corp': { insecure: 'yes' } } }, 'registries.harbor.corp.insecure'],
      [{ registries: { 'not a host': {} } }, 'registries.not a host'],
      [{ registries: { 'a.corp': { mirror: 'a.corp' } } }, 'registries.a.corp.mirror'],
      [{ registries: { 'a.corp': { mirror: 'http://m' } } }, 'registries.a.corp.mirror'],
      [[1, 2], 'the document'],
    ];
    for (const [doc, key] of cases) {
      const e = configError(() => parseConfig(JSON.stringify(doc), f));
      expect(e.code).toBe('E_CONFIG');
      expect(e.message, JSON.stringify(doc)).toContain(f);
      expect(e.message).toContain(key);
    }
    expect(configError(() => parseConfig('{ "jobs": 3,', f)).message).toMatch(/not valid JSON/);
  });
});

describe('settings: environment over config file', () => {
  it('maps FERRY_<FLAG> for every settable flag, lists split on commas and spaces', () => {
    expect(envName('plain-http')).toBe('FERRY_PLAIN_HTTP');
    const s = loadSettings([], { HOME: dir, FERRY_JOBS: '6', FERRY_PLAIN_HTTP: 'a:1, b:2 c:3', FERRY_JSON: 'yes', FERRY_INSECURE: '0', FERRY_CA_FILE: '/ca.pem' });
    expect(s.flags).toEqual({ jobs: 6, 'plain-http': ['a:1', 'b:2', 'c:3'], json: true, insecure: false, 'ca-file': '/ca.pem' });
    expect(s.file).toBeUndefined();
    for (const flag of Object.keys(SETTABLE_FLAGS)) expect(envName(flag)).toMatch(/^FERRY_[A-Z_]+$/);
  });

  it('leaves the credential variables alone', () => {
    const s = loadSettings([], { HOME: dir, FERRY_USERNAME: 'u', FERRY_PASSWORD: 'p', FERRY_REGISTRY_127_0_0_1_5000_USERNAME: 'u', FERRY_CACHE: '/c' });
    expect(s.flags).toEqual({});
  });

  it('refuses unreadable values with the variable name', () => {
    expect(configError(() => loadSettings([], { HOME: dir, FERRY_JOBS: 'lots' })).message).toContain('FERRY_JOBS');
    expect(configError(() => loadSettings([], { HOME: dir, FERRY_QUIET: 'maybe' })).message).toContain('FERRY_QUIET');
  });

  it('reads the default file when it exists, --config / FERRY_CONFIG when named (which must exist); env wins over the file', () => {
    const xdg = join(dir, 'xdg');
    const def = defaultConfigFile({ XDG_CONFIG_HOME: xdg });
    expect(def).toBe(join(xdg, 'ferry', 'config.json'));
    rmSync(join(xdg, 'ferry'), { recursive: true, force: true });
    expect(loadSettings([], { XDG_CONFIG_HOME: xdg }).file).toBeUndefined();
    mkdirSync(join(xdg, 'ferry'), { recursive: true });
    writeFileSync(def, JSON.stringify({ jobs: 3, quiet: true }));
    expect(loadSettings([], { XDG_CONFIG_HOME: xdg })).toMatchObject({ file: def, flags: { jobs: 3, quiet: true } });
    expect(loadSettings([], { XDG_CONFIG_HOME: xdg, FERRY_JOBS: '9' }).flags).toEqual({ jobs: 9, quiet: true });

    const other = join(dir, 'other.json');
    writeFileSync(other, JSON.stringify({ jobs: 5 }));
    expect(loadSettings(['export', '--config', other], { XDG_CONFIG_HOME: xdg }).flags).toEqual({ jobs: 5 });
    expect(loadSettings([`--config=${other}`], { XDG_CONFIG_HOME: xdg }).flags).toEqual({ jobs: 5 });
    expect(loadSettings([], { XDG_CONFIG_HOME: xdg, FERRY_CONFIG: other }).flags).toEqual({ jobs: 5 });
    const missing = configError(() => loadSettings(['--config', join(dir, 'nope.json')], {}));
    expect(missing.code).toBe('E_CONFIG');
    expect(missing.message).toContain('nope.json');
  });
});

describe('per-registry connections', () => {
  const access: RegistryAccess = {
    insecureAll: false, insecure: ['flagged.corp'], plainHttp: [], caFile: '/global.pem',
    registries: {
      'harbor.corp': { caFile: '/harbor.pem' },
      'old.corp': { insecure: true, plainHttp: true },
      'docker.io': { mirror: 'mirror.corp:5000' },
      'mirror.corp:5000': { plainHttp: true },
    },
  };

  it('applies the entry, flags adding to it, the global CA file as the fallback', () => {
    expect(connectionFor(access, 'harbor.corp')).toEqual({ registry: 'harbor.corp', insecure: false, plainHttp: false, caFile: '/harbor.pem' });
    expect(connectionFor(access, 'old.corp')).toEqual({ registry: 'old.corp', insecure: true, plainHttp: true, caFile: '/global.pem' });
    expect(connectionFor(access, 'flagged.corp')).toMatchObject({ insecure: true, caFile: '/global.pem' });
    expect(connectionFor(access, 'constructor')).toMatchObject({ insecure: false, plainHttp: false });
  });

  it('pulls from the mirror with the mirror\'s own settings; pushes ignore mirrors', () => {
    expect(pullConnectionFor(access, 'docker.io')).toEqual({ registry: 'mirror.corp:5000', insecure: false, plainHttp: true, caFile: '/global.pem' });
    expect(pullConnectionFor(access, 'index.docker.io').registry).toBe('mirror.corp:5000');
    expect(pullConnectionFor(access, 'harbor.corp').registry).toBe('harbor.corp');
    expect(connectionFor(access, 'docker.io').registry).toBe('docker.io');
  });
});
