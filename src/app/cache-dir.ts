import { homedir } from 'node:os';
import { join } from 'node:path';

/** The blob cache: FERRY_CACHE, else the XDG cache dir, else ~/.cache/ferry. Reruns and later releases reuse it. */
export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FERRY_CACHE) return env.FERRY_CACHE;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'ferry');
}
