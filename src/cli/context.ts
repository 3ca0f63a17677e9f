import type { Output } from './output.js';
import { makeOutput } from './output.js';
import type { RegistryAccess } from '../app/registry-access.js';

/** What every command gets besides its own flags: output, cancellation, registry access. */
export interface CliContext {
  out: Output;
  signal: AbortSignal;
  registry: RegistryAccess;
  jobs: number;
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
}

let controller: AbortController | undefined;

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
  if (argv.username) {
    registry.username = argv.username;
    if (argv['password-stdin']) registry.password = (await readAllStdin()).replace(/\r?\n$/, '');
  }
  return { out, signal: abortController().signal, registry, jobs: argv.jobs ?? 4 };
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
