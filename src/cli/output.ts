import { asFerryError, type FerryError } from '../errors.js';

export { formatBytes, table } from '../format.js';

/**
 * Where the CLI talks to people and scripts. Results go to stdout (a JSON
 * document with --json), everything else — progress, warnings, errors — to
 * stderr, so `ferry export -o - … | ssh …` stays clean.
 */
export interface Output {
  json: boolean;
  quiet: boolean;
  debug: boolean;
  /** A line for people on stderr (suppressed by --quiet and --json). */
  info(line: string): void;
  warn(line: string): void;
  /** The command's result: JSON document with --json, else the human text. */
  result(doc: unknown, human: () => string): void;
  /**
   * The command writes data to stdout (`export -o -`): from now on the result
   * and the JSON error document go to stderr, so the stream stays the data alone.
   */
  claimStdout(): void;
  error(e: unknown): number;
}

/** Process-wide: the top-level error handler must honour a claim the command made. */
let stdoutClaimed = false;

export function makeOutput(flags: { json?: boolean; quiet?: boolean; debug?: boolean }): Output {
  const json = flags.json === true;
  const quiet = flags.quiet === true;
  const debug = flags.debug === true;
  const documents = (): NodeJS.WriteStream => (stdoutClaimed ? process.stderr : process.stdout);
  return {
    json, quiet, debug,
    claimStdout() {
      stdoutClaimed = true;
    },
    info(line) {
      if (!quiet && !json) process.stderr.write(`${line}\n`);
    },
    warn(line) {
      if (!json) process.stderr.write(`ferry: warning: ${line}\n`);
    },
    result(doc, human) {
      if (json) documents().write(`${JSON.stringify(doc, null, 2)}\n`);
      else if (!quiet) {
        const text = human();
        if (text) documents().write(text.endsWith('\n') ? text : `${text}\n`);
      }
    },
    error(e) {
      const err = asFerryError(e);
      if (json) {
        documents().write(`${JSON.stringify({ error: errorDocument(err) }, null, 2)}\n`);
      } else {
        process.stderr.write(`ferry: error [${err.code}]: ${err.message}\n`);
        if (err.hint) process.stderr.write(`  hint: ${err.hint}\n`);
        if (debug && err.stack) process.stderr.write(`${err.stack}\n${causeChain(err)}`);
      }
      return err.exitStatus;
    },
  };
}

export function errorDocument(err: FerryError): Record<string, unknown> {
  return { code: err.code, exitStatus: err.exitStatus, message: err.message, ...(err.hint ? { hint: err.hint } : {}), details: err.details };
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
