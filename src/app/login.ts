import { FerryError, isFerryError } from '../errors.js';
import { type Env, eraseDockerCredentials, normaliseAuthKey, storeDockerCredentials } from '../net/credentials.js';
import { discard } from '../net/http.js';
import { SshSession, type SshOptions } from '../net/ssh/session.js';
import { isValidRegistry } from '../oci/reference.js';
import { RegistryClient } from '../transports/registry/client.js';
import { connectionFor, type RegistryAccess } from './registry-access.js';

/**
 * `ferry login` / `ferry logout`: docker's config.json (and its credential
 * helpers) as the one place credentials are kept, written the way `docker
 * login` writes them so either tool reads what the other stored. A login is
 * checked against the registry (GET /v2/ through the same challenge flow a pull
 * takes) before anything is stored: wrong credentials are never saved.
 */

export interface LoginOptions {
  /** As typed: host[:port], a URL (`https://host/`), or a Docker Hub name. */
  registry: string;
  username: string;
  password: string;
  /** TLS, plain-HTTP and timeout settings for reaching the registry; its own credentials are not used. */
  access: RegistryAccess;
  /** --ssh: the check goes through this jump host. */
  ssh?: SshOptions | undefined;
  signal?: AbortSignal | undefined;
  env?: Env;
}

export interface LoginResult {
  registry: string;
  username: string;
  /** The docker config file written. */
  file: string;
  /** Its `auths` key: host[:port], or `https://index.docker.io/v1/` for Docker Hub (as docker writes it). */
  key: string;
  /** `helper`: the secret is in a credential helper; `config-file`: base64 in the file, not encrypted. */
  stored: 'helper' | 'config-file';
  helper?: string;
}

export interface LogoutResult {
  registry: string;
  /** false: nothing was stored for the registry (not an error, as with docker logout). */
  removed: boolean;
  file: string;
  /** `auths` keys removed from the file. */
  keys: string[];
  /** Server URLs erased from the credential helper. */
  helperKeys: string[];
  helper?: string;
}

/** host[:port] of what the user typed, `docker.io` for Docker Hub; refuses anything that is not a registry host. */
export function registryHost(input: string): string {
  const host = normaliseAuthKey(input.trim());
  if (!host || !isValidRegistry(host)) {
    throw new FerryError('E_USAGE', `${JSON.stringify(input.slice(0, 100))} is not a registry host`, {
      hint: 'name the registry as in image references: host[:port], e.g. ferry login harbor.corp.local or ferry login 10.0.0.5:5000',
    });
  }
  return host;
}

export async function login(opts: LoginOptions): Promise<LoginResult> {
  const registry = registryHost(opts.registry);
  if (!opts.username) throw new FerryError('E_USAGE', 'no user name given', { hint: `ferry login ${registry} -u USER` });
  if (opts.password === '') throw new FerryError('E_USAGE', `no password given for ${opts.username} at ${registry}`, { hint: 'type it at the prompt, or pipe it with --password-stdin' });
  if (opts.ssh) {
    const session = await SshSession.open(opts.ssh);
    try {
      await checkCredentials(registry, opts, { ...opts.access, connect: session.connectionFactory });
    } finally {
      session.close();
    }
  } else {
    await checkCredentials(registry, opts, opts.access);
  }
  const stored = await storeDockerCredentials(registry, opts.username, opts.password, opts.env);
  return {
    registry, username: opts.username, file: stored.file, key: stored.key,
    stored: stored.helper ? 'helper' : 'config-file', ...(stored.helper ? { helper: stored.helper } : {}),
  };
}

/** GET /v2/ with these credentials: the registry's own answer (Basic, or a token from its realm) decides. */
async function checkCredentials(registry: string, opts: LoginOptions, access: RegistryAccess): Promise<void> {
  // Only the connection settings: the credentials checked are the ones given, never a stored or --username pair.
  const { username: _u, password: _p, ...settings } = access;
  const connection = connectionFor(settings, registry);
  const client = new RegistryClient({ ...connection, credentials: { username: opts.username, password: opts.password, source: 'ferry login' } });
  try {
    const res = await client.expect({ method: 'GET', url: '/v2/', scopes: [], signal: opts.signal }, [200], `logging in to ${registry}`);
    await discard(res.body);
  } catch (e) {
    if (isFerryError(e, 'E_AUTH') || isFerryError(e, 'E_DENIED')) {
      throw new FerryError('E_AUTH', `${registry} refused user "${opts.username}": ${e.message.replace(/^logging in to \S+: /, '')}; nothing was stored`, {
        cause: e, hint: 'check the user name and the password (or token) and log in again', details: { registry, username: opts.username, ...e.details },
      });
    }
    throw e;
  } finally {
    client.close();
  }
}

export async function logout(opts: { registry: string; env?: Env }): Promise<LogoutResult> {
  const registry = registryHost(opts.registry);
  const erased = await eraseDockerCredentials(registry, opts.env);
  return {
    registry, removed: erased.keys.length + erased.helperKeys.length > 0, file: erased.file, keys: erased.keys, helperKeys: erased.helperKeys,
    ...(erased.helper ? { helper: erased.helper } : {}),
  };
}

export function renderLogin(r: LoginResult): string {
  return `logged in to ${r.registry} as ${r.username}; credentials in ${r.helper ? `${r.helper} (${r.file})` : r.file}`;
}

export function renderLogout(r: LogoutResult): string {
  if (!r.removed) return `not logged in to ${r.registry}: nothing stored in ${r.helper ? `${r.helper} or ` : ''}${r.file}`;
  const where = [...(r.helperKeys.length ? [`${r.helper}`] : []), ...(r.keys.length ? [r.file] : [])].join(' and ');
  return `logged out of ${r.registry}: credentials removed from ${where}`;
}
