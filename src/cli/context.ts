import type { Readable } from 'node:stream';
import type { RegistryAccess } from '../app/registry-access.js';
import type { Settings } from '../app/config.js';
import type { SshOptions } from '../net/ssh/session.js';
import { FerryError } from '../errors.js';
import { makeOutput, type Output, type TextStream } from './output.js';
import { askLine, canAsk } from './prompt.js';
import type { ProgressMode } from './globals.js';

/** The streams one run of the CLI talks through: the process's, or a test's. */
export interface CliIo {
  stdout: TextStream;
  stderr: TextStream;
  stdin: Readable & { isTTY?: boolean };
}

/**
 * Everything one run of the CLI owns: its streams, its cancellation, the site
 * settings it loaded and the output it answered through. Nothing of it lives in
 * module state, so several runs can share a process (the in-process tests do).
 */
export interface Invocation {
  readonly io: CliIo;
  readonly controller: AbortController;
  site: Settings;
  /** Set once a command built its context: the top-level error handler must answer through it (it may have claimed stdout). */
  out?: Output;
}

/** The argv key under which main() hands each command its invocation (yargs merges the parse context into argv). */
export const INVOCATION = '$ferryInvocation';

/** What every command gets besides its own flags: output, cancellation, registry access. */
export interface CliContext {
  out: Output;
  signal: AbortSignal;
  registry: RegistryAccess;
  jobs: number;
  io: CliIo;
  /** --ssh and friends; undefined without --ssh. */
  ssh?: SshOptions;
  /** The --ssh-* flags without a destination (ferry send names its host in its own argument). */
  sshSettings: Omit<SshOptions, 'destination'>;
}

export interface GlobalFlags {
  json?: boolean | undefined;
  quiet?: boolean | undefined;
  progress?: ProgressMode | undefined;
  debug?: boolean | undefined;
  jobs?: number | undefined;
  insecure?: boolean | undefined;
  'insecure-registry'?: string[] | undefined;
  'plain-http'?: string[] | undefined;
  'ca-file'?: string | undefined;
  username?: string | undefined;
  'password-stdin'?: boolean | undefined;
  ssh?: string | undefined;
  'ssh-key'?: string[] | undefined;
  'ssh-jump'?: string | undefined;
  'ssh-accept-new'?: boolean | undefined;
  'ssh-passphrase-stdin'?: boolean | undefined;
  'connect-timeout'?: number | undefined;
  'idle-timeout'?: number | undefined;
  [INVOCATION]?: Invocation;
  /** Bytes a second, parsed from `--min-rate` by its coerce. */
  'min-rate'?: number | undefined;
}

export function invocationOf(argv: GlobalFlags): Invocation {
  const inv = argv[INVOCATION];
  if (!inv) throw new FerryError('E_INTERNAL', 'a command ran without its invocation (main() did not pass it)');
  return inv;
}

/** The output alone, for commands that need no registry access. */
export function outputFor(argv: GlobalFlags): Output {
  const inv = invocationOf(argv);
  inv.out ??= makeOutput(argv, inv.io);
  return inv.out;
}

export async function contextFrom(argv: GlobalFlags): Promise<CliContext> {
  const inv = invocationOf(argv);
  const out = outputFor(argv);
  const registry: RegistryAccess = {
    insecureAll: argv.insecure === true,
    insecure: argv['insecure-registry'] ?? [],
    plainHttp: argv['plain-http'] ?? [],
  };
  if (argv['ca-file']) registry.caFile = argv['ca-file'];
  if (argv['connect-timeout'] !== undefined) registry.connectTimeoutMs = Math.round(argv['connect-timeout'] * 1000);
  if (argv['idle-timeout'] !== undefined) registry.idleTimeoutMs = Math.round(argv['idle-timeout'] * 1000);
  if (argv['min-rate'] !== undefined) registry.minBytesPerSecond = argv['min-rate'];
  if (Object.keys(inv.site.registries).length > 0) registry.registries = inv.site.registries;
  const stdin = inv.io.stdin;
  const terminal = canAsk(inv.io);
  // One stdin for two secrets: the registry password on the first line, the key passphrase on the next.
  // On a terminal each is asked for without echo instead: typing into a read-to-end stdin would show it.
  const wantPassword = argv.username !== undefined && argv['password-stdin'] === true;
  const lines = !terminal && (wantPassword || argv['ssh-passphrase-stdin']) ? (await readAll(stdin)).split(/\r?\n/) : [];
  if (argv.username) {
    registry.username = argv.username;
    if (wantPassword) registry.password = terminal ? await askLine(inv.io, `password for ${argv.username}: `, false) : lines.shift() ?? '';
  }
  const askPassword = terminal ? (prompt: string) => askLine(inv.io, prompt, false).catch(() => undefined) : undefined;
  const sshSettings: Omit<SshOptions, 'destination'> = {
    keyFiles: argv['ssh-key'] ?? [],
    jump: argv['ssh-jump'],
    acceptNew: argv['ssh-accept-new'] === true,
    passphrase: argv['ssh-passphrase-stdin'] ? (terminal ? await askLine(inv.io, 'SSH key passphrase: ', false) : lines.shift() ?? '') : undefined,
    askPassword,
    info: (line) => out.info(line),
  };
  const ctx: CliContext = { out, signal: inv.controller.signal, registry, jobs: argv.jobs ?? 8, io: inv.io, sshSettings };
  if (argv.ssh) ctx.ssh = { ...sshSettings, destination: argv.ssh };
  return ctx;
}

async function readAll(stdin: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * Coerces a positional that may be `-` (stdin). yargs re-parses positionals as
 * `--name value`, and a value starting with `-` is then taken for a flag: `-`
 * arrives as an empty string. No real path is empty, so empty means `-`.
 */
export function stdinOrPath(value: unknown): string {
  return value === '' || value === true ? '-' : String(value);
}
