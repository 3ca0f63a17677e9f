import { createHash, randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';

/**
 * Names of the temp files and directories ferry writes beside its outputs.
 * Each carries its writer — pid and a tag of the host name — so a later run
 * can tell a killed run's leftovers (remove them) from a live run's (leave
 * them), also on a share several hosts write to (stale-temps.ts).
 *
 *   .ferry-tmp-<final name>.<pid>-<host tag>.<random>
 */

export const TEMP_MARKER = '.ferry-tmp-';

/** 8 hex characters of the host name's sha256: a pid means something only on its own host. */
export const HOST_TAG = createHash('sha256').update(hostname()).digest('hex').slice(0, 8);

export function tempNameFor(finalName: string): string {
  return `${TEMP_MARKER}${finalName}.${process.pid}-${HOST_TAG}.${randomBytes(4).toString('hex')}`;
}

export function tempPathFor(path: string): string {
  return join(dirname(path), tempNameFor(basename(path)));
}

export function isTempName(name: string): boolean {
  return name.startsWith(TEMP_MARKER) || LEGACY_STAGING.test(name);
}

export interface TempOwner {
  pid: number;
  /** Undefined for names older ferry versions wrote (no host tag): taken as this host's. */
  host: string | undefined;
}

const CURRENT = /\.(\d+)-([0-9a-f]{8})\.[0-9a-f]{8}$/;
/** Earlier versions: `.ferry-tmp-<name>.<pid>.<random>` (files), `.ferry-tmp-<name>-<pid>-<random>` (docker-archive spools). */
const LEGACY = /[.-](\d+)[.-][0-9a-f]{8}$/;
/** Earlier versions' skopeo-dir staging directories. */
const LEGACY_STAGING = /^\.ferry-staging-(\d+)-[0-9a-f]{8}$/;

/** Who wrote a temp entry; undefined when the name does not say (only its age can tell then). */
export function tempOwner(name: string): TempOwner | undefined {
  if (!isTempName(name)) return undefined;
  const m = CURRENT.exec(name);
  if (m) return { pid: Number(m[1]), host: m[2] };
  const legacy = LEGACY.exec(name) ?? LEGACY_STAGING.exec(name);
  return legacy ? { pid: Number(legacy[1]), host: undefined } : undefined;
}
