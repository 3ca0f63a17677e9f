import cliProgress from 'cli-progress';
import type { CopyObserver, CopyPhase } from '../copy/events.js';
import type { Descriptor } from '../oci/manifest.js';
import { formatBytes, type Output } from './output.js';

/**
 * Turns copy events into progress on stderr, in one of three forms:
 * - a bar on a terminal, fitted to its width (the least useful parts go first
 *   when it is narrow);
 * - plain lines elsewhere (CI logs, pipes): the phase, then a line every 5 s
 *   with percent and ETA, and a last one;
 * - JSON lines with `--progress json` (one object per event or tick), also
 *   beside `--json`, whose stdout document it never touches.
 * Only bytes that moved count as transferred: blobs the target already holds,
 * mounts and a delta's base are counted apart as skipped, so the rate is the
 * link's, not the dedup ratio's. Warnings and image failures always reach stderr.
 */

/** What one moment of a copy looks like, for every form. */
export interface ProgressView {
  verb: string;
  phase: CopyPhase | 'done';
  /** Bytes that went through the verifier. */
  moved: number;
  /** Bytes of blobs not sent: already there, mounted, or in a delta's base. */
  skipped: number;
  skippedBlobs: number;
  /** Every blob's bytes, as planned (moved + skipped when done). */
  total: number;
  blobsDone: number;
  blobs: number;
  images: number;
  /** Bytes per second over the last few seconds; 0 before any moved. */
  rate: number;
  /** Seconds left at that rate; undefined when not known yet. */
  eta: number | undefined;
  elapsed: number;
}

/** What the copy is doing, in the words of the command that runs it. */
function phaseLabel(verb: string, phase: ProgressView['phase']): string {
  switch (phase) {
    case 'planning': return 'planning';
    case 'blobs': return ({ export: 'fetching', push: 'uploading', verify: 'checking' } as Record<string, string>)[verb] ?? 'writing';
    case 'manifests': return 'manifests';
    case 'tags': return 'tagging';
    case 'done': return 'done';
  }
}

export function percentOf(v: ProgressView): number {
  if (v.total <= 0) return v.phase === 'done' ? 100 : 0;
  return Math.min(100, Math.floor(((v.moved + v.skipped) * 100) / v.total));
}

