// Temporary directories for tests: each one is removed by its own cleanup() and,
// as a safety net for tests that crash before their afterAll, when the worker exits.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
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

export interface TempDirOptions {
  /**
   * A path of lowercase letters, digits and `-` only (mkdtemp's suffix has capitals):
   * `podman pull oci:DIR:REF` names the image `localhost/DIR` and refuses a DIR with capitals.
   */
  lowercase?: boolean;
}

function lowercaseTempDir(prefix: string): string {
  if (prefix !== prefix.toLowerCase()) throw new Error(`makeTempDir: prefix ${prefix} is not lowercase`);
  for (;;) {
    const path = join(tmpdir(), `${prefix}${randomBytes(6).toString('hex')}`);
    try {
      mkdirSync(path, { mode: 0o700 });
      return path;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
  }
}

export function makeTempDir(prefix = 'ferry-test-', opts: TempDirOptions = {}): TempDir {
  installExitHook();
  const full = prefix.endsWith('-') ? prefix : `${prefix}-`;
  const path = opts.lowercase ? lowercaseTempDir(full) : mkdtempSync(join(tmpdir(), full));
  pending.add(path);
  return {
    path,
    async cleanup() {
      pending.delete(path);
      await rm(path, { recursive: true, force: true });
    },
  };
}
