import type { IncomingMessage } from 'node:http';
import { FerryError } from '../errors.js';
import { parseSize } from '../size.js';
import { formatBytes } from '../format.js';

/**
 * The minimum-throughput rule for response bodies. The idle timeout catches a
 * server that goes silent; a server that sends one byte a second is never
 * silent and would hold a transfer (and the whole run) for days. Here a body
 * that brings fewer than `bytesPerSecond × window` bytes over a sliding window
 * fails with E_NETWORK (ETIMEDOUT), which the engine retries (resuming).
 *
 * Only time the reader is waiting on the network counts: while ferry's own
 * side holds the stream back (a slow disk or a slow target pushing back), the
 * window stands still, so a slow destination is never blamed on the source.
 */

/**
 * The default: 1 KiB/s, averaged over the idle timeout (120 s unless raised).
 * A contended geostationary satellite link shared by four transfers (64 kbit/s,
 * 2 KiB/s each) passes; at less than this a 100 MB layer would take more than a day.
 */
export const DEFAULT_MIN_BYTES_PER_SECOND = 1024;

export interface MinRate {
  /** 0 turns the rule off. */
  bytesPerSecond: number;
  windowMs: number;
}

/**
 * `--min-rate` / FERRY_MIN_RATE / config `min-rate`: bytes per second with an
 * optional binary unit (`512`, `1K`, `8KiB`, `1.5M`, `2MB/s`); `0` turns the
 * rule off. Anything else is E_USAGE before any connection is made.
 */
export function parseMinRate(value: unknown, shown = '--min-rate'): number {
  // A rate is a size a second, read as every size is (src/size.ts: MB decimal, MiB/M binary); 0 turns the rule off.
  const text = String(value).trim().replace(/\/s$/i, '');
  if (/^0+(\.0+)?$/.test(text)) return 0;
  return parseSize(text, shown).bytes;
}

export function describeRate(bytesPerSecond: number): string {
  return `${formatBytes(bytesPerSecond)}/s`;
}

/**
 * Watches a response body and calls `fail` once when a full window of waiting
 * brought less than the rule asks. Returns a function that stops watching; it
 * also stops by itself when the body ends or closes.
 */
export function watchThroughput(res: IncomingMessage, rule: MinRate, fail: (error: FerryError) => void, host: string): () => void {
  if (rule.bytesPerSecond <= 0 || rule.windowMs <= 0) return () => undefined;
  const need = (rule.bytesPerSecond * rule.windowMs) / 1000;
  let received = 0;
  /** Waiting time before the current stretch, and when the current one began (undefined while ferry's side pushes back). */
  let waitedMs = 0;
  let waitingSince: number | undefined = performance.now();
  const waited = (): number => waitedMs + (waitingSince === undefined ? 0 : performance.now() - waitingSince);
  /** [waiting ms, bytes received] taken at each tick; the oldest one still a window away is the window's start. */
  let samples: Array<[number, number]> = [[0, 0]];

  // Node's HTTP parser pushes body bytes into the message; push() answering false means the buffer is full and
  // the socket is paused — ferry's side is the slow one — until the reader asks again (_read).
  const push = res.push.bind(res);
  res.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk !== null && chunk !== undefined) received += (chunk as Buffer).length;
    const more = push(chunk, encoding);
    if (!more && waitingSince !== undefined) {
      waitedMs += performance.now() - waitingSince;
      waitingSince = undefined;
    }
    return more;
  };
  const read = res._read.bind(res);
  res._read = (size: number): void => {
    waitingSince ??= performance.now();
    read(size);
  };

  const tick = (): void => {
    const now = waited();
    // While ferry's side pushes back the clock stands still: one sample for that moment is enough.
    if (now > samples[samples.length - 1]![0]) samples.push([now, received]);
    let start = -1;
    for (let i = 0; i < samples.length && samples[i]![0] <= now - rule.windowMs; i++) start = i;
    if (start < 0) return;
    const got = received - samples[start]![1];
    samples = samples.slice(start);
    // Nothing at all is silence, the idle timeout's to report ("no data for N s"), which it does as precisely.
    if (got >= need || got === 0) return;
    stop();
    fail(new FerryError('E_NETWORK', `${host}: less than ${describeRate(rule.bytesPerSecond)} over ${rule.windowMs / 1000} s (${got} bytes)`, {
      hint: 'the registry or the network is too slow, or trickles on purpose; check the link to the registry. On a slow link, lower --min-rate (0 turns the rule off) or raise --idle-timeout (the window it is averaged over)',
      details: { host, errno: 'ETIMEDOUT', minBytesPerSecond: rule.bytesPerSecond, windowSeconds: rule.windowMs / 1000, received: got },
    }));
  };
  const timer = setInterval(tick, Math.max(50, Math.min(1000, rule.windowMs / 10)));
  timer.unref();
  const stop = (): void => {
    clearInterval(timer);
    res.off('end', stop);
    res.off('close', stop);
  };
  res.once('end', stop);
  res.once('close', stop);
  return stop;
}
