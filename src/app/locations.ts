import { stat } from 'node:fs/promises';
import { join, posix, resolve } from 'node:path';
import { FerryError } from '../errors.js';
import type { FileSystemPort } from '../fsys/port.js';
import type { Owner } from '../fsys/owner.js';
import type { Platform } from '../oci/platform.js';
import type { PruneReport } from '../transports/storage/index.js';
import { isValidRegistry, validateRepository } from '../oci/reference.js';
import type { ImageDestination, ImageSource } from '../transports/types.js';
import type { RegistryOptions } from '../transports/registry/open.js';
import { connectionFor, type RegistryAccess } from './registry-access.js';

/**
 * Every place images live, named the one way the user writes it:
 * `KIND:LOCATION` (containers/image's `transport:reference`), e.g.
 * `registry-layout:/var/lib/registry`, `oci:./out`, `registry:harbor.corp.local/mirror`.
 * One table: each kind says what its LOCATION is and how it opens as a source
 * and/or a destination. A new kind is a new transport folder plus one entry
 * here; every flag that names a place (`--from`, `--to`) reads it through
 * parseLocation. Transports are loaded when a kind is opened, so `--help` and
 * the commands that never open one stay fast.
 */

export type KindName = 'registry' | 'registry-layout' | 'skopeo-dir' | 'oci' | 'docker-archive' | 'bundle';

export interface Location {
  kind: KindName;
  /** As given after `KIND:`: a path (not yet resolved) or `HOST[:PORT][/PREFIX]`. */
  location: string;
}

/** What opening a place may need beyond its location. */
export interface OpenEnv {
  access: RegistryAccess;
  /** Write a file-system kind through this port (an SFTP session for `--ssh`) instead of the local disk. */
  fs?: FileSystemPort | undefined;
  /** registry-layout destinations: afterwards hold exactly what was copied. */
  prune?: boolean | undefined;
  /** docker-archive destinations: the one platform to take from multi-platform images. */
  platform?: Platform | undefined;
  /** Local file targets: who owns what is written (default: the target root's owner, when running as root). */
  owner?: Owner | undefined;
  /** Things that do not fail the run but need a person's attention (a damaged file replaced, a registry to restart). */
  warn?: ((message: string) => void) | undefined;
}

/** A destination opened for a copy, with how its names are mapped and how to show it. */
export interface OpenedDestination {
  destination: ImageDestination;
  /** Put in front of every target repository (`registry:HOST/PREFIX`). */
  prefix: string;
  /** For receipts and messages: an absolute path, `host:path` over SSH, or `HOST/PREFIX`. */
  display: string;
  /** Set for registry destinations: the connection their preflight (Harbor, tags) uses. */
  registry?: RegistryOptions;
  /**
   * Images keep their whole name, registry included (`quay.io/calico/node`):
   * where the name is all a loader shows (docker-archive), dropping the host
   * would make `docker load` call it `docker.io/calico/node`.
   */
  fullNames?: boolean;
  /** registry-layout with prune: what the last commit removed. */
  pruned?: () => PruneReport | undefined;
}

interface Kind {
  name: KindName;
  /** What LOCATION is, for messages and help. */
  location: string;
  /** `KIND:LOCATION` as a user would write it, for hints. */
  example: string;
  /** LOCATION is a path on this machine (checked for room and writability before the first byte). */
  path: boolean;
  source?: (location: string, env: OpenEnv) => Promise<ImageSource>;
  destination?: (location: string, env: OpenEnv) => Promise<OpenedDestination>;
}

