// Vitest globalSetup: one temporary folder for the whole run, on a tmpfs when the machine has one.
//
// Why a tmpfs: ferry fsyncs every file and folder it writes (temp name + fsync + rename), and so do
// docker-registry and the other peers. On this machine's disk those fsyncs were a third of the
// suite's CPU time (sys) and more of its wall time; on /dev/shm the same calls are made, in the
// same order, and return at once. What a test proves about fsync is that it is called and that a
// failure is reported, not that the disk kept the bytes: that no test can see. Tests of a full or
// read-only disk mount their own filesystems and are unchanged.
//
// Why one folder: every temporary path of the run (test/support/tmp.ts, the peers started by
// tests, ferry's own children) lives below it, through TMPDIR, which the workers inherit. At the
// end it must be empty: what a test left behind fails the run, naming it, instead of piling up in
// /tmp unseen. The folder is removed either way.
import { randomBytes } from 'node:crypto';
import { accessSync, chmodSync, constants, mkdirSync, readdirSync, rmSync, statfsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const TMPFS_MAGIC = 0x01021994;

/** /dev/shm when it is a writable tmpfs, else the system's temporary folder. */
function base(): string {
  try {
    accessSync('/dev/shm', constants.W_OK);
    if (statfsSync('/dev/shm').type === TMPFS_MAGIC) return '/dev/shm';
  } catch {
    // no /dev/shm here: the system's temporary folder does
  }
  return tmpdir();
}

export default function setup(): () => void {
  // Lowercase only: podman names an image after its oci: folder and refuses capitals (tmp.ts).
  // Short: podman refuses a --runroot over 50 characters, and a unix socket's path has 108 at most.
  const root = join(base(), `ferry-${randomBytes(3).toString('hex')}`);
  mkdirSync(root);
  // As /tmp is: a peer a test runs as another user (target-owner's registry) passes through and makes its own files.
  chmodSync(root, 0o1777);
  const before = process.env['TMPDIR'];
  process.env['TMPDIR'] = root;
  return () => {
    if (before === undefined) delete process.env['TMPDIR'];
    else process.env['TMPDIR'] = before;
    const left = readdirSync(root);
    rmSync(root, { recursive: true, force: true });
    if (left.length === 0) return;
    // Not a throw: vitest would then skip its own clean-up (its temporary folders stayed in /tmp).
    console.error(`\nFAIL the tests left ${left.length} temporary path(s) behind (removed now): ${left.slice(0, 20).join(', ')}`);
    process.exitCode = 1;
  };
}
