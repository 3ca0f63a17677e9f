import { open, realpath, rename, rm } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { FerryError, isFerryError } from '../errors.js';
import { tempPathFor } from '../fsys/atomic.js';
import { isMissing, mkdirp, naming } from '../fsys/files.js';
import { CredentialHelper, type Env } from './credential-helper.js';
import { INPUT, parseJsonInput, readInputFileSync } from '../input-limits.js';

/**
 * Where the credentials for a registry come from, first match wins:
 *   1. explicit (command-line flags);
 *   2. environment, per registry: FERRY_REGISTRY_<HOST>_USERNAME / _PASSWORD,
 *      <HOST> being host[:port] upper-cased with every character outside
 *      [A-Z0-9] replaced by `_` (127.0.0.1:5000 → FERRY_REGISTRY_127_0_0_1_5000_USERNAME);
 *   3. environment, any registry: FERRY_USERNAME / FERRY_PASSWORD. They are
 *      offered to every registry the run talks to (only when it asks for
 *      them), so prefer the per-registry form when several registries are used;
 *   4. $DOCKER_CONFIG/config.json (default ~/.docker/config.json), as docker
 *      reads it: the credential helper named for the registry in `credHelpers`,
 *      else `credsStore` (see credential-helper.ts); then the `auths` entry:
 *      base64 `auth`, `username`/`password`, or `identitytoken`.
 * `ferry login` and `ferry logout` write the same file the way `docker login`
 * does (storeDockerCredentials, eraseDockerCredentials), so the two tools are
 * interchangeable.
 */

