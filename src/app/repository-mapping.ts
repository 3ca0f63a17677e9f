import { FerryError } from '../errors.js';
import { splitQualifiedName, validateRepository } from '../oci/reference.js';

/**
 * Maps the registry-qualified names a bundle stores (`docker.io/library/nginx`)
 * to repository names in a target. Rules, in order:
 *   1. the longest matching `--rename OLD=NEW` prefix (whole path components) is replaced;
 *   2. otherwise the registry host is dropped (`docker.io/library/nginx` → `library/nginx`),
 *      as a mirror does;
 *   3. a target prefix (`--to host/mirror`) is put in front.
 * The result must be a valid repository path, or the image is refused.
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
    if (to !== '') validateRepository(to, `--rename ${spec}`);
    return { from, to };
  });
}

export function mapRepository(qualified: string, renames: Rename[], prefix = ''): string {
  let best: Rename | undefined;
  for (const r of renames) {
    if ((qualified === r.from || qualified.startsWith(`${r.from}/`)) && (!best || r.from.length > best.from.length)) best = r;
  }
  let name: string;
  if (best) {
    const rest = qualified.slice(best.from.length).replace(/^\//, '');
    name = [best.to, rest].filter((s) => s !== '').join('/');
  } else {
    name = splitQualifiedName(qualified).repository;
  }
  if (prefix) name = `${prefix}/${name}`;
  return validateRepository(name, `repository for ${qualified}`);
}

/** Glob over image references: `*` any run of characters, `?` one. */
export function matchesPattern(text: string, pattern: string): boolean {
  const re = new RegExp(`^${pattern.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[.+^${}()|[\]\\]/g, '\\$&'))).join('')}$`);
  return re.test(text);
}
