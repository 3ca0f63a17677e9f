// Runs `ferry serve` as a child process (through runFerry, as every CLI test does):
// waits for its startup document on stdout, and stops it with a signal, returning
// its exit status and output. A child process because the tests measure its memory
// (/proc/PID/status), watch its open files, and signal it.
import { tmpdir } from 'node:os';
import type { ChildProcess } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { runFerry, type FerryResult, type FerryRunOptions } from './cli.js';

export interface ServeStarted {
  url: string;
  address: string;
  tls: boolean;
  auth: boolean;
  images: { origin: string; repository: string; tag?: string; digest: string; mediaType: string; reference: string }[];
  bundles?: { bundleId: string; role: string; files: { path: string; volume?: number; index: { how: string; file?: string; stale?: string } }[] }[];
  [k: string]: unknown;
}

export interface ServeHandle {
  /** `http://127.0.0.1:PORT` (or https). */
  url: string;
  /** `127.0.0.1:PORT`, for image references. */
  host: string;
  pid: number;
  started: ServeStarted;
  child: ChildProcess;
  /** stderr so far (the access log). */
  stderr(): string;
  /** Peak resident set size so far, bytes (VmHWM). */
  peakRss(): number;
  /** The files the process holds open (readlink of /proc/PID/fd/*), sockets and pipes left out. */
  openFiles(): string[];
  /** Signals it (SIGTERM by default) and resolves with how it ended. */
  stop(signal?: NodeJS.Signals): Promise<FerryResult>;
  /** Resolves when the process ends on its own. */
  exited: Promise<FerryResult>;
}

/**
 * `ferry serve ARGS --json` on a free loopback port (unless ARGS has --listen).
 * Rejects with the output when the process ends before listening.
 */
export async function startServe(args: string[], opts: FerryRunOptions = {}): Promise<ServeHandle> {
  let child!: ChildProcess;
  let out = '';
  let err = '';
  const listen = args.includes('--listen') ? [] : ['--listen', '127.0.0.1:0'];
  const exited = runFerry(['serve', ...args, ...listen, '--json'], {
    timeoutMs: 600_000, ...opts,
    onSpawn: (c) => {
      child = c;
      c.stdout!.on('data', (b: Buffer) => {
        out += b.toString('utf8');
      });
      c.stderr!.on('data', (b: Buffer) => {
        err += b.toString('utf8');
      });
    },
  });
  const started = await new Promise<ServeStarted>((resolve, reject) => {
    const poll = setInterval(() => {
      try {
        const doc = JSON.parse(out) as ServeStarted;
        clearInterval(poll);
        resolve(doc);
      } catch {
        // not complete yet
      }
    }, 20);
    exited.then((r) => {
      clearInterval(poll);
      reject(new Error(`ferry serve ${args.join(' ')} ended before listening (exit ${r.code}):\n${r.stderr}\n${r.stdout}`));
    }, (e: unknown) => {
      clearInterval(poll);
      reject(e instanceof Error ? e : new Error(String(e)));
    });
  });
  const pid = child.pid!;
  return {
    url: started.url, host: new URL(started.url).host, pid, started, child, exited,
    stderr: () => err,
    peakRss: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024,
    openFiles: () => readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    // Files, not devices (/dev/null, ptys); the run's temporary folder may itself be on /dev/shm.
    }).filter((l) => l.startsWith(`${tmpdir()}/`) || (l.startsWith('/') && !l.startsWith('/dev/'))).sort(),
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