export interface Credentials {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token (docker's `identitytoken`), exchanged at the token realm. */
  identityToken?: string;
  /** Where they came from, for messages: `--username`, `FERRY_USERNAME`, `/home/u/.docker/config.json`. */
  source: string;
}

export interface CredentialLookup {
  credentials?: Credentials;
  /** Why none were found although the user set something up (a credential helper that is missing or failed). */
  hint?: string;
}

export type { Env } from './credential-helper.js';

const DOCKER_HUB_KEYS = ['docker.io', 'index.docker.io', 'registry-1.docker.io'];

export function registryEnvPrefix(registry: string): string {
  return `FERRY_REGISTRY_${registry.toUpperCase().replace(/[^A-Z0-9]/g, '_')}`;
}

export function lookupCredentials(registry: string, explicit: Credentials | undefined, env: Env = process.env): CredentialLookup {
  if (explicit) return { credentials: explicit };

  const prefix = registryEnvPrefix(registry);
  const fromEnv = envPair(env, `${prefix}_USERNAME`, `${prefix}_PASSWORD`) ?? envPair(env, 'FERRY_USERNAME', 'FERRY_PASSWORD');
  if (fromEnv) return { credentials: fromEnv };

  return fromDockerConfig(registry, env);
}

function envPair(env: Env, userVar: string, passVar: string): Credentials | undefined {
  const username = env[userVar];
  const password = env[passVar];
  if (username === undefined && password === undefined) return undefined;
  if (!username || password === undefined) {
    throw new FerryError('E_CONFIG', `${username ? passVar : userVar} is not set but ${username ? userVar : passVar} is`, {
      hint: `set both ${userVar} and ${passVar}, or neither`,
    });
  }
  return { username, password, source: userVar };
}

/** host[:port] of a docker config `auths` key, which may be a URL (`https://index.docker.io/v1/`). */
export function normaliseAuthKey(key: string): string {
  const host = key.replace(/^[a-z][a-z0-9+.-]*:\/\//i, '').replace(/\/.*$/, '').toLowerCase();
  return DOCKER_HUB_KEYS.includes(host) ? 'docker.io' : host;
}

/** Docker Hub's key in config.json and in credential helpers (what `docker login` writes). */
export const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/';

/** The key docker uses for a registry in `auths` and with helpers: Hub's v1 URL, else host[:port]. */
export function dockerServerKey(registry: string): string {
  const host = normaliseAuthKey(registry);
  return host === 'docker.io' ? DOCKER_HUB_SERVER : host;
}

/** $DOCKER_CONFIG/config.json, else ~/.docker/config.json. */
export function dockerConfigFile(env: Env = process.env): string {
  return join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json');
}

interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** config.json as docker writes it; every other key is kept as read. */
interface DockerConfig {
  auths?: Record<string, AuthEntry>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
  [key: string]: unknown;
}

/** The file's document, or undefined when there is no file. */
function readDockerConfig(file: string): DockerConfig | undefined {
  let bytes: Buffer;
  try {
    bytes = readInputFileSync(file, INPUT.dockerConfig);
  } catch (e) {
    if (e instanceof FerryError) throw e;
    // No file, or a file where its folder should be: there is no config (login then says why it cannot write one).
    if (isMissing(e)) return undefined;
    throw new FerryError('E_CONFIG', `cannot read ${file}: ${(e as Error).message}`, { cause: e, hint: 'fix its permissions, or point DOCKER_CONFIG elsewhere' });
  }
  let doc: unknown;
  try {
    doc = parseJsonInput(bytes, file, INPUT.dockerConfig);
  } catch (e) {
    if (e instanceof FerryError) throw e;
    throw new FerryError('E_CONFIG', `${file} is not valid JSON`, { cause: e, hint: 'fix the file or point DOCKER_CONFIG at a directory with a valid config.json' });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
    throw new FerryError('E_CONFIG', `${file} is not a JSON object`, { hint: 'fix the file or point DOCKER_CONFIG at a directory with a valid config.json' });
  }
  const config = doc as DockerConfig;
  for (const key of ['auths', 'credHelpers'] as const) {
    const v = config[key];
    if (v !== undefined && (typeof v !== 'object' || v === null || Array.isArray(v))) {
      throw new FerryError('E_CONFIG', `${file}: "${key}" is not an object`, { hint: 'fix the file; docker writes it as {"host": …}' });
    }
  }
  if (config.credsStore !== undefined && typeof config.credsStore !== 'string') throw new FerryError('E_CONFIG', `${file}: "credsStore" is not a string`, { hint: 'fix the file' });
  return config;
}

/** The `auths` keys that name `registry`, the exact key docker would write first. */
function authKeysFor(config: DockerConfig, registry: string): string[] {
  const exact = dockerServerKey(registry);
  const wanted = normaliseAuthKey(registry);
  const keys = Object.keys(config.auths ?? {}).filter((k) => normaliseAuthKey(k) === wanted);
  return keys.sort((a, b) => Number(b === exact) - Number(a === exact));
}

/** The helper that keeps `registry`'s credentials, as docker picks it: its credHelpers entry, else credsStore. */
function helperFor(config: DockerConfig, registry: string, file: string, env: Env): CredentialHelper | undefined {
  const wanted = normaliseAuthKey(registry);
  const own = Object.entries(config.credHelpers ?? {}).find(([key]) => normaliseAuthKey(key) === wanted);
  if (own) return new CredentialHelper(String(own[1]), `credHelpers in ${file}`, env);
  if (config.credsStore) return new CredentialHelper(config.credsStore, `credsStore in ${file}`, env);
  return undefined;
}

function fromDockerConfig(registry: string, env: Env): CredentialLookup {
  const file = dockerConfigFile(env);
  const config = readDockerConfig(file);
  if (!config) return {};

  // As docker: a configured helper holds the credentials. An inline entry is still used when the helper
  // has none or cannot run (a config copied from another machine), and a failing helper is reported
  // only when the registry does ask for credentials (a public pull needs none).
  const helper = helperFor(config, registry, file, env);
  let helperProblem: string | undefined;
  if (helper) {
    try {
      const found = helper.get(dockerServerKey(registry));
      if (found) {
        const source = `${helper.program} (${file})`;
        if (found.username === '<token>') return { credentials: { identityToken: found.secret, source } };
        return { credentials: { username: found.username, password: found.secret, source } };
      }
    } catch (e) {
      if (!isFerryError(e)) throw e;
      helperProblem = `${e.message}${e.hint ? `; ${e.hint}` : ''}`;
    }
  }

  for (const key of authKeysFor(config, registry)) {
    const entry = config.auths![key]!;
    if (entry.identitytoken) return { credentials: { identityToken: entry.identitytoken, ...(entry.username ? { username: entry.username } : {}), source: file } };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon <= 0) throw new FerryError('E_CONFIG', `${file}: the "auth" entry for ${registry} is not base64 of user:password`, { hint: `log in to ${registry} again (ferry login ${registry}), or fix the entry` });
      return { credentials: { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source: file } };
    }
    if (entry.username && entry.password !== undefined) return { credentials: { username: entry.username, password: entry.password, source: file } };
  }
  return helperProblem ? { hint: helperProblem } : {};
}

