import yargs from 'yargs';
import { asFerryError, FerryError } from '../errors.js';
import { type CliIo, INVOCATION, type Invocation } from './context.js';
import { makeOutput } from './output.js';
import { seconds, wholeNumber } from './flags.js';
import { parseMinRate } from '../net/throughput.js';
import { exportCommand } from './commands/export.js';
import { inspectCommand } from './commands/inspect.js';
import { verifyCommand } from './commands/verify.js';
import { importCommand } from './commands/import.js';
import { pushCommand } from './commands/push.js';
import { demoCommand } from './commands/demo.js';
import { sendCommand } from './commands/send.js';
import { inventoryCommand } from './commands/inventory.js';
import { diffCommand } from './commands/diff.js';
import { mergeCommand } from './commands/merge.js';
import { planCommand } from './commands/plan.js';
import { loginCommand } from './commands/login.js';
import { logoutCommand } from './commands/logout.js';
import { serveCommand } from './commands/serve.js';
import { TOOL_VERSION } from '../version.js';
import { envName, loadSettings } from '../app/config.js';

/** The process's own streams: what `bin/ferry` runs with. */
export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin };
}

/**
 * The CLI's root: global flags, signals → the invocation's AbortController, and
 * the ONE catch that turns any error into a message and an exit status (see
 * spec/errors.md). Returns the exit status; it neither exits nor sets
 * process.exitCode, so tests can run it in process with their own streams.
 */
