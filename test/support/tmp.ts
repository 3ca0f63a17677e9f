// Temporary directories for tests: each one is removed by its own cleanup() and,
// as a safety net for tests that crash before their afterAll, when the worker exits.
import { mkdtempSync, rmSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface TempDir {
  path: string;
  cleanup(): Promise<void>;
}

const pending = new Set<string>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // 'exit' handlers must be synchronous, hence rmSync.
  process.on('exit', () => {
    for (const p of pending) {
      try {
        rmSync(p, { recursive: true, force: true });
      } catch {
        // best effort: the OS tmp cleaner gets the rest
      }
    }
  });
}

export function makeTempDir(prefix = 'ferry-test-'): TempDir {
  installExitHook();
  const path = mkdtempSync(join(tmpdir(), prefix.endsWith('-') ? prefix : `${prefix}-`));
  pending.add(path);
  return {
    path,
    async cleanup() {
      pending.delete(path);
      await rm(path, { recursive: true, force: true });
    },
  };
}
