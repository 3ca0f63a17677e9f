import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { heapModeFor, MANY_IMAGES } from '../../../src/cli/heap-mode.js';
import { makeTempDir } from '../../support/tmp.js';

const tmp = makeTempDir('ferry-heap-mode-');
afterAll(async () => tmp.cleanup());

function list(name: string, images: number): string {
  const path = join(tmp.path, name);
  writeFileSync(path, `# a release\n\n${Array.from({ length: images }, (_, i) => `registry.local/app-${i}:1.0`).join('\n')}\n`);
  return path;
}

describe('the heap is sized for memory unless the run is known to be small', () => {
  it('an export of a short list (and arguments) from registries keeps V8 sizing for speed', () => {
    expect(heapModeFor(['export', '-f', list('short.list', 10), '-o', 'b.tar'])).toBe('speed');
    expect(heapModeFor(['--json', 'export', `--file=${list('short2.list', 3)}`, 'nginx:1.25', '-o', 'b.tar'])).toBe('speed');
  });

  it('a long list, --from, a list on stdin or one that cannot be read, and every other command: sized for memory', () => {
    expect(heapModeFor(['export', '-f', list('long.list', MANY_IMAGES), '-o', 'b.tar'])).toBe('size');
    expect(heapModeFor(['export', '--from', 'bundle:b.tar', '-o', 'c.tar'])).toBe('size');
    expect(heapModeFor(['export', '-f', '-', '-o', 'b.tar'])).toBe('size');
    expect(heapModeFor(['export', '-f', join(tmp.path, 'missing.list'), '-o', 'b.tar'])).toBe('size');
    for (const command of ['verify', 'import', 'push', 'inspect', 'serve', 'diff']) expect(heapModeFor([command, 'b.tar'])).toBe('size');
  });
});
