import { homedir } from 'node:os';
import { join } from 'node:path';
import { FerryError } from '../errors.js';
import { describeSize, type ParsedSize, parseSize, SIZE_SYNTAX } from '../size.js';

/** The blob cache: FERRY_CACHE, else the XDG cache dir, else ~/.cache/ferry. Reruns and later releases reuse it. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FERRY_CACHE) return env.FERRY_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'ferry');
}

/**
 * The cache cap when neither --cache-max nor FERRY_CACHE_MAX is given. Large
 * enough for a whole release of a typical platform (a few GiB to low tens of
 * GiB of layers), so a rerun and the next release's export still hit the cache;
 * small enough not to fill a laptop's or a build host's disk unnoticed, which an
 * unbounded cache does one release at a time.
 */
export const DEFAULT_CACHE_MAX_SIZE: ParsedSize = parseSize('20GiB', 'the default cache cap');
export const DEFAULT_CACHE_MAX = DEFAULT_CACHE_MAX_SIZE.bytes;

/** Where the cap came from and how its text was read, for the info line and the --json result. */
export interface CacheMaxSetting {
  /** undefined: no cap (`0` or `unlimited`). */
  bytes: number | undefined;
  from: '--cache-max' | 'FERRY_CACHE_MAX' | 'default';
  /** How the size was read (absent for `0` or `unlimited`). */
  size?: ParsedSize;
  /** The text given, as typed (absent for the default). */
  given?: string;
}

/**
 * `--cache-max SIZE`, else FERRY_CACHE_MAX, else DEFAULT_CACHE_MAX; `0` or
 * `unlimited` for no cap. Sizes read as --split's do (src/size.ts: MB decimal, MiB/M binary).
 */
export function cacheMaxSetting(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): CacheMaxSetting {
  if (flag !== undefined) return parseCacheMax(flag, '--cache-max', 'E_USAGE');
  const raw = env.FERRY_CACHE_MAX;
  if (raw !== undefined && raw !== '') return parseCacheMax(raw, 'FERRY_CACHE_MAX', 'E_CONFIG');
  return { bytes: DEFAULT_CACHE_MAX, from: 'default', size: DEFAULT_CACHE_MAX_SIZE };
}

/** The cap in bytes; undefined for no cap. */
export function cacheMaxBytes(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): number | undefined {
  return cacheMaxSetting(flag, env).bytes;
}

function parseCacheMax(text: string, from: '--cache-max' | 'FERRY_CACHE_MAX', code: 'E_USAGE' | 'E_CONFIG'): CacheMaxSetting {
  const t = text.trim().toLowerCase();
  // parseSize refuses 0 (a zero-byte volume is an error); here it is the way to say "no cap".
  if (t === 'unlimited' || /^0+(?:\.0*)?\s*(?:[kmgt]i?)?b?$/.test(t)) return { bytes: undefined, from, given: text.trim() };
  try {
    const size = parseSize(text, from, code);
    return { bytes: size.bytes, from, size, given: size.given };
  } catch {
    const shown = from === '--cache-max' ? `--cache-max ${JSON.stringify(text.slice(0, 40))}` : `FERRY_CACHE_MAX=${JSON.stringify(text.slice(0, 40))}`;
    throw new FerryError(code, `${shown} is not a size`, {
      hint: `give ${SIZE_SYNTAX}, e.g. --cache-max 50GB; 0 or unlimited for no cap`,
    });
  }
}

/** `--cache-max 50GB = 50,000,000,000 bytes (decimal GB)`, or undefined when nothing was given. */
export function describeCacheMax(s: CacheMaxSetting): string | undefined {
  if (s.from === 'default') return undefined;
  return s.size ? describeSize(s.from, s.size) : `${s.from} ${s.given ?? ''} = no cap`;
}
