// A real small file system for disk-full and read-only tests: a tmpfs mounted on a
// directory (needs root, as the test machines run), resized or remounted read-only
// on demand, unmounted by unmount() (and, as a safety net, when the process exits).
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';

const mounted = new Set<string>();
let hookInstalled = false;

function run(args: string[]): void {
  try {
    execFileSync('mount', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (e) {
    const stderr = (e as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
    throw new Error(`mount ${args.join(' ')} failed: ${stderr || (e as Error).message} (tmpfs tests need root)`);
  }
}

export interface Tmpfs {
  dir: string;
  /** `mount -o remount,size=…`: e.g. '64m' to free space for the rerun. */
  resize(size: string): void;
  readOnly(ro: boolean): void;
  unmount(): void;
}

export function mountTmpfs(dir: string, size: string): Tmpfs {
  if (!hookInstalled) {
    hookInstalled = true;
    process.on('exit', () => {
      for (const d of mounted) {
        try {
          execFileSync('umount', ['-l', d], { stdio: 'ignore' });
        } catch {
          // best effort
        }
      }
    });
  }
  mkdirSync(dir, { recursive: true });
  run(['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  mounted.add(dir);
  return {
    dir,
    resize: (s) => run(['-o', `remount,size=${s}`, dir]),
    readOnly: (ro) => run(['-o', `remount,${ro ? 'ro' : 'rw'}`, dir]),
    unmount() {
      if (!mounted.has(dir)) return;
      execFileSync('umount', [dir]);
      mounted.delete(dir);
    },
  };
}
