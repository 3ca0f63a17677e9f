// Peak memory of one ferry run: the CLI as a child under GNU time, for the memory ceilings the brief sets.
import { spawn, spawnSync } from 'node:child_process';
import { FERRY_BIN } from './cli.js';

const TIME = '/usr/bin/time';

/** The memory budget of any ferry command (README: bounded memory). */
export const RSS_BUDGET_KIB = 200 * 1024;

/** Fails (never skips) when GNU time is not installed: the ceilings cannot be measured without it. */
export function requireGnuTime(): void {
  if (spawnSync(TIME, ['-f', '%M', 'true']).status !== 0) throw new Error(`${TIME} is missing: npm test installs the Debian package "time" (or: apt-get install time)`);
}

/**
 * Peak RSS in KiB of `ferry ARGS`, which must succeed. Awaited, not spawnSync: a worker
 * blocked past 60 s (a 256 MiB layer on a loaded machine) cannot read vitest's replies,
 * whose fixed 60 s timeout then fails the run with "Timeout calling onTaskUpdate".
 */
export async function peakRssKiB(args: string[]): Promise<number> {
  const child = spawn(TIME, ['-f', 'PEAK_RSS_KIB=%M', process.execPath, FERRY_BIN, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (c: string) => { stderr = (stderr + c).slice(-16 * 1024); });
  const status = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => resolve(code));
  });
  if (status !== 0) throw new Error(`ferry ${args.join(' ')} exited ${status}: ${stderr.slice(-2000)}`);
  const m = /PEAK_RSS_KIB=(\d+)/.exec(stderr);
  if (!m) throw new Error(`no peak RSS in: ${stderr.slice(-500)} (install the Debian package "time")`);
  return Number(m[1]);
}