const KINDS: readonly Kind[] = [
  {
    name: 'registry', location: 'HOST[:PORT][/PREFIX]', example: 'registry:harbor.corp.local/mirror', path: false,
    async destination(location, env) {
      const { host, prefix } = registryLocation(location);
      const registry = connectionFor(env.access, host);
      const { openRegistryDestination } = await import('../transports/registry/open.js');
      return { destination: openRegistryDestination(registry), prefix, display: location, registry };
    },
  },
  {
    name: 'registry-layout', location: 'DIR', example: 'registry-layout:/var/lib/registry', path: true,
    async source(location) {
      const { openStorageLayoutSource } = await import('../transports/storage/index.js');
      await refuseBelowLayoutRoot(resolve(location), '--from registry-layout:');
      return openStorageLayoutSource(resolve(location));
    },
    async destination(location, env) {
      const { openStorageLayout } = await import('../transports/storage/index.js');
      const warn = env.warn ? { warn: env.warn } : {};
      if (env.fs) {
        // A remote path is the remote host's business: relative means relative to the login directory there.
        const layout = openStorageLayout(location, { prune: env.prune === true, fs: env.fs, ...warn });
        return { destination: layout, pruned: () => layout.lastPrune, prefix: '', display: `${env.fs.description.replace(/^sftp /, '')}:${posix.normalize(location)}` };
      }
      const path = resolve(location);
      await refuseBelowLayoutRoot(path, '--to registry-layout:');
      const layout = openStorageLayout(path, { prune: env.prune === true, ...local(env), ...warn });
      return { destination: layout, pruned: () => layout.lastPrune, prefix: '', display: path };
    },
  },
  {
    name: 'skopeo-dir', location: 'DIR', example: 'skopeo-dir:./images', path: true,
    async source(location) {
      const { openSkopeoDirSource } = await import('../transports/dir/index.js');
      return openSkopeoDirSource(resolve(location));
    },
    async destination(location, env) {
      const { openSkopeoDir } = await import('../transports/dir/index.js');
      const path = resolve(location);
      return { destination: openSkopeoDir(path, local(env)), prefix: '', display: path };
    },
  },
  {
    name: 'oci', location: 'DIR', example: 'oci:./out', path: true,
    async source(location) {
      const { openOciLayoutSource } = await import('../transports/oci-layout/index.js');
      return openOciLayoutSource(resolve(location));
    },
    async destination(location, env) {
      const { openOciLayout } = await import('../transports/oci-layout/index.js');
      const path = resolve(location);
      return { destination: openOciLayout(path, local(env)), prefix: '', display: path };
    },
  },
  {
    name: 'docker-archive', location: 'FILE', example: 'docker-archive:./images.tar', path: true,
    async destination(location, env) {
      const { openDockerArchive } = await import('../transports/docker-archive/index.js');
      const path = resolve(location);
      return { destination: openDockerArchive(path, { ...local(env), ...(env.platform ? { platform: env.platform } : {}) }), prefix: '', display: path, fullNames: true };
    },
  },
  {
    name: 'bundle', location: 'FILE', example: 'bundle:./release.tar', path: true,
    async source(location) {
      // A split bundle comes as its .sha256 list or its volumes' set; joined here into one source.
      const { openBundle } = await import('../transports/bundle/input.js');
      return openBundle([location]);
    },
  },
];

/** The options every local file destination takes. */
function local(env: OpenEnv): { owner?: Owner; warn?: (message: string) => void } {
  return { ...(env.owner ? { owner: env.owner } : {}), ...(env.warn ? { warn: env.warn } : {}) };
}

/** Kinds `--from` can read, and kinds `import --to` can write. */
export const SOURCE_KINDS: readonly KindName[] = KINDS.filter((k) => k.source).map((k) => k.name);
export const DESTINATION_KINDS: readonly KindName[] = KINDS.filter((k) => k.destination).map((k) => k.name);

function kindNamed(name: string): Kind | undefined {
  return KINDS.find((k) => k.name === name);
}

export function isKind(name: string): name is KindName {
  return kindNamed(name) !== undefined;
}

/**
 * `KIND:LOCATION` → its parts. `docker://HOST/PREFIX` is accepted as skopeo
 * writes it. A bare `HOST[:PORT][/PREFIX]` is a registry where the flag allows
 * one (`push --to`); `registry:5000` is a host and port, not the kind.
 */
