import { FerryError } from '../errors.js';
import { type Digest, isDigest } from './digest.js';

/**
 * Image references by the distribution reference grammar, normalised the way
 * docker does (`nginx` → `docker.io/library/nginx:latest`). Repository paths and
 * tags later become file names, so nothing leaves this module unvalidated.
 */

export interface Reference {
  /** Registry host[:port] as written, `docker.io` for Docker Hub. */
  registry: string;
  /** Repository path inside the registry, e.g. `library/nginx`, `a/b/c`. */
  repository: string;
  tag?: string;
  digest?: Digest;
}

const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const REPOSITORY_RE = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?$`);
const TAG_RE = /^[\w][\w.-]{0,127}$/;
const NAME_MAX = 255;

export const DOCKER_HUB = 'docker.io';

export function isValidRepository(name: string): boolean {
  return name.length <= NAME_MAX && REPOSITORY_RE.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG_RE.test(tag);
}

export function isValidRegistry(host: string): boolean {
  if (!DOMAIN_RE.test(host)) return false;
  // The grammar takes any digits after ':'; a port outside 1-65535 is no address (URL parsing
  // would throw far from here, as if ferry had a bug).
  const port = /:([0-9]+)$/.exec(host);
  if (port === null) return true;
  const n = Number(port[1]);
  return n >= 1 && n <= 65535;
}

/** Docker's rule for the first path component: a host when it has `.` or `:`, is `localhost`, or has capitals. */
function isHostComponent(first: string): boolean {
  return first.includes('.') || first.includes(':') || first === 'localhost' || first.toLowerCase() !== first;
}

const REPOSITORY_HINT = 'repository names are lowercase path components [a-z0-9] joined by "/", with ".", "_", "__" or "-" inside a component, at most 255 characters';

/** Throws E_NAME_UNSAFE unless `name` is a repository path by the grammar (no `..`, no leading `/`, no odd bytes). */
export function validateRepository(name: unknown, where = 'repository'): string {
  if (typeof name === 'string' && isValidRepository(name)) return name;
  throw unsafeName(where, name, 'repository name', REPOSITORY_HINT);
}

export function validateTag(tag: unknown, where = 'tag'): string {
  if (typeof tag === 'string' && isValidTag(tag)) return tag;
  throw unsafeName(where, tag, 'tag', 'tags are 1 to 128 characters of [A-Za-z0-9_.-] and do not start with "." or "-"');
}

/** The one E_NAME_UNSAFE of a name: what it is, where it came from, shown at most 300 characters long. */
function unsafeName(where: string, value: unknown, what: string, hint: string): FerryError {
  const text = (typeof value === 'string' ? value : JSON.stringify(value) ?? typeof value).slice(0, 300);
  return new FerryError('E_NAME_UNSAFE', `${where}: ${JSON.stringify(text)} is not a valid ${what}`, {
    hint, details: { where, [what === 'tag' ? 'tag' : 'name']: text },
  });
}

function referenceError(input: string, where: string, why: string): FerryError {
  return new FerryError('E_REFERENCE', `${where}: ${JSON.stringify(input.slice(0, 300))} is not a valid image reference: ${why}`, {
    hint: 'write references as [registry[:port]/]repository[:tag][@sha256:<hex>], e.g. nginx:1.25 or quay.io/calico/node:v3.26.1',
    details: { where, reference: input.slice(0, 300) },
  });
}

/**
 * Parses and normalises an image reference. A reference with neither tag nor
 * digest gets `latest`; one with both keeps both (the digest wins when pulling).
 * @param where names the source of the text (e.g. `images.list:7`) for error messages.
 */
export function parseReference(input: string, where = 'reference'): Reference {
  const text = input.trim();
  if (text === '') throw referenceError(input, where, 'it is empty');
  if (/\s/.test(text)) throw referenceError(input, where, 'it contains white space');

  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) throw referenceError(input, where, `"${d.slice(0, 80)}" is not a sha256 digest (sha256:<64 lowercase hex>)`);
    digest = d;
    rest = rest.slice(0, at);
  }

  let tag: string | undefined;
  const lastColon = rest.lastIndexOf(':');
  if (lastColon > rest.lastIndexOf('/')) {
    tag = rest.slice(lastColon + 1);
    rest = rest.slice(0, lastColon);
    if (!isValidTag(tag)) throw referenceError(input, where, `"${tag.slice(0, 80)}" is not a valid tag`);
  }

  let registry = DOCKER_HUB;
  let repository = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (isHostComponent(first)) {
      registry = first;
      repository = rest.slice(slash + 1);
    }
  }
  if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  if (!isValidRegistry(registry)) throw referenceError(input, where, `"${registry}" is not a valid registry host`);
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (!REPOSITORY_RE.test(repository)) {
    throw referenceError(input, where, `"${repository}" is not a valid repository path (lowercase letters, digits and . _ __ - inside components)`);
  }
  if (registry.length + 1 + repository.length > NAME_MAX) throw referenceError(input, where, 'the name is longer than 255 characters');

  if (tag === undefined && digest === undefined) tag = 'latest';
  const ref: Reference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** `registry/repository` */
export function fullName(ref: Pick<Reference, 'registry' | 'repository'>): string {
  return `${ref.registry}/${ref.repository}`;
}

export function formatReference(ref: Reference): string {
  let s = fullName(ref);
  if (ref.tag !== undefined) s += `:${ref.tag}`;
  if (ref.digest !== undefined) s += `@${ref.digest}`;
  return s;
}

/** The host that serves the registry API for a registry name (Docker Hub's API lives elsewhere). */
export function registryApiHost(registry: string): string {
  return registry === DOCKER_HUB ? 'registry-1.docker.io' : registry;
}

/**
 * A registry-qualified name as bundles store it: `docker.io/library/nginx`,
 * `127.0.0.1:5000/a/b/c`, or a bare repository path (`team/app`) when the
 * source had no registry (a layout on disk). Validated before any use as a path.
 */
export function validateQualifiedName(name: unknown, where = 'repository'): string {
  if (typeof name === 'string' && isValidQualifiedName(name)) return name;
  throw unsafeName(where, name, 'repository name ([registry host[:port]/]path)',
    'repository names are lowercase path components [a-z0-9] joined by "/" (".", "_", "__" or "-" inside a component), optionally after a registry host, e.g. docker.io/library/nginx, 127.0.0.1:5000/team/app or python; at most 255 characters');
}

/** Whether `name` is `[host[:port]/]path` by the grammar (the host by docker's rule), without throwing. */
export function isValidQualifiedName(name: string): boolean {
  const split = splitQualifiedName(name);
  return name.length <= NAME_MAX && (split.registry === undefined || isValidRegistry(split.registry)) && isValidRepository(split.repository);
}

/** A name as other tools write it beside a tag or digest, taken verbatim: no `docker.io` or `library/` is added. */
export interface LocalReference {
  /** `[host[:port]/]path`, validated. */
  name: string;
  tag?: string;
  digest?: Digest;
}

/**
 * Splits `name:tag`, `name@sha256:…` or `name:tag@sha256:…` by the reference
 * grammar (the tag is after the last `:` that follows the last `/`, so
 * `127.0.0.1:5000/app:1` is `127.0.0.1:5000/app` and `1`). Unlike
 * parseReference nothing is normalised: `app:1` names `app`, not
 * `docker.io/library/app` — a layout's names are the user's, not Docker Hub's.
 * Undefined when the text has neither tag nor digest or any part is invalid.
 */
export function parseLocalReference(text: string): LocalReference | undefined {
  let rest = text;
  let digest: Digest | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    const d = rest.slice(at + 1);
    if (!isDigest(d)) return undefined;
    digest = d;
    rest = rest.slice(0, at);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!isValidTag(tag)) return undefined;
  }
  if ((tag === undefined && digest === undefined) || !isValidQualifiedName(rest)) return undefined;
  const out: LocalReference = { name: rest };
  if (tag !== undefined) out.tag = tag;
  if (digest !== undefined) out.digest = digest;
  return out;
}

/** Splits `host[:port]/path` by docker's rule, the same as parseReference's (isHostComponent). */
export function splitQualifiedName(name: string): { registry?: string; repository: string } {
  const slash = name.indexOf('/');
  if (slash > 0) {
    const first = name.slice(0, slash);
    if (isHostComponent(first)) return { registry: first, repository: name.slice(slash + 1) };
  }
  return { repository: name };
}
