// `vite-node test/bench/machine-only.ts -- DIR [TIMES] [DISK_MIB]`: the machine's limits alone (machine.ts),
// measured TIMES times in DIR, one line each: to see whether the figures hold still between runs
// without running the benchmark.
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { measureMachine } from './machine.js';

const [dir, times = '5', diskMiB = '256'] = process.argv.slice(2).filter((a) => a !== '--');
if (dir === undefined) throw new Error('usage: machine-only.ts DIR [TIMES] [DISK_MIB]');
const work = mkdtempSync(join(dir, 'ferry-machine-'));
const mbs = (bps: number): string => `${(bps / 1e6).toFixed(0)} MB/s`;
try {
  for (let i = 0; i < Number(times); i++) {
    const m = measureMachine(work, { diskBytes: Number(diskMiB) * 2 ** 20 });
    console.log(`${i + 1}: write ${mbs(m.diskWriteBps)} (${m.diskWriteMethod}; runs ${m.diskWriteRuns.map((r) => (r / 1e6).toFixed(0)).join(', ')}), read ${mbs(m.diskReadBps)} (${m.diskReadMethod}), sha256 ${mbs(m.sha256Bps)}, zstd-3 ${mbs(m.zstd3Bps)}`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
