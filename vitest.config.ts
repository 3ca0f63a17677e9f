import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    setupFiles: ['test/support/per-file.ts'],
    // Integration tests start real registries and sshd; two cores, so two files at a time.
    // A worker runs file after file without reloading the modules (isolate: false): a
    // fresh module graph per file cost ~0.3 s of CPU each. Test modules that keep state
    // between tests clear it per file (test/support/per-file.ts).
    pool: 'forks',
    poolOptions: { forks: { maxForks: 3, minForks: 3, isolate: false } },
    reporters: ['default'],
  },
});
