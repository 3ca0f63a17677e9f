// The test folder walker: the entries under a folder whose names match, for checks that a run left nothing behind.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Paths of the entries under `dir` (at any depth) whose name matches
 * `pattern`; a matching folder is listed, not entered. A folder that cannot
 * be listed (gone meanwhile, no permission) holds nothing this can report.
 */
export function entriesUnder(dir: string, pattern: RegExp): string[] {
  const out: string[] = [];
  const visit = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (pattern.test(e.name)) out.push(join(d, e.name));
      else if (e.isDirectory()) visit(join(d, e.name));
    }
  };
  visit(dir);
  return out;
}
