import type { Writable } from 'node:stream';
import { asFerryError, type FerryError } from '../errors.js';
import { redactCredentials, stripControls } from '../net/remote-text.js';
import type { ProgressMode } from './globals.js';

export { formatBytes, table } from '../format.js';

/** A stream the CLI writes to, with what a terminal tells about itself. */
export type TextStream = Writable & { isTTY?: boolean; columns?: number };

/**
 * Where the CLI talks to people and scripts. Results go to stdout (a JSON
 * document with --json), everything else — progress, warnings, errors — to
 * stderr, so `ferry export -o - … | ssh …` stays clean.
 */
export interface Output {
  json: boolean;
  quiet: boolean;
  debug: boolean;
  /** --progress: how copies show progress on stderr (cli/progress.ts). */
  progress: ProgressMode;
  /** The invocation's streams: progress draws on `stderr`; `data` writes raw bytes (a bundle, an inventory) to stdout. */
  readonly stdout: TextStream;
  readonly stderr: TextStream;
  /** A line for people on stderr (suppressed by --quiet and --json). */
  info(line: string): void;
  warn(line: string): void;
  /** The command's result: JSON document with --json, else the human text. */
  result(doc: unknown, human: () => string): void;
  /** Text that is itself the result (inspect --metadata, an inventory on stdout), --json or not. */
  data(text: string | Uint8Array): void;
  /**
   * The command writes data to stdout (`export -o -`): from now on the result
   * and the JSON error document go to stderr, so the stream stays the data alone.
   */
  claimStdout(): void;
  /** Prints the error (one document with --json) and returns the exit status. */
  error(e: unknown): number;
  /** Whether a result, data or an error has been printed: a command that ends without one is a bug. */
  readonly answered: boolean;
}

export interface OutputFlags {
  json?: boolean | undefined;
  quiet?: boolean | undefined;
  debug?: boolean | undefined;
  progress?: ProgressMode | undefined;
}

export function makeOutput(flags: OutputFlags, streams: { stdout: TextStream; stderr: TextStream }): Output {
  const json = flags.json === true;
  const quiet = flags.quiet === true;
  const debug = flags.debug === true;
  let stdoutClaimed = false;
  let answered = false;
  const documents = (): TextStream => (stdoutClaimed ? streams.stderr : streams.stdout);
  return {
    json, quiet, debug, progress: flags.progress ?? 'auto',
    stdout: streams.stdout,
    stderr: streams.stderr,
    get answered() {
      return answered;
    },
    claimStdout() {
      stdoutClaimed = true;
    },
    info(line) {
      if (!quiet && !json) streams.stderr.write(`${line}\n`);
    },
    warn(line) {
      if (!json) streams.stderr.write(`ferry: warning: ${shown(line)}\n`);
    },
    result(doc, human) {
      answered = true;
      if (json) documents().write(`${JSON.stringify(doc, null, 2)}\n`);
      else if (!quiet) {
        const text = human();
        if (text) documents().write(text.endsWith('\n') ? text : `${text}\n`);
      }
    },
    data(text) {
      answered = true;
      streams.stdout.write(text);
    },
    error(e) {
      answered = true;
      const err = asFerryError(e);
      if (json) {
        documents().write(`${JSON.stringify({ error: errorDocument(err) }, null, 2)}\n`);
      } else {
        streams.stderr.write(`ferry: error [${err.code}]: ${shown(messageOf(err))}\n`);
        if (err.hint) streams.stderr.write(`  hint: ${shown(err.hint)}\n`);
        if (debug && err.stack) streams.stderr.write(`${err.stack}\n${causeChain(err)}`);
      }
      return err.exitStatus;
    },
  };
}

export function errorDocument(err: FerryError): Record<string, unknown> {
  return { code: err.code, exitStatus: err.exitStatus, message: shown(messageOf(err)), ...(err.hint ? { hint: shown(err.hint) } : {}), details: err.details };
}

/** E_INTERNAL is ferry's own fault, never the input's (spec/errors.md): it says so, and what helps fix it. */
function messageOf(err: FerryError): string {
  return err.code === 'E_INTERNAL' ? `${err.message}: this is a bug in ferry, please report it with --debug output` : err.message;
}

/**
 * The last gate before a person's terminal (or a script's log): remote text is
 * sanitised where it enters a message (net/remote-text.ts), but a name or a
 * media type quoted from a manifest can still carry controls or bidi marks, and
 * no secret this process holds may be printed, whatever path it took.
 */
function shown(text: string): string {
  return redactCredentials(stripControls(text));
}

function causeChain(err: Error): string {
  let out = '';
  let cause = err.cause;
  while (cause instanceof Error) {
    out += `caused by: ${cause.stack ?? cause.message}\n`;
    cause = cause.cause;
  }
  return out;
}