export function parseLocation(spec: string, flag: string, allowed: readonly KindName[], bareRegistry = false): Location {
  const help = `${flag} KIND:LOCATION with KIND one of ${allowed.join(', ')}`;
  const examples = allowed.map((k) => `${flag} ${kindNamed(k)!.example}`).join(', ');
  if (/^https?:\/\//i.test(spec) && allowed.includes('registry')) {
    throw new FerryError('E_USAGE', `${flag} ${JSON.stringify(spec.slice(0, 200))}: a registry is named without a scheme`, {
      hint: `write ${flag} ${spec.replace(/^https?:\/\//i, '').split('/')[0] || 'HOST'}/PREFIX (add --plain-http HOST for a registry without TLS)`, details: { flag, value: spec.slice(0, 200) },
    });
  }
  if (isKind(spec)) {
    throw new FerryError('E_USAGE', `${flag} ${spec}: the kind without its ${kindNamed(spec)!.location}`, { hint: `one word, kind and place: e.g. ${flag} ${kindNamed(spec)!.example}`, details: { flag, value: spec } });
  }
  if (spec.startsWith('docker://') && allowed.includes('registry')) return checked({ kind: 'registry', location: spec.slice('docker://'.length) }, flag, allowed);
  const colon = spec.indexOf(':');
  const kind = colon > 0 ? spec.slice(0, colon) : '';
  const rest = spec.slice(colon + 1);
  if (colon > 0 && isKind(kind) && !(kind === 'registry' && /^\d+(\/|$)/.test(rest))) return checked({ kind, location: rest }, flag, allowed);
  if (bareRegistry && allowed.includes('registry') && isValidRegistry(spec.split('/')[0]!)) return checked({ kind: 'registry', location: spec }, flag, allowed);
  // Kinds are lowercase, as containers/image writes its transports: `OCI:./out` says which one was meant.
  const lower = kind.toLowerCase();
  if (colon > 0 && lower !== kind && isKind(lower) && allowed.includes(lower)) {
    throw new FerryError('E_USAGE', `${flag} ${JSON.stringify(spec.slice(0, 200))}: kinds are written in lowercase`, { hint: `write ${flag} ${lower}:${rest.slice(0, 200)}`, details: { flag, value: spec.slice(0, 200) } });
  }
  throw new FerryError('E_USAGE', `${flag} ${JSON.stringify(spec.slice(0, 200))}: expected ${help}`, { hint: `e.g. ${withKinds(spec, flag, allowed) ?? examples}`, details: { flag, value: spec.slice(0, 200) } });
}

/**
 * A path given without its kind (`--from ./b.tar`, `--to /srv/oci`): the kinds that could
 * take it, written with this very path, a file name's kinds first. Undefined for a word that
 * looks like no path (`nosuch:x`), where the kinds' own examples say more.
 */
function withKinds(spec: string, flag: string, allowed: readonly KindName[]): string | undefined {
  const word = spec.slice(0, 200);
  if (word.trim() === '') return undefined;
  const looksFile = /\.(tar|zst|sha256|gz)$/i.test(word);
  // `harbor.corp.local/mirror`, `10.0.0.5:5000` are hosts before they are relative paths.
  const host = word.split('/')[0]!;
  const looksHost = !looksFile && allowed.includes('registry') && /[.:]|^localhost$/.test(host) && !host.startsWith('.') && isValidRegistry(host);
  if (looksHost && host.includes(':')) return `${flag} registry:${word}`;
  if (!/^(\.{0,2}\/|\/)|^[^:]*$/.test(word)) return undefined;
  const kinds = allowed.filter((k) => (k === 'registry' ? looksHost : kindNamed(k)!.path && (looksFile ? kindNamed(k)!.location === 'FILE' : kindNamed(k)!.location === 'DIR')));
  // Quoted, `~` reaches here unexpanded, and is refused after a colon: the suggestion says $HOME.
  const shown = word.replace(/^~(?=\/|$)/, '$HOME');
  return kinds.length === 0 ? undefined : kinds.map((k) => `${flag} ${k}:${shown}`).join(', ');
}