export async function main(args: string[], io: CliIo = processIo(), opts: { signal?: AbortSignal } = {}): Promise<number> {
  const inv: Invocation = { io, controller: new AbortController(), site: { flags: {}, registries: {} } };
  const controller = inv.controller;
  const forward = () => controller.abort(opts.signal?.reason ?? new FerryError('E_ABORTED', 'interrupted'));
  opts.signal?.addEventListener('abort', forward, { once: true });
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    // The first signal stops cleanly (temp files removed); a second one leaves at once.
    if (interrupts > 1) process.exit(130);
    io.stderr.write(`ferry: ${signal}: stopping, cleaning up (again to force)\n`);
    controller.abort(new FerryError('E_ABORTED', `interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const parser = yargs(args)
    .scriptName('ferry')
    .usage('$0 <command> [options]\n\nCarry container images across an air gap: registries → one verified, deduplicated bundle → registry layout, skopeo dirs or a registry.')
    .option('json', { type: 'boolean', describe: 'print one machine-readable JSON document (errors too)', global: true })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'no progress or info lines', global: true })
    .option('debug', { type: 'boolean', describe: 'stack traces on errors', global: true })
    // Numbers are read as text and judged by coerce: yargs would turn `--jobs abc` into NaN and run with no work.
    .option('jobs', { alias: 'j', type: 'string', default: 4, coerce: wholeNumber('jobs', 1, 256, 8), describe: 'blobs transferred at once (1-256)', global: true })
    .option('insecure', { type: 'boolean', describe: 'skip TLS certificate verification for every registry', global: true })
    .option('insecure-registry', { type: 'string', array: true, describe: 'skip TLS verification for this registry host[:port] (repeatable)', global: true })
    .option('plain-http', { type: 'string', array: true, describe: 'use plain HTTP for this registry host[:port] (repeatable)', global: true })
    .option('ca-file', { type: 'string', describe: 'extra CA certificates (PEM) to trust for registries', global: true })
    .option('username', { type: 'string', describe: 'registry user name (else ~/.docker/config.json or FERRY_USERNAME)', global: true })
    .option('password-stdin', { type: 'boolean', describe: 'read the registry password from stdin (asked for without echo on a terminal)', global: true })
    .option('connect-timeout', { type: 'string', coerce: seconds('connect-timeout', 86_400, 30), describe: 'seconds to wait for a registry connection (default 30)', global: true })
    .option('idle-timeout', { type: 'string', coerce: seconds('idle-timeout', 86_400, 300), describe: 'seconds a registry may send nothing mid-request before ferry gives up and retries (default 120; raise on slow links)', global: true })
    .option('min-rate', { type: 'string', coerce: (v: unknown) => (v === undefined ? undefined : parseMinRate(String(v))), describe: 'a registry transfer bringing less than this many bytes a second (K, M: KiB, MiB), averaged over the idle timeout, fails and is retried (default 1K; 0 turns it off)', global: true })
    .option('config', { type: 'string', describe: 'JSON config file: global flags and per-registry settings (default ~/.config/ferry/config.json when it exists)', global: true })
    .option('ssh', { type: 'string', describe: 'reach registries (push, import --to registry) or write a registry-layout through this SSH host: [user@]host[:port] or a ~/.ssh/config alias', global: true })
    .option('ssh-key', { type: 'string', array: true, describe: 'SSH identity file (repeatable; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent)', global: true })
    .option('ssh-jump', { type: 'string', describe: 'reach the --ssh host through these hops first (as ProxyJump: [user@]host[:port][,…])', global: true })
    .option('ssh-accept-new', { type: 'boolean', describe: 'trust and record in ~/.ssh/known_hosts a host key never seen before (a changed key is always refused)', global: true })
    .option('ssh-passphrase-stdin', { type: 'boolean', describe: 'read the SSH key passphrase from stdin (after the registry password when both are read)', global: true })
    .command(exportCommand)
    .command(planCommand)
    .command(inspectCommand)
    .command(verifyCommand)
    .command(importCommand)
    .command(pushCommand)
    .command(demoCommand)
    .command(sendCommand)
    .command(inventoryCommand)
    .command(diffCommand)
    .command(mergeCommand)
    .command(loginCommand)
    .command(logoutCommand)
    .command(serveCommand)
    .demandCommand(1, 'name a command: export, plan, inspect, verify, import, push, login, logout, inventory, diff, merge, send, serve or demo')
    .strict()
    .version(TOOL_VERSION)
    .help()
    // Help and version are printed through the invocation's stdout below, and never end the process.
    .exitProcess(false)
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      // yargs re-wraps what a flag's coerce threw as a bare YError with the same message: a usage error all the same.
      if (err && err.name !== 'YError') throw err;
      throw new FerryError('E_USAGE', usageMessage(msg ?? err?.message ?? 'invalid command line'), { hint: 'run ferry --help, or ferry <command> --help' });
    });

  let fromSettings: Record<string, unknown> | undefined;
  try {
    // Environment (FERRY_*) over the config file, both under the command line: yargs gives config objects the lowest rank.
    const settings = loadSettings(args);
    inv.site = settings;
    fromSettings = settings.flags;
    parser.config(settings.flags);
    let printed = '';
    const argv = await parser.parseAsync(args, { [INVOCATION]: inv }, (_err: unknown, _argv: unknown, output: string) => {
      printed = output;
    });
    if (printed) io.stdout.write(printed.endsWith('\n') ? printed : `${printed}\n`);
    // A command that returned without printing its result (or an error) did not do its job: that is a bug, not success.
    if (inv.out?.answered !== true && !argv.help && !argv.version) {
      throw new FerryError('E_INTERNAL', `ferry ${String(argv._[0] ?? '')} ended without a result`);
    }
    return 0;
  } catch (e) {
    // Parsing may not have happened: the raw arguments, then the settings (or, when those failed, the raw environment).
    const flags = {
      json: args.includes('--json') || (!args.includes('--no-json') && (fromSettings ? fromSettings.json === true : envFlag(envName('json')))),
      debug: args.includes('--debug') || (fromSettings ? fromSettings.debug === true : envFlag(envName('debug'))),
    };
    const err = asFerryError(controller.signal.aborted ? controller.signal.reason ?? e : e);
    return (inv.out ?? makeOutput(flags, io)).error(err);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    opts.signal?.removeEventListener('abort', forward);
  }
}

/**
 * `bin/ferry`: runs main() on the process's streams and sets the exit status.
 * Should the event loop ever run dry while main() is still waiting (a stream
 * nobody will ever read: a bug), the process would end with status 0 and no
 * answer; the guard below answers with E_INTERNAL instead.
 */
export async function runProcess(args: string[]): Promise<void> {
  let settled = false;
  const guard = () => {
    if (settled) return;
    settled = true;
    const out = makeOutput({ json: args.includes('--json') }, processIo());
    process.exitCode = out.error(new FerryError('E_INTERNAL', 'ferry stopped with work still pending and no result: nothing more can happen in this run'));
  };
  process.once('beforeExit', guard);
  // A reader that went away (`ferry inspect … | head`) is no failure of the run: its status still tells how the work went.
  const ignorePipe = (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
  };
  process.stdout.on('error', ignorePipe);
  process.stderr.on('error', ignorePipe);
  try {
    const status = await main(args);
    if (!settled) process.exitCode = status;
  } finally {
    settled = true;
    process.off('beforeExit', guard);
  }
}

/** yargs' "Invalid values: Argument: level, Given: "x", Choices: …" in the form every other flag error has. */
function usageMessage(msg: string): string {
  const m = /^Invalid values:\s*Argument: ([\w-]+), Given: (.*?), Choices: (.*)$/s.exec(msg.trim());
  if (!m) return msg;
  return `--${m[1]} ${m[2]}: use one of ${m[3]!.replace(/"/g, '')}`;
}

/** For the error path only, where parsing may not have happened: a set yes-value. */
function envFlag(name: string): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env[name] ?? '').trim().toLowerCase());
}
