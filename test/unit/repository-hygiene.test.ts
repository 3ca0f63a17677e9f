// The tree itself: no merge left half-done, and no test output committed or left behind.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../support/cli.js';

const tracked = (): string[] => execFileSync('git', ['ls-files'], { cwd: REPO_ROOT, encoding: 'utf8' }).split('\n').filter(Boolean);

describe('repository hygiene', () => {
  it('no tracked text file holds a merge conflict marker', () => {
    const marked = tracked()
      .filter((f) => /\.(ts|mjs|js|json|md|yml|yaml)$|^\.ci\//.test(f))
      .filter((f) => /^(<{7}|>{7}) |^={7}$/m.test(readFileSync(`${REPO_ROOT}/${f}`, 'utf8')));
    expect(marked).toEqual([]);
  });

  it('nothing a test or a run writes is tracked at the top of the repository', () => {
    const top = new Set(tracked().map((f) => f.split('/')[0]!));
    for (const stray of ['blobs', 'index.json', 'oci-layout', 'docker', 'ferry-receipts', 'dist', 'release', 'bench-results']) expect(top.has(stray), stray).toBe(false);
  });
});