/** Where `ferry login` put the credentials. */
export interface StoredCredentials {
  /** The config file written (the `auths` entry, or its empty placeholder beside a helper). */
  file: string;
  /** The `auths` key: host[:port], or Docker Hub's v1 URL. */
  key: string;
  /** The helper program that holds the secret; absent: the secret is in the file (base64, not encrypted). */
  helper?: string;
}

/**
 * Saves credentials the way `docker login` does, so either tool reads what the
 * other wrote: through the configured helper (leaving an empty `auths` entry,
 * as docker does), else as base64 `user:password` in `auths`. Every other key of
 * the file is kept; the file is replaced atomically, mode 0600.
 */
export async function storeDockerCredentials(registry: string, username: string, password: string, env: Env = process.env): Promise<StoredCredentials> {
  const file = dockerConfigFile(env);
  const config = readDockerConfig(file) ?? {};
  const key = dockerServerKey(registry);
  const helper = helperFor(config, registry, file, env);
  if (helper) helper.store(key, username, password);
  config.auths = { ...(config.auths ?? {}), [key]: helper ? {} : { auth: Buffer.from(`${username}:${password}`).toString('base64') } };
  await writeDockerConfig(file, config);
  return { file, key, ...(helper ? { helper: helper.program } : {}) };
}

/** What `ferry logout` removed. */
export interface ErasedCredentials {
  file: string;
  /** `auths` keys removed from the file. */
  keys: string[];
  /** Server URLs erased from the helper. */
  helperKeys: string[];
  helper?: string;
}

/**
 * Removes every stored credential for `registry`: its `auths` entries under
 * any spelling (`host`, `https://host`, …) and, with a helper, every server URL
 * the helper lists for it. The file is rewritten only when something changed.
 */
export async function eraseDockerCredentials(registry: string, env: Env = process.env): Promise<ErasedCredentials> {
  const file = dockerConfigFile(env);
  const config = readDockerConfig(file);
  if (!config) return { file, keys: [], helperKeys: [] };
  const helper = helperFor(config, registry, file, env);
  const wanted = normaliseAuthKey(registry);
  const helperKeys = helper ? Object.keys(helper.list()).filter((k) => normaliseAuthKey(k) === wanted) : [];
  for (const k of helperKeys) helper!.erase(k);
  const keys = authKeysFor(config, registry);
  if (keys.length > 0) {
    const auths = { ...config.auths };
    for (const k of keys) delete auths[k];
    config.auths = auths;
    await writeDockerConfig(file, config);
  }
  return { file, keys, helperKeys, ...(helper ? { helper: helper.program } : {}) };
}

/**
 * Replaces config.json: a temp file beside it (mode 0600: it holds secrets),
 * fsync, rename, fsync of the directory. A config.json that is a symlink (a
 * dotfiles checkout) is followed, as docker does, so the link stays.
 */
async function writeDockerConfig(file: string, config: DockerConfig): Promise<void> {
  const target = await realpath(file).catch(() => file);
  const dir = dirname(target);
  const tmp = tempPathFor(target);
  try {
    await mkdirp(dir, 0o700);
    const fh = await open(tmp, 'wx', 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(config, null, '\t')}\n`);
      await fh.chmod(0o600);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, target);
  } catch (e) {
    await rm(tmp, { force: true });
    // A file-system error (read-only, full, a file in the way) says so and what to do, naming the file (errors.ts).
    if (typeof (e as NodeJS.ErrnoException).syscall === 'string') throw naming(e, target);
    throw new FerryError('E_IO', `cannot write ${target}: ${(e as Error).message}`, { cause: e, hint: 'check the permissions of the directory, or point DOCKER_CONFIG elsewhere' });
  }
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
