import { readdir } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
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
    const pattern = globToRegExp(name);
    const entries = await readdir(dir).catch(() => [] as string[]);
    if (entries.includes(name)) {
      out.push(arg);
      continue;
    }
    const matches = entries.filter((e) => pattern.test(e)).sort();
    if (matches.length === 0) {
      throw new FerryError('E_NOT_FOUND', `${arg}: no file matches`, { hint: 'check the directory and the pattern (e.g. release.*.tar, or the .sha256 list)', details: { pattern: arg } });
    }
    out.push(...matches.map((m) => join(dir, m)));
  }
  return out;
}

/** A shell file-name pattern as an anchored RegExp; `*` and `?` do not match a leading dot, as in sh. */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = pattern.indexOf(']', i + 2);
      if (end < 0) {
        re += '\\[';
        continue;
      }
      let body = pattern.slice(i + 1, end);
      if (body.startsWith('!')) body = `^${body.slice(1)}`;
      re += `[${body.replace(/\\/g, '\\\\')}]`;
      i = end;
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(pattern.startsWith('.') ? `^${re}$` : `^(?!\\.)${re}$`);
}
