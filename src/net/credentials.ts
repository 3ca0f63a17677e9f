import { homedir } from 'node:os';
import { join } from 'node:path';
import { FerryError } from '../errors.js';
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
 *   4. `auths` in $DOCKER_CONFIG/config.json (default ~/.docker/config.json):
 *      base64 `auth`, `username`/`password`, or `identitytoken`.
 * Credential helpers (credsStore, credHelpers) are not run; when one is set up
 * for the registry and no inline entry exists, the lookup says so in `hint`.
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
  /** Why none were found although the user set something up (a credential helper). */
  hint?: string;
}

export type Env = Record<string, string | undefined>;

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

interface DockerConfig {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
  credsStore?: string;
  credHelpers?: Record<string, string>;
}

function fromDockerConfig(registry: string, env: Env): CredentialLookup {
  const file = join(env.DOCKER_CONFIG || join(env.HOME || homedir(), '.docker'), 'config.json');
  let bytes: Buffer;
  try {
    bytes = readInputFileSync(file, INPUT.dockerConfig);
  } catch (e) {
    if (e instanceof FerryError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new FerryError('E_CONFIG', `cannot read ${file}: ${(e as Error).message}`, { cause: e, hint: 'fix its permissions, or point DOCKER_CONFIG elsewhere' });
  }
  let config: DockerConfig;
  try {
    config = parseJsonInput(bytes, file, INPUT.dockerConfig) as DockerConfig;
  } catch (e) {
    if (e instanceof FerryError) throw e;
    throw new FerryError('E_CONFIG', `${file} is not valid JSON`, { cause: e, hint: 'fix the file or point DOCKER_CONFIG at a directory with a valid config.json' });
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    throw new FerryError('E_CONFIG', `${file} is not a JSON object`, { hint: 'fix the file or point DOCKER_CONFIG at a directory with a valid config.json' });
  }

  const wanted = normaliseAuthKey(registry);
  const entry = Object.entries(config.auths ?? {}).find(([key]) => normaliseAuthKey(key) === wanted)?.[1];
  if (entry) {
    if (entry.identitytoken) return { credentials: { identityToken: entry.identitytoken, ...(entry.username ? { username: entry.username } : {}), source: file } };
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      if (colon <= 0) throw new FerryError('E_CONFIG', `${file}: the "auth" entry for ${registry} is not base64 of user:password`, { hint: `log in to ${registry} again, or fix the entry` });
      return { credentials: { username: decoded.slice(0, colon), password: decoded.slice(colon + 1), source: file } };
    }
    if (entry.username && entry.password !== undefined) return { credentials: { username: entry.username, password: entry.password, source: file } };
  }

  const helper = Object.entries(config.credHelpers ?? {}).find(([key]) => normaliseAuthKey(key) === wanted)?.[1] ?? config.credsStore;
  if (helper) {
    return {
      hint: `${file} stores credentials for ${registry} in the credential helper "docker-credential-${helper}", which ferry does not run; pass --username/--password or set ${registryEnvPrefix(registry)}_USERNAME/_PASSWORD`,
    };
  }
  return {};
}
