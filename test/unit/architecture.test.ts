import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

/**
 * Keeps the map of shared/ARCHITECTURE.md true: imports point only downward
 *   cli → app → copy → transports → oci | stream | fsys | net | store
 * and one transport never reaches into another's folder (shared pieces belong
 * in a lower layer). Fails with the offending file and import.
 */
const SRC = resolve(__dirname, '../../src');

const LEVEL: [prefix: string, level: number][] = [
  ['cli/', 5],
  ['app/', 4],
  ['delta/', 4],
  ['harbor/', 3],
  ['copy/', 3],
  ['serve/', 3],
  ['referrers/', 3],
  ['transports/', 2],
  ['store/', 1],
  ['net/', 1],
  ['stream/', 1],
  ['fsys/', 1],
  ['oci/', 1],
  ['', 0], // errors.ts, format.ts, version.ts
];

function levelOf(path: string): number {
  return LEVEL.find(([prefix]) => path.startsWith(prefix))![1];
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith('.ts') ? [p] : [];
  });
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+'(\.[^']+)'/gms)].map((m) => m[1]!);
}

describe('architecture', () => {
  const files = sourceFiles(SRC);

  it('finds the source tree', () => {
    expect(files.length).toBeGreaterThan(30);
  });

  it('imports only point downward, and transports do not reach into each other', () => {
    const violations: string[] = [];
    for (const file of files) {
      const from = relative(SRC, file);
      for (const spec of importsOf(file)) {
        const to = relative(SRC, resolve(dirname(file), spec)).replace(/\.js$/, '.ts');
        if (levelOf(to) > levelOf(from)) violations.push(`${from} imports upward: ${to}`);
        const [fa, fb] = from.split('/');
        const [ta, tb] = to.split('/');
        if (fa === 'transports' && ta === 'transports' && tb !== 'types.ts' && fb !== tb && fb?.endsWith('.ts') !== true) {
          violations.push(`${from} reaches into another transport: ${to}`);
        }
      }
    }
    expect(violations).toEqual([]);
  });
});
