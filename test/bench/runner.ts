// Runs one whole process under GNU time and reports what it cost: wall, user and
// system CPU, peak RSS (GNU time's %M covers the process tree's largest member) and
// bytes written to storage (%O: the kernel's write_bytes of the process and its waited-for
// children, in 512-byte units — what /proc/<pid>/io reports, counted when pages are dirtied).
// The same measurement applies to ferry and to skopeo, so neither side is favoured.
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const TIME_BIN = '/usr/bin/time';

export interface Measured {
  wallS: number;
  userS: number;
  sysS: number;
  /** user + sys */
  cpuS: number;
  /** Peak resident set size, bytes. */
  peakRssBytes: number;
  /** Bytes the process tree caused to be written to storage (temp files and deleted files included). */
  writtenBytes: number;
}

export interface RunOutcome extends Measured {
  code: number;
  stdout: string;
  stderr: string;
  /** Killed at `timeoutMs`: wall is the cap, the other figures are unknown (NaN). */
  timedOut?: boolean;
}

export interface RunOptions {
  cwd?: string;
  env?: Record<string, string>;
  input?: string;
  timeoutMs?: number;
  /**
   * Files or folders the run reads: read whole just before it, so the run starts with
   * them in the page cache. This machine's reclaim daemon (DAMON) evicts idle pages
   * within minutes, so without it whether a tool reads from memory or from disk
   * depends on what ran before it (measured: import 1.0-1.3 s warm, 1.5-2.1 s cold).
   */
  warm?: string[];
}

const TIME_FORMAT = '%e %U %S %M %O';

/** Parses GNU time's `-f '%e %U %S %M %O'` output; a failed child adds a "Command exited…" line first. */
export function parseTimeOutput(text: string): Measured {
  const line = text.trim().split('\n').filter((l) => /^[\d.]+ [\d.]+ [\d.]+ \d+ \d+$/.test(l.trim())).pop();
  if (line === undefined) throw new Error(`could not parse GNU time output: ${JSON.stringify(text.slice(-300))}`);
  const [e, u, s, m, o] = line.trim().split(' ').map(Number) as [number, number, number, number, number];
  return { wallS: e, userS: u, sysS: s, cpuS: u + s, peakRssBytes: m * 1024, writtenBytes: o * 512 };
}

/** Process groups of timed runs still going: killed if the benchmark itself ends first. */
const groups = new Set<number>();
process.on('exit', () => {
  for (const pid of groups) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
});

export function checkTimeAvailable(): void {
  if (!existsSync(TIME_BIN)) {
    throw new Error(`${TIME_BIN} not found: the benchmark measures CPU and peak RSS with GNU time. Run \`node scripts/ensure-peers.mjs\` as root, or \`apt-get install time\``);
  }
}

/** GNU time's output folders not yet removed: an interrupted run removes them on its way out. */
const timeDirs = new Set<string>();
process.once('exit', () => {
  for (const d of timeDirs) rmSync(d, { recursive: true, force: true });
});

/**
 * Spawns `cmd args` under GNU time; never throws on a non-zero exit (the caller decides).
 * The run gets its own process group, so a timeout kills the command, not just `time`.
 */
export function timed(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunOutcome> {
  // Every run starts with no dirty pages left by the one before it: a tool that fsyncs
  // (ferry does; docker-registry does not) must not pay, inside its own timing, for the
  // writeback of gigabytes another tool wrote just before (measured: import 0.8-1.8 s with
  // nothing pending, 2.8-3.2 s right after the export runs).
  for (const p of opts.warm ?? []) warm(p);
  execFileSync('sync');
  const dir = mkdtempSync(join(tmpdir(), 'ferry-bench-time-'));
  timeDirs.add(dir);
  const outFile = join(dir, 'time.txt');
  const started = performance.now();
  return new Promise<RunOutcome>((resolve, reject) => {
    const child = spawn(TIME_BIN, ['-f', TIME_FORMAT, '-o', outFile, cmd, ...args], {
      cwd: opts.cwd,
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
    });
    if (child.pid !== undefined) groups.add(child.pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    }, opts.timeoutMs ?? 3_600_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      rmSync(dir, { recursive: true, force: true });
      timeDirs.delete(dir);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (child.pid !== undefined) groups.delete(child.pid);
      if (timedOut) {
        rmSync(dir, { recursive: true, force: true });
        const wallS = (performance.now() - started) / 1000;
        resolve({ wallS, userS: NaN, sysS: NaN, cpuS: NaN, peakRssBytes: NaN, writtenBytes: NaN, code: 137, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8'), timedOut: true });
        return;
      }
      try {
        const m = parseTimeOutput(readFileSync(outFile, 'utf8'));
        resolve({ ...m, code: code ?? (signal !== null ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
      } catch (e) {
        reject(new Error(`${cmd} ${args.join(' ')}: ${(e as Error).message}\nstderr: ${Buffer.concat(err).toString('utf8').slice(-2000)}`));
      } finally {
        rmSync(dir, { recursive: true, force: true });
        timeDirs.delete(dir);
      }
    });
    child.stdin.end(opts.input);
  });
}

const WARM_BUF = Buffer.allocUnsafe(4 << 20);

/** Reads a file, or every file under a folder, into the page cache. */
function warm(path: string): void {
  if (statSync(path).isDirectory()) {
    for (const e of readdirSync(path)) warm(join(path, e));
    return;
  }
  const fd = openSync(path, 'r');
  try {
    while (readSync(fd, WARM_BUF, 0, WARM_BUF.length, null) > 0);
  } finally {
    closeSync(fd);
  }
}

/** Like timed() but throws with the tail of stderr unless the process exited 0. */
export async function timedOk(cmd: string, args: string[], opts: RunOptions = {}): Promise<RunOutcome> {
  const r = await timed(cmd, args, opts);
  if (r.timedOut) throw new Error(`${cmd} ${args.join(' ')}: did not finish within ${((opts.timeoutMs ?? 0) / 1000).toFixed(0)} s`);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${r.stderr.slice(-3000)}${r.stdout.slice(-1000)}`);
  return r;
}

/** Several processes run one after another, reported as one run: times add up, peak RSS is the largest. */
export function sumRuns(runs: Measured[]): Measured {
  return runs.reduce<Measured>(
    (a, r) => ({ wallS: a.wallS + r.wallS, userS: a.userS + r.userS, sysS: a.sysS + r.sysS, cpuS: a.cpuS + r.cpuS, peakRssBytes: Math.max(a.peakRssBytes, r.peakRssBytes), writtenBytes: a.writtenBytes + r.writtenBytes }),
    { wallS: 0, userS: 0, sysS: 0, cpuS: 0, peakRssBytes: 0, writtenBytes: 0 },
  );
}
