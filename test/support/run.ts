// Runs a peer program (podman, buildah, umoci, ctr, docker) and collects its output;
// never throws on a non-zero exit, so tests can assert on the status and stderr.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface ProgramResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ProgramOptions {
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  cwd?: string;
  timeoutMs?: number;
}

/**
 * Throws the one message a missing peer gets everywhere: which package has it and
 * that `npm test` installs it. No test skips when a peer is missing.
 */
export function requireProgram(bin: string, pkg: string): void {
  if (!existsSync(bin)) {
    throw new Error(`${bin} not found: \`npm test\` installs it as root (scripts/ensure-peers.mjs), or run \`apt-get install ${pkg}\``);
  }
}

export function runProgram(bin: string, args: string[], opts: ProgramOptions = {}): Promise<ProgramResult> {
  return new Promise((resolve, reject) => {
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries({ ...process.env, ...(opts.env ?? {}) })) if (v !== undefined) env[k] = v;
    const child = spawn(bin, args, { env, stdio: ['pipe', 'pipe', 'pipe'], ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}) });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? (signal !== null ? 128 : 1), stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {}); // the program may exit before reading stdin
    child.stdin.end(opts.input);
  });
}

/** Throws with the program's stderr unless it exited 0. */
export async function runProgramOk(bin: string, args: string[], opts: ProgramOptions = {}): Promise<ProgramResult> {
  const r = await runProgram(bin, args, opts);
  if (r.code !== 0) throw new Error(`${bin} ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return r;
}
