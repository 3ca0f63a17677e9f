// Runs the ferry CLI the way a user would. By default in this process, through
// the same main() that bin/ferry calls, with captured streams, the given
// environment and working directory (fast: no Node start-up per command).
// Stdin data goes to the invocation's stdin. A child process when the test needs
// one: signals, or `process: true` for exit codes and anything process-wide.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { PassThrough, Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { makeTempDir, type TempDir } from './tmp.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const FERRY_BIN = fileURLToPath(new URL('../../bin/ferry', import.meta.url));

export interface FerryRunOptions {
  input?: string | Buffer;
  env?: Record<string, string | undefined>;
  cwd?: string;
  timeoutMs?: number;
  /** Called with the child once spawned, e.g. to send SIGINT mid-run (implies a child process). */
  onSpawn?: (child: ChildProcess) => void;
  /** Run as a child process even without input or onSpawn. */
  process?: boolean;
}

export interface FerryResult {
  code: number;
  /** Set when the process was ended by a signal. */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/**
 * `XDG_STATE_HOME` of every ferry the tests run (unless a test sets its own):
 * receipts of imports without --receipt land in `<it>/ferry/receipts`, never
 * in the tester's home. One temp folder per test file, removed after the file
 * by test/support/per-file.ts (a worker runs many files and keeps this module
 * between them, so the hook cannot be registered here once).
 */
let stateHome: TempDir | undefined;

export async function removeTestStateHome(): Promise<void> {
  await stateHome?.cleanup();
  stateHome = undefined;
}

export function testStateHome(): string {
  stateHome ??= makeTempDir('ferry-state-');
  return stateHome.path;
}

export function runFerry(args: string[], opts: FerryRunOptions = {}): Promise<FerryResult> {
  if (opts.process || opts.onSpawn || process.env['FERRY_TEST_PROCESS'] === '1') return runFerryProcess(args, opts);
  return runFerryInProcess(args, opts);
}

/** One in-process run at a time: the environment and working directory are process-wide. */
let queue: Promise<unknown> = Promise.resolve();

export function runFerryInProcess(args: string[], opts: FerryRunOptions = {}): Promise<FerryResult> {
  const run = queue.then(() => inProcess(args, opts));
  queue = run.catch(() => undefined);
  return run;
}

async function inProcess(args: string[], opts: FerryRunOptions): Promise<FerryResult> {
  const { main } = await import('../../src/cli/main.js');
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  stdout.on('data', (c: Buffer) => out.push(c));
  stderr.on('data', (c: Buffer) => err.push(c));
  const stdin = Readable.from(opts.input === undefined ? [] : [typeof opts.input === 'string' ? Buffer.from(opts.input) : opts.input]);
  const saved = { ...process.env };
  const cwd = process.cwd();
  const overrides: Record<string, string | undefined> = { NO_COLOR: '1', XDG_STATE_HOME: testStateHome(), ...(opts.env ?? {}) };
  for (const [k, v] of Object.entries(overrides)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  process.chdir(opts.cwd ?? REPO_ROOT);
  const timeout = new AbortController();
  const timer = setTimeout(() => timeout.abort(new Error(`in-process ferry ${args.join(' ')} timed out`)), opts.timeoutMs ?? 110_000);
  try {
    const code = await main(args, { stdout, stderr, stdin }, { signal: timeout.signal });
    return { code, signal: null, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') };
  } finally {
    clearTimeout(timer);
    process.chdir(cwd);
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  }
}

export function runFerryProcess(args: string[], opts: FerryRunOptions = {}): Promise<FerryResult> {
  if (!existsSync(FERRY_BIN)) {
    return Promise.reject(new Error(`${FERRY_BIN} not found (the CLI entry point); run \`npm run build\` and make sure bin/ferry exists`));
  }
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, NO_COLOR: '1', XDG_STATE_HOME: testStateHome(), ...(opts.env ?? {}) })) if (v !== undefined) env[k] = v;
    const child = spawn(process.execPath, [FERRY_BIN, ...args], { cwd: opts.cwd ?? REPO_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 110_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {}); // the CLI may exit before reading stdin
    child.stdin.end(opts.input);
    opts.onSpawn?.(child);
  });
}
