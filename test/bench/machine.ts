// What this machine can do at best, measured in the same run as the benchmark so the
// figures are comparable: one core's sha256, sequential disk write (fsync'd) and read
// on the filesystem the outputs go to, and zstd level-3 compression through zstd-napi.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { cpus } from 'node:os';
import { Compressor } from 'zstd-napi';
import { fillText, Rng } from '../support/prng.js';

export interface MachineLimits {
  cpuModel: string;
  cores: number;
  /** bytes/s of one core hashing sha256 in node:crypto. */
  sha256Bps: number;
  /** bytes/s writing sequentially, fsync included. */
  diskWriteBps: number;
  /** bytes/s reading the file back, page cache bypassed when the filesystem allows O_DIRECT. */
  diskReadBps: number;
  diskReadMethod: 'O_DIRECT (dd)' | 'page cache';
  /** bytes/s of input through zstd level 3 (text-like and random halves). */
  zstd3Bps: number;
}

const MiB = 1024 * 1024;

function seconds(fn: () => void): number {
  const t0 = process.hrtime.bigint();
  fn();
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

function sha256Throughput(bytes: number): number {
  const buf = new Rng(1).bytes(bytes);
  createHash('sha256').update(buf.subarray(0, 4 * MiB)).digest(); // warm up
  return bytes / seconds(() => createHash('sha256').update(buf).digest());
}

function diskWrite(file: string, bytes: number): number {
  const chunk = new Rng(2).bytes(4 * MiB);
  return bytes / seconds(() => {
    const fd = openSync(file, 'w');
    try {
      for (let done = 0; done < bytes; done += chunk.length) writeSync(fd, chunk);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
}

function diskRead(file: string, bytes: number): { bps: number; method: MachineLimits['diskReadMethod'] } {
  // dd with iflag=direct reads past the page cache the file is still in after writing.
  let ok = false;
  const direct = seconds(() => {
    ok = spawnSync('dd', [`if=${file}`, 'of=/dev/null', 'bs=4M', 'iflag=direct'], { stdio: 'ignore' }).status === 0;
  });
  if (ok) return { bps: bytes / direct, method: 'O_DIRECT (dd)' };
  const buf = Buffer.allocUnsafe(4 * MiB);
  const t = seconds(() => {
    const fd = openSync(file, 'r');
    try {
      while (readSync(fd, buf, 0, buf.length, null) > 0);
    } finally {
      closeSync(fd);
    }
  });
  return { bps: bytes / t, method: 'page cache' };
}

function zstdThroughput(bytes: number): number {
  const text = Buffer.alloc(bytes / 2);
  fillText(new Rng(3), text);
  const data = Buffer.concat([text, new Rng(4).bytes(bytes / 2)]);
  const c = new Compressor();
  c.setParameters({ compressionLevel: 3 });
  return bytes / seconds(() => {
    for (let off = 0; off < data.length; off += 16 * MiB) c.compress(data.subarray(off, off + 16 * MiB));
  });
}

/**
 * The bare verify loop of issue #16: one `createReadStream` of the file through one
 * sha256, on one thread, in a process of its own (node started and ended as ferry's
 * are), so its wall time compares with a `ferry verify` run under the same runner.
 * `node BARE_HASH_LOOP_ARGS… FILE` prints the hex digest.
 */
export const BARE_HASH_LOOP_ARGS = [
  '--input-type=module', '-e',
  "import { createReadStream } from 'node:fs'; import { createHash } from 'node:crypto'; "
  + "const h = createHash('sha256'); for await (const c of createReadStream(process.argv[1])) h.update(c); console.log(h.digest('hex'));",
];

export function measureMachine(scratchDir: string, opts: { hashBytes?: number; diskBytes?: number; zstdBytes?: number } = {}): MachineLimits {
  const file = join(scratchDir, 'ferry-bench-disk.tmp');
  const diskBytes = opts.diskBytes ?? 512 * MiB;
  try {
    const diskWriteBps = diskWrite(file, diskBytes);
    const read = diskRead(file, diskBytes);
    return {
      cpuModel: cpus()[0]?.model ?? 'unknown',
      cores: cpus().length,
      sha256Bps: sha256Throughput(opts.hashBytes ?? 256 * MiB),
      diskWriteBps,
      diskReadBps: read.bps,
      diskReadMethod: read.method,
      zstd3Bps: zstdThroughput(opts.zstdBytes ?? 128 * MiB),
    };
  } finally {
    rmSync(file, { force: true });
  }
}

/**
 * The machine is shared, so one measurement can land in someone else's busy minute:
 * the limits are the best of the measurements taken during the run.
 */
export function bestOf(all: MachineLimits[]): MachineLimits {
  const first = all[0];
  if (first === undefined) throw new Error('bestOf: no measurements');
  const max = (k: 'sha256Bps' | 'diskWriteBps' | 'diskReadBps' | 'zstd3Bps'): number => Math.max(...all.map((m) => m[k]));
  return { ...first, sha256Bps: max('sha256Bps'), diskWriteBps: max('diskWriteBps'), diskReadBps: max('diskReadBps'), zstd3Bps: max('zstd3Bps') };
}
