// umoci (Debian's 0.4.7), the OCI image-spec reference tool, as a reader of the OCI
// layouts ferry writes. It keeps no state of its own, so there is nothing to start:
// each call reads the layout given and nothing else.
import { requireProgram, runProgram, runProgramOk, type ProgramResult } from './run.js';

export const UMOCI_BIN = '/usr/bin/umoci';

export function umoci(args: string[]): Promise<ProgramResult> {
  requireProgram(UMOCI_BIN, 'umoci');
  return runProgram(UMOCI_BIN, args);
}

/** `umoci ls --layout DIR`: the tags (ref.name annotations) umoci finds, sorted. */
export async function umociTags(layout: string): Promise<string[]> {
  requireProgram(UMOCI_BIN, 'umoci');
  const r = await runProgramOk(UMOCI_BIN, ['ls', '--layout', layout]);
  return r.stdout.split('\n').map((l) => l.trim()).filter((l) => l !== '').sort();
}

/** `umoci stat --image DIR:TAG --json`: the history umoci reads through manifest and config (fails on a broken chain). */
export async function umociStat(layout: string, tag: string): Promise<{ history: unknown[] }> {
  requireProgram(UMOCI_BIN, 'umoci');
  const r = await runProgramOk(UMOCI_BIN, ['stat', '--image', `${layout}:${tag}`, '--json']);
  return JSON.parse(r.stdout) as { history: unknown[] };
}
