import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

const WORKERS = Math.min(availableParallelism() + 1, 4);

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    setupFiles: ['test/support/per-file.ts'],
    // One temporary folder for the run, on a tmpfs when there is one; it must be empty at the end.
    globalSetup: ['test/support/run-tmp.ts'],
    // Integration tests start real registries, sshd and ferry processes, and wait on them:
    // one worker more than the cores keeps the cores busy (2 cores: 3 workers, 270-285 s
    // against 320 s with 2). All workers stay up: tinypool ending an idle one while the
    // run winds down raised 'Terminating worker thread'. A worker runs file after file
    // without reloading the modules (isolate: false; a fresh module graph per file cost
    // ~0.3 s of CPU each); what a file changes in the process is undone after it by
    // test/support/per-file.ts.
    pool: 'forks',
    poolOptions: { forks: { maxForks: WORKERS, minForks: WORKERS, isolate: false } },
    reporters: ['default'],
  },
});
