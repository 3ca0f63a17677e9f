// Peak memory of one ferry run: the CLI as a child under GNU time, for the memory ceilings the brief sets.
import { spawnSync } from 'node:child_process';
import { FERRY_BIN } from './cli.js';

const TIME = '/usr/bin/time';

/** The memory budget of any ferry command (README: bounded memory). */
export const RSS_BUDGET_KIB = 200 * 1024;

/** Fails (never skips) when GNU time is not installed: the ceilings cannot be measured without it. */
export function requireGnuTime(): void {
  if (spawnSync(TIME, ['-f', '%M', 'true']).status !== 0) throw new Error(`${TIME} is missing: npm test installs the Debian package "time" (or: apt-get install time)`);
}

/** Peak RSS in KiB of `ferry ARGS`, which must succeed. */
export function peakRssKiB(args: string[]): number {
  const r = spawnSync(TIME, ['-f', 'PEAK_RSS_KIB=%M', process.execPath, FERRY_BIN, ...args], { encoding: 'utf8', maxBuffer: 16 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const m = /PEAK_RSS_KIB=(\d+)/.exec(r.stderr);
  if (!m) throw new Error(`no peak RSS in: ${r.stderr.slice(-500)} (install the Debian package "time")`);
  return Number(m[1]);
}
