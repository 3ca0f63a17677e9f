import { homedir } from 'node:os';
import { join } from 'node:path';
import { FerryError } from '../errors.js';
import { parseSize } from '../transports/bundle/volumes.js';

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
export const DEFAULT_CACHE_MAX = 20 * 1024 ** 3;

/**
 * `--cache-max SIZE`, else FERRY_CACHE_MAX, else DEFAULT_CACHE_MAX, in bytes;
 * undefined for no cap (`0` or `unlimited`). Sizes read as --split's do.
 */
export function cacheMaxBytes(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): number | undefined {
  if (flag !== undefined) return parseCacheMax(flag, `--cache-max ${JSON.stringify(flag.slice(0, 40))}`, 'E_USAGE');
  const raw = env.FERRY_CACHE_MAX;
  if (raw !== undefined && raw !== '') return parseCacheMax(raw, `FERRY_CACHE_MAX=${JSON.stringify(raw.slice(0, 40))}`, 'E_CONFIG');
  return DEFAULT_CACHE_MAX;
}

function parseCacheMax(text: string, shown: string, code: 'E_USAGE' | 'E_CONFIG'): number | undefined {
  const t = text.trim().toLowerCase();
  // parseSize refuses 0 (a zero-byte volume is an error); here it is the way to say "no cap".
  if (t === 'unlimited' || /^0+(?:\.0*)?\s*[kmgt]?(?:i?b)?$/.test(t)) return undefined;
  try {
    return parseSize(text);
  } catch {
    throw new FerryError(code, `${shown} is not a size`, {
      hint: 'give bytes or a number with K, M, G or T (binary: 20G = 20 GiB), e.g. --cache-max 50G; 0 or unlimited for no cap',
    });
  }
}
