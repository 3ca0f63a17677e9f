// Runs the real skopeo (the interop peer) with flags suited to loopback HTTP registries.
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import type { RegistryTarget } from './http.js';

export const SKOPEO_BIN = process.env['FERRY_TEST_SKOPEO_BIN'] ?? '/usr/bin/skopeo';

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout as bytes (for --raw output, which must be byte-exact). */
  stdoutBytes: Buffer;
}

export interface SkopeoOptions {
  env?: Record<string, string>;
  input?: string | Buffer;
  timeoutMs?: number;
}

/** Runs `skopeo --insecure-policy ...args` (no policy.json needed); never throws on a non-zero exit. */
export function skopeo(args: string[], opts: SkopeoOptions = {}): Promise<RunResult> {
  if (!existsSync(SKOPEO_BIN)) {
    return Promise.reject(new Error(`${SKOPEO_BIN} not found: \`npm test\` installs it (scripts/ensure-peers.mjs), or run \`apt-get install skopeo\``));
  }
  return new Promise((resolve, reject) => {
    const child = spawn(SKOPEO_BIN, ['--insecure-policy', ...args], {
      env: { ...process.env, ...(opts.env ?? {}) },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
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
      const stdoutBytes = Buffer.concat(out);
      resolve({
        code: code ?? (signal !== null ? 128 : 1),
        stdout: stdoutBytes.toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        stdoutBytes,
      });
    });
    child.stdin.end(opts.input);
  });
}

/** Throws with skopeo's stderr unless it exited 0. */
export async function skopeoOk(args: string[], opts: SkopeoOptions = {}): Promise<RunResult> {
  const r = await skopeo(args, opts);
  if (r.code !== 0) throw new Error(`skopeo ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return r;
}

function creds(t: RegistryTarget | undefined): string | undefined {
  return t?.username !== undefined && t.password !== undefined ? `${t.username}:${t.password}` : undefined;
}

/** Flags for reading from a loopback HTTP registry (`skopeo inspect` style). */
export function srcFlags(t?: RegistryTarget): string[] {
  const c = creds(t);
  return ['--src-tls-verify=false', ...(c !== undefined ? ['--src-creds', c] : ['--src-no-creds'])];
}

/** Flags for writing to a loopback HTTP registry. */
export function destFlags(t?: RegistryTarget): string[] {
  const c = creds(t);
  return ['--dest-tls-verify=false', ...(c !== undefined ? ['--dest-creds', c] : ['--dest-no-creds'])];
}

/** Flags for single-registry commands (inspect, list-tags, delete). */
export function tlsFlags(t?: RegistryTarget): string[] {
  const c = creds(t);
  return ['--tls-verify=false', ...(c !== undefined ? ['--creds', c] : ['--no-creds'])];
}

/** `ref` like `127.0.0.1:5000/a/b:tag`; returns the digest of the top-level manifest skopeo reports. */
export async function skopeoInspectDigest(ref: string, t?: RegistryTarget): Promise<string> {
  const r = await skopeoOk(['inspect', ...tlsFlags(t), '--format', '{{.Digest}}', `docker://${ref}`]);
  return r.stdout.trim();
}

/** The top manifest's exact bytes as skopeo fetched them, and their sha256. */
export async function skopeoInspectRaw(ref: string, t?: RegistryTarget): Promise<{ bytes: Buffer; digest: string }> {
  const r = await skopeoOk(['inspect', ...tlsFlags(t), '--raw', `docker://${ref}`]);
  return { bytes: r.stdoutBytes, digest: `sha256:${createHash('sha256').update(r.stdoutBytes).digest('hex')}` };
}

/** `skopeo copy [--all] docker://ref dir:path`. */
export async function skopeoCopyToDir(ref: string, dir: string, t?: RegistryTarget, all = true): Promise<RunResult> {
  return skopeoOk(['copy', ...(all ? ['--all'] : []), ...srcFlags(t), `docker://${ref}`, `dir:${dir}`]);
}
