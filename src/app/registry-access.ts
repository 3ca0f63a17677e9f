import type { ConnectionFactory } from '../net/http.js';
import type { RegistryOptions } from '../transports/registry/open.js';

/**
 * How the user allowed ferry to reach registries: TLS exceptions are explicit
 * and per registry (or `--insecure` for all), plain HTTP only where named.
 * Credentials given on the command line apply to every registry the command
 * touches; otherwise each registry's come from the environment or docker's config.
 */
export interface RegistryAccess {
  /** --insecure: skip TLS verification everywhere. */
  insecureAll: boolean;
  /** --insecure-registry HOST: skip TLS verification for these hosts only. */
  insecure: string[];
  /** --plain-http HOST: talk plain HTTP to these hosts. */
  plainHttp: string[];
  caFile?: string;
  username?: string;
  password?: string;
  /** --ssh: every registry connection is opened through the jump host. */
  connect?: ConnectionFactory;
  /** --connect-timeout / --idle-timeout, in ms. */
  connectTimeoutMs?: number;
  idleTimeoutMs?: number;
  /** --min-rate, bytes per second (0: off). */
  minBytesPerSecond?: number;
  /** Per-registry settings from the config file (`registries`), keyed by host[:port]. */
  registries?: Record<string, RegistrySettings>;
}

/** One registry's entry in the config file (see app/config.ts). */
export interface RegistrySettings {
  insecure?: boolean;
  caFile?: string;
  plainHttp?: boolean;
  /** Pull this registry's images from that host[:port] instead, same repository paths (as docker's registry-mirrors). */
  mirror?: string;
}

export const NO_REGISTRY_ACCESS: RegistryAccess = { insecureAll: false, insecure: [], plainHttp: [] };

/**
 * How to reach `registry` itself: flags first (`--insecure-registry`,
 * `--plain-http` add to the config file's entry), the entry's CA file before
 * the global `--ca-file`. Mirrors are not followed here: pushes and
 * inventories must talk to the registry they name (see pullConnectionFor).
 * The answer is what the registry transport opens with.
 */
export function connectionFor(access: RegistryAccess, registry: string): RegistryOptions {
  const site = settingsFor(access, registry);
  const c: RegistryOptions = {
    registry,
    insecure: access.insecureAll || access.insecure.includes(registry) || site?.insecure === true,
    plainHttp: access.plainHttp.includes(registry) || site?.plainHttp === true,
  };
  const caFile = site?.caFile ?? access.caFile;
  if (caFile) c.caFile = caFile;
  if (access.connect) c.connect = access.connect;
  if (access.connectTimeoutMs !== undefined) c.connectTimeoutMs = access.connectTimeoutMs;
  if (access.idleTimeoutMs !== undefined) c.idleTimeoutMs = access.idleTimeoutMs;
  if (access.minBytesPerSecond !== undefined) c.minBytesPerSecond = access.minBytesPerSecond;
  if (access.username !== undefined && access.password !== undefined) c.credentials = { username: access.username, password: access.password, source: '--username/--password-stdin' };
  return c;
}

/**
 * Where to pull `registry`'s images from: its configured mirror when it has one
 * (connected with the mirror's own settings; mirrors do not chain), else the
 * registry itself. No fallback to the upstream: behind an air gap it is not
 * there, and a silent fallback would hide a broken mirror.
 */
export function pullConnectionFor(access: RegistryAccess, registry: string): RegistryOptions {
  const mirror = settingsFor(access, registry)?.mirror;
  return connectionFor(access, mirror ?? registry);
}

/** Docker Hub answers to several names; config entries may use any of them. */
const DOCKER_HUB = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io']);

function settingsFor(access: RegistryAccess, registry: string): RegistrySettings | undefined {
  const table = access.registries;
  if (!table) return undefined;
  const key = registry.toLowerCase();
  if (Object.hasOwn(table, key)) return table[key];
  if (DOCKER_HUB.has(key)) {
    for (const name of DOCKER_HUB) if (Object.hasOwn(table, name)) return table[name];
  }
  return undefined;
}