/** A kind this flag cannot take: what the user meant is known from the kind, so say how that is done. */
function howInstead(loc: Location, flag: string, allowed: readonly KindName[]): string | undefined {
  const kind = kindNamed(loc.kind)!;
  const where = loc.location.slice(0, 200);
  if (loc.kind === 'registry' && flag === '--from') return `images in a registry are named as arguments: ferry export ${where || 'HOST'}/REPO:TAG …`;
  if (loc.kind === 'docker-archive' && !kind.source && allowed.some((k) => kindNamed(k)!.source)) {
    return `ferry does not read docker archives: skopeo copy docker-archive:FILE oci:DIR:NAME:TAG, then ${flag} oci:DIR`;
  }
  if (loc.kind === 'bundle' && !kind.destination && allowed.some((k) => kindNamed(k)!.destination)) return 'a bundle is what ferry export -o writes';
  if (kind.destination && allowed.length === 1 && allowed[0] === 'registry') return `ferry import B --to ${loc.kind}:${where} writes that place`;
  return undefined;
}

/** The old two-word form `--to KIND TARGET`, read into the same Location. */
export function locationOf(kind: string, target: string, flag: string, allowed: readonly KindName[]): Location {
  if (!isKind(kind) || !allowed.includes(kind)) {
    throw new FerryError('E_USAGE', `${flag} ${kind}: unknown target kind`, { hint: `use one of ${allowed.join(', ')}`, details: { flag, value: kind } });
  }
  // `--to registry docker://HOST/P` as skopeo writes it (was: "docker:" is not a registry host); a URL gets its own hint.
  if (kind === 'registry' && /^(docker|https?):\/\//i.test(target)) return parseLocation(target, flag, ['registry'], true);
  return checked({ kind, location: target }, flag, allowed);
}

function checked(loc: Location, flag: string, allowed: readonly KindName[]): Location {
  const kind = kindNamed(loc.kind)!;
  if (!allowed.includes(loc.kind)) {
    const value = `${loc.kind}:${loc.location.slice(0, 200)}`;
    const how = howInstead(loc, flag, allowed);
    throw new FerryError('E_USAGE', `${flag} ${JSON.stringify(value)}: ${loc.kind} cannot be used here`, { hint: `use one of ${allowed.join(', ')}${how ? `; ${how}` : ''}`, details: { flag, value } });
  }
  // An empty path would resolve to the working directory and quietly read or write there.
  if (loc.location.trim() === '') throw new FerryError('E_USAGE', `${flag} ${loc.kind}: the ${kind.location} is empty`, { hint: `name it: ${flag} ${loc.kind}:${kind.location}`, details: { flag, value: `${loc.kind}:${loc.location}` } });
  if (kind.path) refuseTilde(loc.location, `${flag} ${loc.kind}:${loc.location}`);
  // `--to oci docker://h/x` made the folders docker:/h/x here, exit 0: a URL is no path.
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(loc.location);
  if (kind.path && scheme) {
    const value = `${loc.kind}:${loc.location.slice(0, 200)}`;
    throw new FerryError('E_USAGE', `${flag} ${JSON.stringify(value)}: ${scheme[1]}://… is a URL, and ${loc.kind} takes a ${kind.location} on this machine`, {
      hint: `${allowed.includes('registry') && /^(docker|https?)$/i.test(scheme[1]!) ? `a registry is written ${flag} registry:${loc.location.slice(scheme[0].length, 200)}; ` : ''}a ${kind.location === 'DIR' ? 'folder' : 'file'} of that name is written ${flag} ${loc.kind}:./${loc.location.slice(0, 200)}`,
      details: { flag, value },
    });
  }
  if (kind.path && kind.location === 'FILE') refuseFolderName(loc, flag, kind.source === undefined);
  if (loc.kind === 'registry') registryLocation(loc.location, flag);
  return loc;
}

/** `HOST[:PORT][/PREFIX]` → host and validated prefix. */
export function registryLocation(location: string, flag = '--to'): { host: string; prefix: string } {
  const slash = location.indexOf('/');
  const host = slash < 0 ? location : location.slice(0, slash);
  const prefix = slash < 0 ? '' : location.slice(slash + 1).replace(/\/+$/, '');
  if (!isValidRegistry(host)) throw new FerryError('E_USAGE', `${flag} ${location}: "${host}" is not a registry host[:port]`, { hint: 'e.g. harbor.corp.local or 10.0.0.5:5000/mirror' });
  if (prefix) validateRepository(prefix, `${flag} ${location}`);
  return { host, prefix };
}

/** The kind a word names with its `KIND:` prefix, if it has one (`oci:./x` → oci). */
export function kindPrefix(word: string): KindName | undefined {
  const colon = word.indexOf(':');
  const kind = colon > 0 ? word.slice(0, colon) : '';
  return isKind(kind) ? kind : undefined;
}

/**
 * A bundle named where a command reads bundles (its file arguments, --base,
 * inventory --bundle): a path, or `bundle:PATH` as --from writes it. Another
 * kind is a place, not a bundle, and says how to bundle it. A file whose name
 * starts like a kind is written `./oci:name`.
 */
export function bundlePath(word: string, what: string, writes: readonly KindName[] = []): string {
  const kind = word.startsWith('docker://') ? 'registry' : kindPrefix(word);
  if (kind !== undefined && kind !== 'bundle') {
    // Where the command writes that kind (`ferry import b.tar oci:out`), the place is most likely its target with --to left out.
    const how = writes.includes(kind) ? `the place to write goes after --to: ferry ${what} B.tar --to ${word.slice(0, 200)}`
      : kind === 'registry' ? 'bundle its images first: ferry export IMAGE… -o B.tar' : SOURCE_KINDS.includes(kind) ? `bundle it first: ferry export --from ${word.slice(0, 200)} -o B.tar` : 'give the bundle file';
    throw new FerryError('E_USAGE', `${what} ${JSON.stringify(word.slice(0, 200))}: names ${kind === 'registry' ? 'a registry' : `a place of kind ${kind}`}, and this takes a bundle file`, {
      hint: `${how}; a file whose name starts like that is written ./${word.slice(0, 200)}`,
      details: { value: word.slice(0, 200) },
    });
  }
  const file = pathOfKind(word, what, 'bundle');
  // `verify b.tar/` failed to open with ENOTDIR as an I/O error (exit 10, "check permissions"): a name ending in / is a folder's.
  if (file.endsWith('/')) {
    const bare = file.replace(/\/+$/, '');
    throw new FerryError('E_USAGE', `${what} ${JSON.stringify(word.slice(0, 200))}: ends in "/", which names a folder, and this takes a bundle file`, {
      hint: bare === '' ? 'name the bundle file' : `write ${bare.slice(0, 200)} if that is the bundle, or name the bundle file (or a split bundle's .sha256 list) in that folder`, details: { value: word.slice(0, 200) },
    });
  }
  return file;
}

/** Where a flag names one kind of place (`--layout`, a bundle argument): a path, or the same path as `KIND:PATH`. */
export function pathOfKind(word: string, flag: string, kind: KindName): string {
  return kindPrefix(word) === undefined ? word : parseLocation(word, flag, [kind]).location;
}

/**
 * A FILE kind written `docker-archive:out/` wrote a file named `out`, exit 0; `docker-archive:-`
 * wrote a file named `-` where `-` means stdin or stdout elsewhere (and the two-word form refused it).
 * A bundle read from `bundle:-` is stdin, as a bundle argument `-` is.
 */
function refuseFolderName(loc: Location, flag: string, written: boolean): void {
  const shown = `${flag} ${loc.kind}:${loc.location.slice(0, 200)}`;
  if (loc.location.endsWith('/')) {
    throw new FerryError('E_USAGE', `${shown} names a folder: ${loc.kind} is one file`, {
      hint: `give the file in that folder, e.g. ${flag} ${loc.kind}:${loc.location.slice(0, 200)}${posix.basename(kindNamed(loc.kind)!.example)}`, details: { flag, value: `${loc.kind}:${loc.location.slice(0, 200)}` },
    });
  }
  if (written && loc.location === '-') {
    throw new FerryError('E_USAGE', `${shown}: "-" is not stdin or stdout here, and would be a file named "-"`, {
      hint: `name the file (${flag} ${loc.kind}:./images.tar), or write ${flag} ${loc.kind}:./- for a file named "-"`, details: { flag, value: `${loc.kind}:-` },
    });
  }
}

/**
 * `oci:~/x`, `oci:~ops/x`: no shell expands `~` after a colon, so it would name a folder `~`
 * (or `~ops`) here, beside the real home.
 */
function refuseTilde(path: string, shown: string): void {
  const user = /^~([a-z_][a-z0-9_.-]*\$?)?(\/|$)/i.exec(path);
  if (user?.[1] !== undefined) {
    throw new FerryError('E_USAGE', `${shown}: "~${user[1]}" is not expanded here (the shell expands it only at the start of a word), and would be a folder named "~${user[1]}"`, {
      hint: `write that user's home folder as an absolute path: e.g. ${shown.slice(0, shown.length - path.length)}/home/${user[1]}${path.slice(user[0].length - user[2]!.length)}`, details: { value: shown },
    });
  }
  if (path === '~' || path.startsWith('~/')) {
    throw new FerryError('E_USAGE', `${shown}: "~" is not expanded here (the shell expands it only at the start of a word), and would be a folder named "~"`, {
      hint: `write $HOME instead of ~ (the shell expands $HOME anywhere): ${shown.split(' ').pop()!.replace('~', '$HOME')}`, details: { value: shown },
    });
  }
}

/** Whether LOCATION of this kind is a path on this machine. */
export function isPathKind(kind: KindName): boolean {
  return kindNamed(kind)!.path;
}

export async function openSourceAt(loc: Location, env: OpenEnv, signal?: AbortSignal): Promise<ImageSource> {
  signal?.throwIfAborted();
  const kind = kindNamed(loc.kind)!;
  if (!kind.source) throw new FerryError('E_USAGE', `${loc.kind} cannot be read from`, { hint: `read from one of ${SOURCE_KINDS.join(', ')}` });
  return kind.source(loc.location, env);
}

export async function openDestinationAt(loc: Location, env: OpenEnv): Promise<OpenedDestination> {
  const kind = kindNamed(loc.kind)!;
  if (!kind.destination) throw new FerryError('E_USAGE', `${loc.kind} cannot be written to`, { hint: `write to one of ${DESTINATION_KINDS.join(', ')}` });
  return kind.destination(loc.location, env);
}

/**
 * A registry-layout path one to three folders inside a registry's storage
 * (`/var/lib/registry/docker/registry/v2`) instead of its rootdirectory: an
 * import there made docker/registry/v2/docker/registry/v2, which the registry
 * never reads, and exited 0; an inventory read it as an empty site.
 * Refused, naming the rootdirectory. A folder holding docker/registry/v2 is a
 * root whatever else it holds.
 */
export async function refuseBelowLayoutRoot(path: string, flag: string): Promise<void> {
  const isDir = (p: string): Promise<boolean> => stat(p).then((s) => s.isDirectory(), () => false);
  if (await isDir(join(path, 'docker', 'registry', 'v2'))) return;
  const root = (await isDir(join(path, 'repositories'))) && (await isDir(join(path, 'blobs'))) ? resolve(path, '..', '..', '..')
    : (await isDir(join(path, 'registry', 'v2'))) ? resolve(path, '..')
      : (await isDir(join(path, 'v2', 'repositories'))) || (await isDir(join(path, 'v2', 'blobs'))) ? resolve(path, '..', '..') : undefined;
  if (root === undefined) return;
  throw new FerryError('E_USAGE', `${flag}${path} is inside a registry's storage, not its rootdirectory`, {
    hint: `give the folder holding docker/registry/v2: ${flag}${root}`, details: { path, root },
  });
}
