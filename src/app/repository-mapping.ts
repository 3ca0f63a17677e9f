import { FerryError } from '../errors.js';
import { fullName, isValidRegistry, isValidRepository, parseReference, splitQualifiedName, validateQualifiedName, validateRepository } from '../oci/reference.js';
import { nameMatcher } from '../fsys/glob.js';

/**
 * Maps the registry-qualified names a bundle stores (`docker.io/library/nginx`)
 * to repository names in a target. Rules, in order:
 *   1. the longest matching `--rename OLD=NEW` prefix (whole path components) is replaced;
 *   2. otherwise the registry host is dropped (`docker.io/library/nginx` → `library/nginx`),
 *      as a mirror does;
 *   3. `--flatten N` caps the depth at N components: the first N-1 stay, the rest
 *      are joined with `-` into the last one (`a/b/c/d` with 2 → `a/b-c-d`);
 *   4. a target prefix (`--to host/mirror`) is put in front (it does not count
 *      toward N: the prefix is the user's own choice of place).
 * The result must be a valid repository path, or the image is refused.
 *
 * A docker archive has no registry of its own: the name it stores is the name a
 * loader gives the image, so there the host is kept (`mapFullName`) and a
 * `--rename` target may be a registry (`quay.io=127.0.0.1:5941`).
 */
export interface Rename {
  from: string;
  to: string;
}

export function parseRenames(specs: string[]): Rename[] {
  return specs.map((spec) => {
    const eq = spec.indexOf('=');
    if (eq <= 0) throw new FerryError('E_USAGE', `--rename ${JSON.stringify(spec)}: expected OLD_PREFIX=NEW_PREFIX`, { hint: 'e.g. --rename docker.io/library=library' });
    const from = spec.slice(0, eq).replace(/\/+$/, '');
    const to = spec.slice(eq + 1).replace(/\/+$/, '');
    // A repository path, or a registry host[:port] with an optional path (docker-archive names keep the registry).
    if (to !== '' && !isValidRepository(to) && !isRegistryOnly(to)) validateQualifiedName(to, `--rename ${spec}`);
    return { from, to };
  });
}

/** Largest sensible --flatten: deeper names are not capped by any registry we know. */
export const MAX_FLATTEN_DEPTH = 16;

export function parseFlatten(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isInteger(n) || n < 1 || n > MAX_FLATTEN_DEPTH) {
    throw new FerryError('E_USAGE', `--flatten ${typeof value === 'string' || typeof value === 'number' ? value : JSON.stringify(value)}: expected a whole number of path components from 1 to ${MAX_FLATTEN_DEPTH}`, {
      hint: 'Harbor takes project/repository: --flatten 2; GitLab takes group/subgroup/project/name: --flatten 3 or 4',
    });
  }
  return n;
}

/**
 * Caps `name` at `depth` path components, joining the surplus with `-`. Two
 * valid components joined by `-` are one valid component (each starts and ends
 * with [a-z0-9]), and the length does not change, so the result stays valid.
 */
export function flattenRepository(name: string, depth: number): string {
  const parts = name.split('/');
  if (parts.length <= depth) return name;
  return [...parts.slice(0, depth - 1), parts.slice(depth - 1).join('-')].join('/');
}

/** `127.0.0.1:5941`, `quay.io`, `localhost`: a registry host[:port] alone, by docker's rule for a first component. */
function isRegistryOnly(text: string): boolean {
  return !text.includes('/') && (text.includes('.') || text.includes(':') || text === 'localhost') && isValidRegistry(text);
}

/** The longest `--rename` prefix (whole path components) applied to `qualified`; undefined when none matches. */
function renamed(qualified: string, renames: Rename[]): string | undefined {
  let best: Rename | undefined;
  for (const r of renames) {
    if ((qualified === r.from || qualified.startsWith(`${r.from}/`)) && (!best || r.from.length > best.from.length)) best = r;
  }
  if (!best) return undefined;
  const rest = qualified.slice(best.from.length).replace(/^\//, '');
  return [best.to, rest].filter((s) => s !== '').join('/');
}

export function mapRepository(qualified: string, renames: Rename[], prefix = '', flatten?: number): string {
  let name = renamed(qualified, renames) ?? splitQualifiedName(qualified).repository;
  if (flatten !== undefined) name = flattenRepository(name, flatten);
  if (prefix) name = `${prefix}/${name}`;
  const host = splitQualifiedName(name).registry;
  if (host !== undefined && host.includes(':')) {
    throw new FerryError('E_USAGE', `repository for ${qualified}: "${name}" starts with a registry (${host}); this target takes repository paths`, {
      hint: 'a --rename to a registry host[:port] applies to --to docker-archive, whose names keep their registry; for a registry target give the host with --to', details: { name },
    });
  }
  return validateRepository(name, `repository for ${qualified}`);
}

/**
 * The name a docker archive stores for an image (its `RepoTags`), which is the name
 * `docker load`, `podman load` and `ctr import` give it: the bundle's full name,
 * registry included (`quay.io/calico/node`), after the longest `--rename` prefix.
 * Always written fully qualified, `docker.io/library/nginx` too: docker save's short
 * form (`nginx`) is read as `docker.io/library/nginx` by docker and containerd but as
 * `localhost/nginx` by podman 4 (measured in test/integration/interop-archive.test.ts),
 * while the full form gives the same name in all three.
 */
export function mapFullName(qualified: string, renames: Rename[]): string {
  return validateQualifiedName(renamed(qualified, renames) ?? qualified, `name for ${qualified}`);
}

/**
 * `--registry-name HOST`: a host[:port] by docker's rule for a first
 * component (it has `.` or `:`, or is `localhost`); anything else would be
 * read back as the first path component of the name, not as a registry.
 */
export function parseRegistryName(text: string): string {
  const host = text.trim().replace(/\/+$/, '');
  if (!isRegistryOnly(host)) {
    throw new FerryError('E_USAGE', `--registry-name ${JSON.stringify(text.slice(0, 200))}: not a registry host[:port]`, {
      hint: 'a registry host has a "." or a ":" (port) or is localhost, e.g. registry.corp.local, 10.0.0.5:5000 or docker.io', details: { flag: '--registry-name', value: text.slice(0, 200) },
    });
  }
  return host;
}

/**
 * A name found without a registry, recorded under `host` by the reference
 * grammar (`python` under docker.io is `docker.io/library/python`, as docker
 * reads it); a name that already has a registry keeps it.
 */
export function qualifyName(name: string, host: string): string {
  if (splitQualifiedName(name).registry !== undefined) return name;
  return validateQualifiedName(fullName(parseReference(`${host}/${name}`, `--registry-name ${host}`)), `--registry-name ${host}: ${name}`);
}

/** Glob over image references (`--image`): `*` any run of characters, across `/`; `?` one character. */
export function matchesPattern(text: string, pattern: string): boolean {
  return nameMatcher(pattern)(text);
}