export function formatDuration(seconds: number | undefined): string {
  if (seconds === undefined || !Number.isFinite(seconds)) return '--';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

/** "31.1/64.9 MiB": the bytes that moved of those that will. */
function movedOfToMove(v: ProgressView): string {
  const toMove = Math.max(v.moved, v.total - v.skipped);
  const [a, ua] = split(formatBytes(v.moved));
  const [b, ub] = split(formatBytes(toMove));
  return ua === ub ? `${a}/${b} ${ub}` : `${a} ${ua}/${b} ${ub}`;
}

function split(text: string): [string, string] {
  const i = text.indexOf(' ');
  return [text.slice(0, i), text.slice(i + 1)];
}

/**
 * One bar line at most `columns - 1` wide (the last column is left free: some
 * terminals wrap on it). Parts are dropped least useful first — the bar
 * graphic, skipped bytes, the byte count, the blob count, the rate, the ETA,
 * the verb — and the phase and percent stay.
 */
export function renderBar(v: ProgressView, columns: number): string {
  const width = Math.max(10, columns - 1);
  // The verb goes last of all: the user just typed it.
  const full = `${v.verb} ${phaseLabel(v.verb, v.phase)}`;
  const label = full.length + 5 <= width ? full : phaseLabel(v.verb, v.phase);
  const percent = `${String(percentOf(v)).padStart(3)}%`;
  // In the order they are given up when the line is too narrow.
  const optional: { key: string; text: string }[] = [
    { key: 'skipped', text: v.skipped > 0 ? `${formatBytes(v.skipped)} skipped` : '' },
    { key: 'bytes', text: movedOfToMove(v) },
    { key: 'blobs', text: `${v.blobsDone}/${v.blobs} blobs` },
    { key: 'rate', text: `${formatBytes(Math.round(v.rate))}/s` },
    { key: 'eta', text: `ETA ${formatDuration(v.eta)}` },
  ].filter((p) => p.text !== '');
  const order = ['bytes', 'rate', 'eta', 'blobs', 'skipped'];
  const line = (parts: typeof optional, bar?: string) =>
    [label, ...(bar ? [bar] : []), percent, ...order.flatMap((k) => parts.filter((p) => p.key === k).map((p) => p.text))].join(' ');
  let kept = optional;
  while (kept.length > 0 && line(kept).length > width) kept = kept.slice(1);
  let text = line(kept);
  if (text.length > width) text = text.slice(0, width);
  // What is left goes to the bar graphic, if that leaves it room to mean something.
  const room = width - text.length - 3;
  if (room >= 10 && kept.length === optional.length) {
    const cells = Math.min(room, 40);
    const full = Math.round((percentOf(v) * cells) / 100);
    text = line(kept, `[${'█'.repeat(full)}${'░'.repeat(cells - full)}]`);
  }
  return text;
}

/** The plain line of a log: phase, percent, bytes, blobs, rate, ETA. */
export function renderPlain(v: ProgressView): string {
  const skipped = v.skipped > 0 ? `, ${formatBytes(v.skipped)} skipped (${v.skippedBlobs} blobs already there)` : '';
  if (v.phase === 'done') {
    return `${v.verb}: done 100%: ${formatBytes(v.moved)} moved${skipped}, ${v.blobsDone}/${v.blobs} blobs, ${formatBytes(Math.round(v.moved / Math.max(v.elapsed, 0.001)))}/s, ${formatDuration(v.elapsed)}`;
  }
  return `${v.verb}: ${phaseLabel(v.verb, v.phase)} ${percentOf(v)}%: ${movedOfToMove(v)}${skipped}, ${v.blobsDone}/${v.blobs} blobs, ${formatBytes(Math.round(v.rate))}/s, ETA ${formatDuration(v.eta)}`;
}

/** One JSON line (spec/cli-output.schema.json#/$defs/progressEvent). */
export function progressEvent(v: ProgressView): Record<string, unknown> {
  return {
    type: 'progress', command: v.verb, phase: v.phase,
    bytes: { done: v.moved, total: v.total }, skipped: { bytes: v.skipped, blobs: v.skippedBlobs },
    blobs: { done: v.blobsDone, total: v.blobs }, images: v.images,
    percent: percentOf(v), rate: Math.round(v.rate), eta: v.eta === undefined ? null : Math.round(v.eta), elapsed: Math.round(v.elapsed * 10) / 10,
  };
}

type Form = 'bar' | 'plain' | 'json' | 'none';

function formOf(out: Output): Form {
  switch (out.progress) {
    case 'none': return 'none';
    case 'json': return 'json';
    case 'plain': return 'plain';
    default:
      if (out.quiet || out.json) return 'none';
      return out.stderr.isTTY === true ? 'bar' : 'plain';
  }
}

/** The terminal's width: what it says, else $COLUMNS, else 80. */
function columnsOf(out: Output): number {
  const c = out.stderr.columns;
  if (c !== undefined && c > 0) return c;
  const env = Number(process.env.COLUMNS);
  return Number.isInteger(env) && env > 0 ? env : 80;
}

const PLAIN_EVERY_MS = 5000;
const JSON_EVERY_MS = 1000;
/** The rate is measured over this much of the recent past: fast to follow a link that changes, steady enough to read. */
const RATE_WINDOW_MS = 5000;

export interface ProgressOptions {
  /** The clock (tests give their own). */
  now?: () => number;
}

export interface Progress extends CopyObserver {
  /** The command succeeded: the last line says done. */
  done(): void;
  /** The command ends (after done(), or on an error: then the last line says where it stopped). */
  stop(): void;
}

export function progressObserver(out: Output, verb: string, opts: ProgressOptions = {}): Progress {
  const now = opts.now ?? Date.now;
  const form = formOf(out);
  let phase: ProgressView['phase'] = 'planning';
  let total = 0;
  let images = 0;
  let moved = 0;
  let blobs = 0;
  let blobsDone = 0;
  let started = now();
  let active = false;
  /** Destinations with per-repository blobs report a shared blob once per repository; the plan counts it once. */
  const finished = new Set<string>();
  /** Blobs counted as skipped, with their size: undone if bytes of one move after all (sent to a second repository). */
  const skipped = new Map<string, number>();
  let skippedBytes = 0;
  const samples: { t: number; moved: number }[] = [];
  let lastLine = 0;
  let bar: cliProgress.SingleBar | undefined;

  const rate = (t: number): number => {
    // Done: the whole run's average. Under way: the recent past, once there is a second of it.
    if (phase === 'done' || t - started < 1000) return moved / Math.max((t - started) / 1000, 0.001);
    while (samples.length > 1 && t - samples[1]!.t >= RATE_WINDOW_MS) samples.shift();
    const first = samples[0]!;
    return (moved - first.moved) / Math.max((t - first.t) / 1000, 0.001);
  };
  const view = (): ProgressView => {
    const t = now();
    const r = rate(t);
    const left = Math.max(0, total - moved - skippedBytes);
    return {
      verb, phase, moved, skipped: skippedBytes, skippedBlobs: skipped.size, total, blobsDone, blobs, images,
      rate: r, eta: phase === 'done' || (total > 0 && left === 0) ? 0 : r > 0 && total > 0 ? left / r : undefined, elapsed: (t - started) / 1000,
    };
  };
  const emitJson = () => out.stderr.write(`${JSON.stringify(progressEvent(view()))}\n`);
  const redraw = () => bar?.update(Math.min(moved + skippedBytes, total), {});
  const tick = () => {
    const t = now();
    if (form === 'bar') redraw();
    else if (form === 'plain' && t - lastLine >= PLAIN_EVERY_MS) {
      lastLine = t;
      out.stderr.write(`${renderPlain(view())}\n`);
    } else if (form === 'json' && t - lastLine >= JSON_EVERY_MS) {
      lastLine = t;
      emitJson();
    }
  };
  const stopBar = () => {
    if (!bar) return;
    redraw();
    bar.stop();
    bar = undefined;
  };
  const finish = (how: 'done' | 'stopped') => {
    if (!active) return;
    active = false;
    phase = how === 'done' ? 'done' : phase;
    stopBar();
    if (form === 'plain') out.stderr.write(`${how === 'done' ? renderPlain(view()) : `${verb}: stopped at ${renderPlain(view()).slice(verb.length + 2)}`}\n`);
    if (form === 'json') out.stderr.write(`${JSON.stringify({ ...progressEvent(view()), ...(how === 'stopped' ? { phase: 'stopped' } : {}) })}\n`);
  };

  return {
    phase(p) {
      phase = p;
      if (p === 'planning') {
        // A command may run several copies (the demo does): the one before ended well, or the command would have stopped.
        finish('done');
        phase = p;
        if (form === 'plain' || form === 'bar') out.stderr.write(`${verb}: planning: reading manifests\n`);
      } else if (p === 'tags' && form === 'plain') out.stderr.write(`${verb}: tagging ${images} images\n`);
      if (form === 'json') emitJson();
      else if (form === 'bar') redraw();
    },
    planned(t) {
      stopBar();
      total = t.bytes;
      blobs = t.blobs;
      images = t.images;
      moved = 0;
      blobsDone = 0;
      finished.clear();
      skipped.clear();
      skippedBytes = 0;
      started = now();
      lastLine = started;
      samples.length = 0;
      samples.push({ t: started, moved: 0 });
      active = true;
      if (form === 'plain') out.stderr.write(`${verb}: ${t.images} images, ${t.blobs} unique blobs, ${formatBytes(t.bytes)}\n`);
      if (form === 'json') emitJson();
      if (form === 'bar') {
        bar = new cliProgress.SingleBar({
          stream: out.stderr,
          // The whole line is ours, fitted to the terminal at every redraw (it may be resized).
          format: () => renderBar(view(), columnsOf(out)),
          hideCursor: true, clearOnComplete: false, fps: 5, linewrap: false,
        });
        bar.start(Math.max(1, total), 0);
      }
    },
    bytes(n, desc) {
      moved += n;
      const before = skipped.get(desc.digest);
      if (before !== undefined) {
        skipped.delete(desc.digest);
        skippedBytes -= before;
      }
      const t = now();
      if (samples.length === 0 || t - samples[samples.length - 1]!.t >= 100) samples.push({ t, moved });
      tick();
    },
    blobDone(desc: Descriptor, outcome) {
      if (finished.has(desc.digest)) return;
      finished.add(desc.digest);
      blobsDone++;
      if (outcome !== 'copied') {
        skipped.set(desc.digest, desc.size);
        skippedBytes += desc.size;
      }
      if (form === 'json') emitJson();
      else tick();
    },
    imageFailed(label, error) {
      stopBar();
      if (form === 'json') out.stderr.write(`${JSON.stringify({ type: 'imageFailed', command: verb, image: label, code: error.code, message: error.message })}\n`);
      else if (!out.json) out.stderr.write(`ferry: ${label}: ${error.message}\n`);
    },
    warning(message) {
      if (form === 'json') out.stderr.write(`${JSON.stringify({ type: 'warning', command: verb, message })}\n`);
      else out.warn(message);
    },
    done() {
      finish('done');
    },
    stop() {
      finish('stopped');
    },
  };
}
