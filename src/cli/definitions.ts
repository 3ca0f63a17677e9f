import type { Argv, CommandModule, Options, PositionalOptions } from 'yargs';
import { GLOBAL_OPTIONS } from './globals.js';
import { COMMANDS } from './commands/index.js';

/**
 * What the command line is made of, read from the very definitions yargs runs:
 * each command's builder is replayed against a recorder that notes its
 * positionals, options and examples. --help, the completion scripts,
 * docs/cli.md and "did you mean" all come from here, so none of them can drift
 * from what the parser accepts.
 */

export interface OptionSpec {
  name: string;
  aliases: string[];
  describe: string;
  /** 'boolean', 'string', 'array' (of strings), or 'choice' with `choices`. */
  type: 'boolean' | 'string' | 'array' | 'choice';
  choices?: readonly string[];
  default?: unknown;
  required?: boolean;
}

export interface PositionalSpec {
  name: string;
  describe: string;
  array: boolean;
  required: boolean;
  choices?: readonly string[];
}

export interface CommandSpec {
  name: string;
  /** As yargs takes it, e.g. `import <bundle> [volumes..]`. */
  usage: string;
  describe: string;
  positionals: PositionalSpec[];
  options: OptionSpec[];
  examples: { command: string; describe: string }[];
}

export interface CliSpec {
  globals: OptionSpec[];
  commands: CommandSpec[];
}

/** What a builder told yargs, besides passing it on. */
export interface Recording {
  positionals: PositionalSpec[];
  options: OptionSpec[];
  examples: { command: string; describe: string }[];
}

function optionSpec(name: string, o: Options): OptionSpec {
  const alias = o.alias === undefined ? [] : ([] as string[]).concat(o.alias);
  const spec: OptionSpec = {
    name, aliases: alias, describe: o.describe ?? o.description ?? o.desc ?? '',
    type: o.choices ? 'choice' : o.array ? 'array' : o.type === 'boolean' ? 'boolean' : 'string',
  };
  if (o.choices) spec.choices = ([] as string[]).concat(o.choices as string[]);
  if (o.default !== undefined) spec.default = o.default;
  if (o.demandOption) spec.required = true;
  return spec;
}

/**
 * A stand-in for the yargs instance a builder gets: records positional(),
 * option() and example() and, when given the real instance, forwards them to it.
 * Builders use nothing else (a builder that did would fail here, loudly).
 */
export function recordingArgv(recording: Recording, target?: Argv): Argv {
  const proxy: Record<string, unknown> = {
    positional(name: string, o: PositionalOptions) {
      recording.positionals.push({
        name, describe: o.describe ?? o.description ?? o.desc ?? '', array: o.array === true, required: o.demandOption === true,
        ...(o.choices ? { choices: ([] as string[]).concat(o.choices as string[]) } : {}),
      });
      target?.positional(name, o);
      return proxy;
    },
    option(name: string, o: Options) {
      recording.options.push(optionSpec(name, o));
      target?.option(name, o);
      return proxy;
    },
    example(command: string, describe: string) {
      // Not passed on: yargs wraps examples mid-command; main() prints them whole after the help.
      recording.examples.push({ command, describe });
      return proxy;
    },
  };
  return proxy as unknown as Argv;
}

export function emptyRecording(): Recording {
  return { positionals: [], options: [], examples: [] };
}

function commandName(usage: string): string {
  return usage.split(' ')[0]!;
}

/** Replays a command's builder into a recording (and into yargs when `target` is given). */
export function recordCommand(command: CommandModule<never, never>, target?: Argv): Recording {
  const recording = emptyRecording();
  const builder = command.builder;
  if (typeof builder === 'function') (builder as (y: Argv) => unknown)(recordingArgv(recording, target));
  return recording;
}

let cached: CliSpec | undefined;

/** The whole command line: global options and every command with its own. */
export function describeCli(): CliSpec {
  cached ??= {
    globals: GLOBAL_OPTIONS.map(([name, o]) => optionSpec(name, o)),
    commands: COMMANDS.map((c) => {
      const usage = String(c.command);
      const r = recordCommand(c);
      return { name: commandName(usage), usage, describe: String(c.describe ?? ''), ...r };
    }),
  };
  return cached;
}

/**
 * Flags yargs reads as a list only so the older two words (`import --to KIND TARGET`)
 * still parse: given once all the same, which is checked with the single-valued ones.
 */
export const GIVEN_ONCE: Readonly<Record<string, readonly string[]>> = { import: ['to'] };

/** Every spelling yargs accepts for these options: names, aliases, and --no-X for booleans. */
export function acceptedFlags(options: readonly OptionSpec[]): Set<string> {
  const out = new Set<string>();
  for (const o of options) {
    for (const n of [o.name, ...o.aliases]) {
      out.add(n);
      // yargs also takes the camel-case spelling of a dashed name.
      out.add(n.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()));
      if (o.type === 'boolean' && n.length > 1) out.add(`no-${n}`);
    }
  }
  return out;
}
