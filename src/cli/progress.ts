import cliProgress from 'cli-progress';
import type { CopyObserver } from '../copy/events.js';
import { formatBytes, type Output } from './output.js';

/**
 * Turns copy events into progress: one bar with bytes, rate and ETA on a
 * terminal; a plain line every few seconds elsewhere (CI logs, pipes); nothing
 * with --quiet or --json. Warnings and image failures always reach stderr.
 */
export function progressObserver(out: Output, verb: string): CopyObserver & { stop(): void } {
  const enabled = !out.quiet && !out.json;
  const tty = enabled && out.stderr.isTTY === true;
  let total = 0;
  let done = 0;
  let blobs = 0;
  let blobsDone = 0;
  /** Destinations with per-repository blobs report a shared blob once per repository; the plan counts it once. */
  const finished = new Set<string>();
  let lastLine = 0;
  let started = Date.now();
  let bar: cliProgress.SingleBar | undefined;

  const plainLine = (force = false) => {
    const now = Date.now();
    if (!enabled || tty || (!force && now - lastLine < 5000)) return;
    lastLine = now;
    const secs = Math.max(0.001, (now - started) / 1000);
    out.stderr.write(`${verb}: ${formatBytes(done)} of ${formatBytes(total)} (${blobsDone}/${blobs} blobs, ${formatBytes(Math.round(done / secs))}/s)\n`);
  };

  return {
    planned(t) {
      // A command may run several copies (the demo does): each plan starts the count afresh.
      bar?.stop();
      bar = undefined;
      total = t.bytes;
      blobs = t.blobs;
      done = 0;
      blobsDone = 0;
      finished.clear();
      lastLine = Date.now();
      started = lastLine;
      if (tty) {
        bar = new cliProgress.SingleBar({
          stream: out.stderr,
          format: `${verb} [{bar}] {percentage}% | {value_h}/{total_h} | {rate}/s | ETA {eta_formatted} | {blobs} blobs`,
          hideCursor: true, clearOnComplete: false, etaBuffer: 50, fps: 5,
        }, cliProgress.Presets.shades_classic);
        bar.start(total, 0, { value_h: formatBytes(0), total_h: formatBytes(total), rate: formatBytes(0), blobs: `0/${blobs}` });
      } else if (enabled) {
        out.stderr.write(`${verb}: ${t.images} images, ${t.blobs} unique blobs, ${formatBytes(t.bytes)}\n`);
      }
    },
    bytes(n) {
      done += n;
      if (bar) {
        const secs = Math.max(0.001, (Date.now() - started) / 1000);
        bar.update(Math.min(done, total), { value_h: formatBytes(done), total_h: formatBytes(total), rate: formatBytes(Math.round(done / secs)), blobs: `${blobsDone}/${blobs}` });
      } else plainLine();
    },
    blobDone(desc, outcome) {
      if (finished.has(desc.digest)) return;
      finished.add(desc.digest);
      blobsDone++;
      // Skipped and mounted blobs count as done bytes too, so the bar reaches 100 %.
      if (outcome !== 'copied') done += desc.size;
      if (bar) bar.update(Math.min(done, total), { value_h: formatBytes(done), total_h: formatBytes(total), blobs: `${blobsDone}/${blobs}` });
    },
    imageFailed(label, error) {
      bar?.stop();
      bar = undefined;
      if (!out.json) out.stderr.write(`ferry: ${label}: ${error.message}\n`);
    },
    warning(message) {
      out.warn(message);
    },
    stop() {
      if (bar) {
        bar.stop();
        bar = undefined;
      } else if (total > 0) plainLine(true);
      total = 0;
    },
  };
}
