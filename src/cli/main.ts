import { setMaxListeners } from 'node:events';
import yargs from 'yargs';
import { asFerryError, FerryError } from '../errors.js';
import { type CliIo, type GlobalFlags, INVOCATION, type Invocation } from './context.js';
import { makeOutput } from './output.js';
import type { Argv, CommandModule } from 'yargs';
import { GLOBAL_OPTIONS } from './globals.js';
import { COMMANDS } from './commands/index.js';
import { describeCli, emptyRecording, type Recording, recordingArgv } from './definitions.js';
import { checkFlags } from './suggest.js';
import { renderExamples } from './help.js';
import { envName, loadSettings } from '../app/config.js';
import { withStdin } from '../stream/stdin.js';
import { coerceError, withCoerceErrors } from './flags.js';

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
export async function main(args: string[], io: CliIo = processIo(), opts: { signal?: AbortSignal; sole?: boolean } = {}): Promise<number> {
  const inv: Invocation = { io, controller: new AbortController(), site: { flags: {}, registries: {} } };
  const controller = inv.controller;
  // Every transfer in flight listens for the run's interrupt: --jobs 32 means 32 listeners at once, not a leak (Node warns past 10).
  setMaxListeners(0, controller.signal);
  const forward = () => controller.abort(opts.signal?.reason ?? new FerryError('E_ABORTED', 'interrupted'));
  opts.signal?.addEventListener('abort', forward, { once: true });
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    // The first signal stops cleanly (temp files removed); a second one leaves at once,
    // still with the one answer a script reads (stdout writes to pipes and files are synchronous here).
    if (interrupts > 1) {
      const out = inv.out ?? makeOutput({ json: args.includes('--json') }, io);
      if (!out.answered) out.error(new FerryError('E_ABORTED', `interrupted twice (${signal}): stopped at once; temporary files may remain, the next run removes them`));
      process.exit(130);
    }
    io.stderr.write(`ferry: ${signal}: stopping, cleaning up (again to force)\n`);
    controller.abort(new FerryError('E_ABORTED', `interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  // `--version` anywhere is the version command, so it answers with --json too; `ferry help [COMMAND]` is `ferry [COMMAND] --help`.
  const argsIn = versionAsked(args) ? ['version', ...args.filter((a) => a === '--json' || a === '--no-json')]
    : args[0] === 'help' ? [...args.slice(1), '--help'] : args;
  const columns = terminalColumns(io);
  /** The examples of the command whose builder ran: printed whole after yargs' help. */
  const shown: Recording = emptyRecording();
  const parser = yargs(argsIn)
    .scriptName('ferry')
    .usage('$0 <command> [options]\n\nCarry container images across an air gap: registries → one verified, deduplicated bundle → registry layout, skopeo dirs or a registry.')
    // --version is an option of ours (it runs the version command), not yargs' built-in.
    .version(false);
  for (const [name, options] of GLOBAL_OPTIONS) {
    if (name === 'help') continue;
    parser.option(name, { ...options, global: true });
  }
  parser.group(GLOBAL_OPTIONS.map(([name]) => name), 'Global options:');
  for (const command of COMMANDS) parser.command(withOwnGroup(command, shown));
  parser
    .demandCommand(1, `name a command: ${describeCli().commands.map((c) => c.name).join(', ')}`)
    .strict()
    .recommendCommands()
    .help('help', GLOBAL_OPTIONS.find(([n]) => n === 'help')![1].describe)
    .alias('help', 'h')
    // Help and version are printed through the invocation's stdout below, and never end the process.
    .exitProcess(false)
    .wrap(columns)
    .fail((msg, err) => {
      // yargs re-wraps what a flag's coerce threw as a bare YError with the same message: a usage error all the same.
      if (err && err.name !== 'YError') throw err;
      // What our coerce functions threw, whole (yargs kept only its message).
      const original = coerceError(err?.message);
      if (original) throw original;
      const text = msg ?? err?.message ?? 'invalid command line';
      throw new FerryError('E_USAGE', usageMessage(text, argsIn), { hint: usageHint(text, argsIn) });
    });

  skipHelpCache(parser);

  let fromSettings: Record<string, unknown> | undefined;
  try {
    // Environment (FERRY_*) over the config file, both under the command line: yargs gives config objects the lowest rank.
    const settings = loadSettings(args);
    inv.site = settings;
    fromSettings = settings.flags;
    parser.config(settings.flags);
    // Mistyped flags first: "did you mean --output?" says more than "missing required argument: output".
    if (!helpAsked(argsIn)) checkFlags(argsIn, describeCli());
    let printed = '';
    const argv = await withCoerceErrors(() => withStdin(io.stdin, () => parser.parseAsync(argsIn, { [INVOCATION]: inv }, (_err: unknown, _argv: unknown, output: string) => {
      printed = output;
    })), opts.sole === true);
    if (printed) {
      if (argv.help && shown.examples.length > 0) printed = `${printed.trimEnd()}\n\n${renderExamples(shown.examples, columns)}`;
      io.stdout.write(printed.endsWith('\n') ? printed : `${printed}\n`);
    }
    // A command that returned without printing its result (or an error) did not do its job: that is a bug, not success.
    // Help (--help, -h, or yargs' own `ferry help`) is the only output yargs prints itself.
    if (inv.out?.answered !== true && !argv.help && !printed) {
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
  // Any other write error (`-o - > /dev/full`: ENOSPC) reaches the writer too, which fails the run with its code;
  // thrown from here it was an uncaught exception, a stack trace and exit 1.
  let failed: NodeJS.ErrnoException | undefined;
  const ignorePipe = (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') failed ??= e;
  };
  process.stdout.on('error', ignorePipe);
  process.stderr.on('error', ignorePipe);
  try {
    // The one invocation of this process: per-invocation state needs no AsyncLocalStorage.
    const status = await main(args, processIo(), { sole: true });
    if (!settled) process.exitCode = status;
    // The answer is out: a signal from here on only hurries the exit, with the status already decided
    // (without a handler, its default action would end the process as "killed").
    const late = (): never => process.exit(process.exitCode ?? status);
    process.on('SIGINT', late);
    process.on('SIGTERM', late);
    // A text answer is written after main() returns: its failure shows only by the exit.
    process.once('exit', () => {
      if (failed && !process.exitCode) process.exitCode = stdoutFailed(failed);
    });
  } finally {
    settled = true;
    process.off('beforeExit', guard);
  }
}

/** A run that said it succeeded while its stdout could not be written (the writer did not see it): the status says so, on stderr. */
function stdoutFailed(e: NodeJS.ErrnoException): number {
  if (e.path === undefined) e.path = 'stdout';
  return makeOutput({ json: false }, processIo()).error(asFerryError(e, 'E_IO'));
}

/**
 * yargs renders the whole help text (string widths of every option of every
 * command: ~50 ms of a 0.3 s start) each time it starts a command's handler,
 * only to print it should the handler fail. ferry reports failures itself
 * (`.fail` above), so that text is never shown: skip making it. Reached through
 * yargs' internals, hence guarded: without them ferry works the same, only slower.
 */
function skipHelpCache(parser: Argv): void {
  const usage = (parser as unknown as { getInternalMethods?: () => { getUsageInstance?: () => { cacheHelpMessage?: () => void } } })
    .getInternalMethods?.().getUsageInstance?.();
  if (typeof usage?.cacheHelpMessage === 'function') usage.cacheHelpMessage = () => undefined;
}

/** yargs' messages in the form every other flag error has: "Invalid values: Argument: level, Given: "x", Choices: …", "Did you mean export?". */
function usageMessage(msg: string, args: readonly string[]): string {
  const recommended = /^Did you mean ([\w-]+)\?$/.exec(msg.trim());
  if (recommended) {
    const typed = args.find((a) => !a.startsWith('-')) ?? '';
    return `ferry ${typed}: unknown command (did you mean ${recommended[1]}?)`;
  }
  const m = /^Invalid values:\s*Argument: ([\w-]+), Given: (.*?), Choices: (.*)$/s.exec(msg.trim());
  if (!m) return msg;
  const positional = describeCli().commands.some((c) => c.positionals.some((p) => p.name === m[1]));
  return `${positional ? '' : '--'}${m[1]} ${m[2]}: use one of ${m[3]!.replace(/"/g, '')}`;
}

/**
 * `ferry import --to oci:out release.tar`: --to reads one or two words and
 * takes the words after them as further volumes, so the bundle went into --to
 * and yargs said only "Not enough non-option arguments: got 0".
 */
function usageHint(msg: string, args: readonly string[]): string {
  const command = args.find((a) => !a.startsWith('-'));
  if (/^Not enough non-option arguments: got 0/.test(msg.trim()) && (command === 'import' || command === 'push') && args.some((a) => a === '--to' || a.startsWith('--to='))) {
    return `name the bundle first, then --to: ferry ${command} release.tar --to ${command === 'import' ? 'registry-layout:/var/lib/registry' : 'harbor.corp.local/mirror'} (the words after --to's target are read as more volumes of the bundle)`;
  }
  return 'run ferry --help, or ferry <command> --help';
}

function versionAsked(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).includes('--version');
}

function helpAsked(args: readonly string[]): boolean {
  const end = args.indexOf('--');
  return (end < 0 ? args : args.slice(0, end)).some((a) => a === '--help' || a === '-h');
}

/** Help is wrapped to the terminal: its columns, else $COLUMNS, else 80 (a pipe, a log). */
function terminalColumns(io: CliIo): number {
  const fromEnv = Number(process.env.COLUMNS);
  const columns = io.stdout.columns ?? (Number.isInteger(fromEnv) && fromEnv > 0 ? fromEnv : 80);
  return Math.max(40, columns);
}

/**
 * A command whose own flags --help lists first, under "Options:", before the
 * global ones; its examples are kept aside (yargs would wrap them mid-command)
 * and printed whole after the help.
 */
function withOwnGroup(command: CommandModule<GlobalFlags, never>, shown: Recording): CommandModule<GlobalFlags, never> {
  const builder = command.builder as ((y: Argv) => unknown) | undefined;
  return {
    ...command,
    builder: (y: Argv) => {
      const recording = emptyRecording();
      builder?.(recordingArgv(recording, y));
      for (const e of recording.examples) shown.examples.push(e);
      const own = recording.options.map((o) => o.name);
      if (own.length > 0) y.group(own, 'Options:');
      return y;
    },
  } as CommandModule<GlobalFlags, never>;
}

/** For the error path only, where parsing may not have happened: a set yes-value. */
function envFlag(name: string): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env[name] ?? '').trim().toLowerCase());
}
