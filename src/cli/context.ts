import type { Output } from './output.js';
import { makeOutput } from './output.js';
import type { RegistryAccess } from '../app/registry-access.js';
import type { Settings } from '../app/config.js';
import type { SshOptions } from '../net/ssh/session.js';
import { FerryError } from '../errors.js';
import { parseMinRate } from '../net/throughput.js';

/** What every command gets besides its own flags: output, cancellation, registry access. */
export interface CliContext {
  out: Output;
  signal: AbortSignal;
  registry: RegistryAccess;
  jobs: number;
  /** --ssh and friends; undefined without --ssh. */
  ssh?: SshOptions;
  /** The --ssh-* flags without a destination (ferry send names its host in its own argument). */
  sshSettings: Omit<SshOptions, 'destination'>;
}

export interface GlobalFlags {
  json?: boolean;
  quiet?: boolean;
  debug?: boolean;
  jobs?: number;
  insecure?: boolean;
  'insecure-registry'?: string[];
  'plain-http'?: string[];
  'ca-file'?: string;
  username?: string;
  'password-stdin'?: boolean;
  ssh?: string;
  'ssh-key'?: string[];
  'ssh-jump'?: string;
  'ssh-accept-new'?: boolean;
  'ssh-passphrase-stdin'?: boolean;
  'connect-timeout'?: number;
  'idle-timeout'?: number;
  'min-rate'?: string;
}

let controller: AbortController | undefined;
let site: Settings = { flags: {}, registries: {} };

/** The config file's per-registry settings (main loads them before parsing). */
export function useSiteSettings(settings: Settings): void {
  site = settings;
}

export function abortController(): AbortController {
  controller ??= new AbortController();
  return controller;
}

export async function contextFrom(argv: GlobalFlags): Promise<CliContext> {
  const out = makeOutput(argv);
  const registry: RegistryAccess = {
    insecureAll: argv.insecure === true,
    insecure: argv['insecure-registry'] ?? [],
    plainHttp: argv['plain-http'] ?? [],
  };
  if (argv['ca-file']) registry.caFile = argv['ca-file'];
  const connectTimeout = timeoutMs(argv['connect-timeout'], '--connect-timeout');
  if (connectTimeout !== undefined) registry.connectTimeoutMs = connectTimeout;
  const idleTimeout = timeoutMs(argv['idle-timeout'], '--idle-timeout');
  if (idleTimeout !== undefined) registry.idleTimeoutMs = idleTimeout;
  if (argv['min-rate'] !== undefined) registry.minBytesPerSecond = parseMinRate(argv['min-rate']);
  if (Object.keys(site.registries).length > 0) registry.registries = site.registries;
  // One stdin for two secrets: the registry password on the first line, the key passphrase on the next.
  const wantPassword = argv.username !== undefined && argv['password-stdin'] === true;
  const lines = wantPassword || argv['ssh-passphrase-stdin'] ? (await readAllStdin()).split(/\r?\n/) : [];
  if (argv.username) {
    registry.username = argv.username;
    if (wantPassword) registry.password = lines.shift() ?? '';
  }
  const sshSettings: Omit<SshOptions, 'destination'> = {
    keyFiles: argv['ssh-key'] ?? [],
    jump: argv['ssh-jump'],
    acceptNew: argv['ssh-accept-new'] === true,
    passphrase: argv['ssh-passphrase-stdin'] ? lines.shift() ?? '' : undefined,
    askPassword: process.stdin.isTTY && process.stderr.isTTY ? askHidden : undefined,
    info: (line) => out.info(line),
  };
  const ctx: CliContext = { out, signal: abortController().signal, registry, jobs: argv.jobs ?? 4, sshSettings };
  if (argv.ssh) ctx.ssh = { ...sshSettings, destination: argv.ssh };
  return ctx;
}

/** Seconds from a flag (or its FERRY_* variable) → ms; a typo fails before any connection. */
function timeoutMs(seconds: number | undefined, flag: string): number | undefined {
  if (seconds === undefined) return undefined;
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 86_400) {
    throw new FerryError('E_USAGE', `${flag} ${String(seconds)}: not a number of seconds between 0 and 86400`, { hint: `e.g. ${flag} 300 for a slow link` });
  }
  return Math.round(seconds * 1000);
}

/** Reads a password from the terminal without echoing it. */
async function askHidden(prompt: string): Promise<string | undefined> {
  const { createInterface } = await import('node:readline');
  const rl = createInterface({ input: process.stdin, output: process.stderr, terminal: true });
  const rlOut = rl as unknown as { _writeToOutput: (s: string) => void };
  process.stderr.write(prompt);
  rlOut._writeToOutput = () => undefined;
  return new Promise((resolve) => {
    rl.question('', (answer) => {
      rl.close();
      process.stderr.write('\n');
      resolve(answer);
    });
    rl.once('SIGINT', () => {
      rl.close();
      resolve(undefined);
    });
  });
}

async function readAllStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
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
