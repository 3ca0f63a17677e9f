import { AsyncLocalStorage } from 'node:async_hooks';
import { bundlePath, kindPrefix, type KindName } from '../app/locations.js';
import { FerryError } from '../errors.js';

/**
 * yargs passes on only the message of what a coerce function threw (as a bare
 * YError): the errors are kept here, per invocation, so the one reported keeps
 * its hint and details.
 */
const thrownByCoerce = new AsyncLocalStorage<Map<string, FerryError>>();
/** The errors of the process's one invocation (`sole`): no AsyncLocalStorage needed. */
let soleThrown: Map<string, FerryError> | undefined;

/**
 * Runs `run` with its own record of coerce errors. `sole`: this is the only
 * invocation the process will run (bin/ferry), so the record is module state:
 * on Node 20 an AsyncLocalStorage entered once turns on promise hooks for the
 * rest of the process, which gives every promise of the run an extra property
 * array (measured at bundle C: ~5 MB on 80,000 kept promises, plus the hook's CPU).
 */
export function withCoerceErrors<T>(run: () => T, sole = false): T {
  if (sole) {
    soleThrown = new Map();
    return run();
  }
  return thrownByCoerce.run(new Map(), run);
}

function coerceErrors(): Map<string, FerryError> | undefined {
  return thrownByCoerce.getStore() ?? soleThrown;
}

/** The FerryError a coerce function threw with this message, in this invocation. */
export function coerceError(message: string | undefined): FerryError | undefined {
  return message === undefined ? undefined : coerceErrors()?.get(message);
}

/** A coerce function whose FerryError reaches the user whole. */
export function kept<R>(coerce: (v: unknown) => R): (v: unknown) => R {
  return (v) => {
    try {
      return coerce(v);
    } catch (e) {
      if (e instanceof FerryError) coerceErrors()?.set(e.message, e);
      throw e;
    }
  };
}

/**
 * Checks for flag values that yargs parses but does not judge: `--jobs abc` is
 * NaN to yargs and would quietly become "no work". Each returns a yargs
 * `coerce` function, so a bad value fails parsing, before the command starts.
 */
export function wholeNumber(flag: string, min: number, max: number, example: number): (v: unknown) => number | undefined {
  return kept((v) => {
    if (v === undefined) return undefined;
    // Digits only: Number() also reads `0x10`, `1e1` and `0b11`, which nobody means as a count.
    const n = typeof v === 'number' ? v : typeof v === 'string' && /^\s*\d+\s*$/.test(v) ? Number(v.trim()) : NaN;
    if (Array.isArray(v) || !Number.isInteger(n) || n < min || n > max) {
      throw new FerryError('E_USAGE', `--${flag} ${shown(v)}: not a whole number from ${min} to ${max} (e.g. --${flag} ${example})`, { hint: `e.g. --${flag} ${example}` });
    }
    return n;
  });
}

/** Seconds, fractions allowed (a timeout). */
export function seconds(flag: string, max: number, example: number): (v: unknown) => number | undefined {
  return kept((v) => {
    if (v === undefined) return undefined;
    const n = typeof v === 'number' ? v : typeof v === 'string' ? Number(v.trim()) : NaN;
    if (Array.isArray(v) || !Number.isFinite(n) || n <= 0 || n > max) {
      throw new FerryError('E_USAGE', `--${flag} ${shown(v)}: not a number of seconds above 0 and at most ${max} (e.g. --${flag} ${example})`, { hint: `e.g. --${flag} ${example}` });
    }
    return n;
  });
}

/** A flag given once: yargs turns a repeated scalar flag into an array, which would be read as garbage further on. */
export function single(flag: string): (v: unknown) => string | undefined {
  return kept((v) => {
    if (v === undefined) return undefined;
    if (Array.isArray(v)) throw new FerryError('E_USAGE', `--${flag} was given ${v.length} times`, { hint: `give --${flag} once`, details: { flag: `--${flag}` } });
    return typeof v === 'string' ? v : JSON.stringify(v);
  });
}

/** The value as typed when it is plain, quoted when it holds anything else (an empty string, spaces, controls). */
function shown(v: unknown): string {
  const text = Array.isArray(v) ? v.join(' ') : String(v);
  return /^[\w.:+-]{1,40}$/.test(text) ? text : JSON.stringify(text.slice(0, 40));
}

/** A file or directory name: an empty one would resolve to the working directory. */
export function path(flag: string): (v: unknown) => string | undefined {
  return kept((v) => {
    if (v === undefined) return undefined;
    const text = single(flag)(v)!;
    if (text.trim() === '') throw new FerryError('E_USAGE', `--${flag} is empty: it needs a file or directory name`, { hint: `give --${flag} a path` });
    return text;
  });
}

/**
 * Bundle files where a command reads bundles: a path, `-` for stdin where the
 * command takes it, or `bundle:PATH` (the one location syntax); another kind
 * (`oci:DIR`) is refused, saying how to bundle it.
 */
export function bundleFile(what: string, writes: readonly KindName[] = []): (v: unknown) => string {
  return kept((v) => {
    const word = v === '' || v === true || v === undefined ? '-' : typeof v === 'string' ? v : JSON.stringify(v);
    return word === '-' ? word : bundlePath(word, what, writes);
  });
}

/** bundleFile for positionals and flags that take several (a repeatable flag given once is one string). */
export function bundleFiles(what: string, writes: readonly KindName[] = []): (v: unknown) => string[] | undefined {
  const one = bundleFile(what, writes);
  return kept((v) => (v === undefined ? undefined : ([] as unknown[]).concat(v).map(one)));
}

/**
 * Where a bundle is written (`export -o`, `merge -o`): a file, `bundle:FILE`, or
 * `-`. `-o oci:./out` made a folder `oci:.` holding a bundle named `out`: a
 * place of another kind is what import writes, and is said so.
 */
export function bundleOutput(flag: string): (v: unknown) => string | undefined {
  const file = path(flag);
  return kept((v) => {
    const text = file(v);
    // A name ending in '/' names a folder: writing a file over the name without it is not what was asked.
    if (text !== undefined && text !== '-' && text.endsWith('/')) {
      throw new FerryError('E_USAGE', `--${flag} ${JSON.stringify(text.slice(0, 200))} names a folder: it takes the bundle's file name`, {
        hint: `give a file in that folder, e.g. --${flag} ${text.slice(0, 200)}release.tar`,
        details: { flag: `--${flag}`, value: text.slice(0, 200) },
      });
    }
    const kind = text === undefined ? undefined : kindPrefix(text);
    if (text === undefined || kind === undefined) return text;
    if (kind === 'bundle') return bundlePath(text, `--${flag}`);
    throw new FerryError('E_USAGE', `--${flag} ${JSON.stringify(text.slice(0, 200))}: this writes a bundle file, not a place of kind ${kind}`, {
      hint: `write the bundle (-o B.tar), then: ferry ${kind === 'registry' ? `push B.tar --to ${text.slice(text.indexOf(':') + 1)}` : `import B.tar --to ${text.slice(0, 200)}`}; a file whose name starts like that is written ./${text.slice(0, 200)}`,
      details: { flag: `--${flag}`, value: text.slice(0, 200) },
    });
  });
}
