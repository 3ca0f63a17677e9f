import { readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import picomatch from 'picomatch';
import { FerryError } from '../errors.js';

const WILDCARD = /[*?[]/;

/**
 * Expands `*`, `?` and `[…]` in the file-name part of each argument, in
 * sorted order, the way a shell would: for arguments that reached ferry
 * quoted (scripts, `ssh host "ferry import 'rel.*.tar' …"`, non-POSIX shells).
 * An argument without wildcards, or naming a file that exists as written, is
 * kept as it is. A pattern that matches nothing is an error rather than a
 * literal name, so a typo says what it is.
 */
export async function expandFileGlobs(args: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const arg of args) {
    const name = basename(arg);
    if (!WILDCARD.test(name) || WILDCARD.test(dirname(arg))) {
      out.push(arg);
      continue;
    }
    const dir = dirname(arg);
    const matches = fileNameMatcher(name);
    const entries = await readdir(dir).catch(() => [] as string[]);
    if (entries.includes(name)) {
      out.push(arg);
      continue;
    }
    const found = entries.filter(matches).sort();
    if (found.length === 0) {
      throw new FerryError('E_NOT_FOUND', `${arg}: no file matches`, { hint: 'check the directory and the pattern (e.g. release.*.tar, or the .sha256 list)', details: { pattern: arg } });
    }
    for (const m of found) out.push(join(dir, m));
  }
  return out;
}

/**
 * A shell file-name pattern (`*`, `?`, `[…]`, `[!…]`, POSIX classes) as a
 * matcher; `*` and `?` do not match a leading dot unless the pattern starts
 * with one, as in sh. Braces, extglobs and a leading `!` are not sh filename
 * expansion: they are plain characters here.
 */
export function fileNameMatcher(pattern: string): (name: string) => boolean {
  const match = picomatch(literalParens(pattern), { posix: true, nobrace: true, noextglob: true, nonegate: true });
  // One argument only: picomatch's matcher takes a second (returnObject), which Array#filter would fill with the index.
  return (name) => match(name);
}

/**
 * A pattern over names that are not paths, image references and host names:
 * `*` is any run of characters, `/` and dots included, `?` any one character
 * but `/`; everything else, brackets included, stands for itself.
 */
export function nameMatcher(pattern: string, opts: { nocase?: boolean } = {}): (text: string) => boolean {
  const match = picomatch(literalParens(pattern), { bash: true, dot: true, nobrace: true, noextglob: true, nonegate: true, nobracket: true, nocase: opts.nocase === true });
  return (text) => match(text);
}

/** picomatch reads ( ) as regex groups even with extglobs off; in these patterns they are plain characters. */
function literalParens(pattern: string): string {
  return pattern.replace(/[()]/g, '\\$&');
}
