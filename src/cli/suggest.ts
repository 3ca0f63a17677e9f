import { FerryError } from '../errors.js';
import { acceptedFlags, type CliSpec, GIVEN_ONCE, type OptionSpec } from './definitions.js';

/**
 * "Did you mean": mistyped flags are found before yargs parses, so `--outptu x`
 * says so instead of "missing required argument: output". Commands are
 * yargs' own recommendCommands(); flags are matched here, against the flags of
 * the command typed (its own and the global ones).
 */

/** Edit distance (insert, delete, substitute, swap of neighbours). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest candidate within a third of the word's length (at least 1, at most 3 edits), else undefined. */
export function closest(word: string, candidates: Iterable<string>): string | undefined {
  const limit = Math.min(3, Math.max(1, Math.floor(word.length / 3)));
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(word, c);
    // A prefix typed short (--out for --output) is no typo yargs would take: still name the flag.
    const score = c.startsWith(word) && word.length >= 3 ? Math.min(d, 1) : d;
    if (score < bestDistance || (score === bestDistance && best !== undefined && c.length < best.length)) {
      best = c;
      bestDistance = score;
    }
  }
  return bestDistance <= limit ? best : undefined;
}

interface Scan {
  /** The command word, if one was typed and it is known. */
  command?: string;
  /** The first word in command position, known or not. */
  word?: string;
  /** `--flag` / `-f` words not taken by the command typed, in order. */
  unknown: string[];
  /** Flags that take one value (not a list), given more than once: each with its values, in order. */
  repeated: { flag: string; values: string[] }[];
  /** Flags that take a value, given last or followed by another flag: yargs would quietly use the default. */
  valueless: string[];
}

/** Finds the command and the flags it does not know, skipping the values of flags that take one. */
export function scanArgs(args: readonly string[], cli: CliSpec): Scan {
  const valued = (options: readonly OptionSpec[]) => new Set(options.filter((o) => o.type !== 'boolean').flatMap((o) => [o.name, ...o.aliases]));
  const globalsValued = valued(cli.globals);
  const out: Scan = { unknown: [], repeated: [], valueless: [] };
  let commandSpec: CliSpec['commands'][number] | undefined;
  let takesValue = globalsValued;
  let known = acceptedFlags(cli.globals);
  // Values met per flag that takes one value, under its own name (`-o` and `--output` are one flag).
  // A string flag whose help says "(repeatable" collects (`--since A --since B`): not a flag that takes one value.
  const values = new Map<string, string[]>();
  const single = (options: readonly OptionSpec[], once: readonly string[] = []) => new Map(options.filter((o) => ((o.type === 'string' || o.type === 'choice') && !/\(repeatable\b/.test(o.describe)) || once.includes(o.name)).flatMap((o) => [o.name, ...o.aliases].map((n) => [n, o.name] as const)));
  let singleValued = single(cli.globals);
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a.startsWith('-') && a.length > 1 && !/^-\d/.test(a)) {
      const name = a.startsWith('--') ? a.slice(2).split('=')[0]! : a.slice(1, 2);
      if (!known.has(name)) {
        out.unknown.push(a.startsWith('--') ? `--${name}` : `-${name}`);
        continue;
      }
      const inline = a.startsWith('--') ? (a.includes('=') ? a.slice(a.indexOf('=') + 1) : undefined) : a.length > 2 ? a.slice(2).replace(/^=/, '') : undefined;
      const next = args[i + 1];
      if (inline === undefined && takesValue.has(name) && (next === undefined || next === '--' || /^--?[a-zA-Z]/.test(next))) {
        out.valueless.push(a.startsWith('--') ? `--${name}` : `-${name}`);
        continue;
      }
      const value = inline ?? (takesValue.has(name) ? args[++i] : undefined);
      const own = singleValued.get(name);
      if (own !== undefined && value !== undefined) values.set(own, [...(values.get(own) ?? []), value]);
      continue;
    }
    if (out.word === undefined) {
      out.word = a;
      commandSpec = cli.commands.find((c) => c.name === a);
      if (!commandSpec) return out;
      out.command = a;
      known = acceptedFlags([...cli.globals, ...commandSpec.options]);
      takesValue = new Set([...globalsValued, ...valued(commandSpec.options)]);
      singleValued = single([...cli.globals, ...commandSpec.options], GIVEN_ONCE[a]);
      // Flags typed before the command are judged again against the command's own.
      out.unknown = out.unknown.filter((u) => !known.has(u.replace(/^--?/, '')));
    }
  }
  out.repeated = [...values].filter(([, v]) => v.length > 1).map(([name, v]) => ({ flag: `${name.length > 1 ? '--' : '-'}${name}`, values: v }));
  return out;
}

/** Throws E_USAGE naming each unknown flag, with the closest known one. */
export function checkFlags(args: readonly string[], cli: CliSpec): void {
  const scan = scanArgs(args, cli);
  // An unknown command is yargs' to report (with its own suggestion); its flags cannot be judged.
  if (scan.word !== undefined && scan.command === undefined) return;
  if (scan.unknown.length === 0) {
    const bare = scan.valueless[0];
    if (bare !== undefined) {
      const where = scan.command ? `ferry ${scan.command}` : 'ferry';
      throw new FerryError('E_USAGE', `${where}: ${bare} needs a value`, { hint: `${where} --help says what ${bare} takes`, details: { flag: bare } });
    }
    // A flag that takes one value, given twice: yargs would hand the command a list, or keep one of them silently.
    const twice = scan.repeated[0];
    if (twice === undefined) return;
    const where = scan.command ? `ferry ${scan.command}` : 'ferry';
    throw new FerryError('E_USAGE', `${where}: ${twice.flag} is given ${twice.values.length} times (${twice.values.map((v) => JSON.stringify(v.slice(0, 200))).join(', ')}); it takes one value`, {
      hint: `give ${twice.flag} once${scan.command ? `; ferry ${scan.command} --help lists what it takes` : ''}`,
      details: { flag: twice.flag, values: twice.values.map((v) => v.slice(0, 200)) },
    });
  }
  const spec = cli.commands.find((c) => c.name === scan.command);
  const options = [...(spec?.options ?? []), ...cli.globals];
  const longNames = options.flatMap((o) => [o.name, ...o.aliases].filter((n) => n.length > 1));
  const parts = [...new Set(scan.unknown)].map((flag) => {
    const guess = flag.startsWith('--') ? closest(flag.slice(2), longNames) : undefined;
    return { flag, guess: guess === undefined ? undefined : `--${guess}` };
  });
  const where = scan.command ? `ferry ${scan.command}` : 'ferry';
  const text = parts.map((p) => (p.guess ? `${p.flag} (did you mean ${p.guess}?)` : p.flag)).join(', ');
  throw new FerryError('E_USAGE', `${where}: unknown flag${parts.length > 1 ? 's' : ''} ${text}`, {
    hint: `${where} --help lists its flags`,
    details: { unknown: parts.map((p) => p.flag), suggestions: parts.flatMap((p) => (p.guess ? [p.guess] : [])) },
  });
}
