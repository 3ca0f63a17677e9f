// Starts a long-running peer (containerd, dockerd) with its output in a log file,
// waits until it answers, and stops it: SIGTERM, then SIGKILL if it lingers. A
// worker that dies before its afterAll still kills its daemons on exit.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export interface Daemon {
  child: ChildProcess;
  logFile: string;
  logTail(lines?: number): string;
  /** SIGTERM, SIGKILL after `graceMs`; resolves once the process has exited. Safe to call twice. */
  stop(graceMs?: number): Promise<void>;
}

export function tailFile(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function killAndWait(child: ChildProcess, graceMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await done;
  clearTimeout(timer);
}

/**
 * Spawns `bin args` and polls `ready()` until it says true, the process exits, or
 * `deadlineMs` passes (then the process is killed and the log tail thrown).
 */
export async function startDaemon(name: string, bin: string, args: string[], opts: {
  logFile: string;
  ready: () => Promise<boolean>;
  env?: Record<string, string>;
  deadlineMs?: number;
}): Promise<Daemon> {
  const fd = openSync(opts.logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', fd, fd], env: { ...process.env, ...(opts.env ?? {}) } });
  closeSync(fd);
  live.add(child);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    live.delete(child);
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  child.once('error', (err) => {
    exited = `failed to start: ${err.message}`;
  });
  const daemon: Daemon = {
    child,
    logFile: opts.logFile,
    logTail: (lines) => tailFile(opts.logFile, lines),
    stop: (graceMs = 10_000) => killAndWait(child, graceMs),
  };
  const deadline = Date.now() + (opts.deadlineMs ?? 30_000);
  while (Date.now() < deadline && exited === undefined) {
    if (await opts.ready()) return daemon;
    await new Promise((r) => setTimeout(r, 100));
  }
  if (exited === undefined) {
    await daemon.stop(2000);
    exited = `did not become ready within ${opts.deadlineMs ?? 30_000} ms`;
  }
  throw new Error(`${name} ${exited}\n--- ${opts.logFile} (tail) ---\n${tailFile(opts.logFile)}`);
}

/**
 * Mount points at or below `dir`, deepest first. dockerd makes its data root a mount
 * point, containerd's native snapshotter bind-mounts while it unpacks: a daemon that had
 * to be killed can leave them, and a directory with a mount below cannot be removed.
 */
export function mountsUnder(dir: string): string[] {
  // mountinfo field 5 is the mount point, with spaces and other bytes as octal escapes.
  const points = readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4])
    .filter((p): p is string => p !== undefined).map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))));
  return points.filter((p) => p === dir || p.startsWith(`${dir}/`)).sort((a, b) => b.length - a.length);
}

/** Lazily unmounts everything at or below `dir` (synchronous: also used from exit hooks). */
export function unmountUnder(dir: string): void {
  for (const m of mountsUnder(dir)) execFileSync('umount', ['--lazy', m], { stdio: 'ignore' });
}
