import cliProgress from 'cli-progress';
import type { CopyObserver, CopyPhase } from '../copy/events.js';
import type { Descriptor } from '../oci/manifest.js';
import { formatBytes, type Output } from './output.js';

/**
 * Progress on stderr for copies (fed by the engine's events) and for `ferry
 * send` (its file events), in one of three forms:
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

/** What one moment of a transfer looks like, for every form. */
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
  /** What the items are called in lines for people: blobs (a copy) or files (send). */
  unit?: string;
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
    case 'blobs': return ({ export: 'fetching', push: 'uploading', send: 'uploading', verify: 'checking' } as Record<string, string>)[verb] ?? 'writing';
    case 'manifests': return 'manifests';
    case 'tags': return verb === 'verify' ? 'checking' : 'tagging';
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
    { key: 'blobs', text: `${v.blobsDone}/${v.blobs} ${v.unit ?? 'blobs'}` },
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
  const unit = v.unit ?? 'blobs';
  const skipped = v.skipped > 0 ? `, ${formatBytes(v.skipped)} skipped (${v.skippedBlobs} ${unit} already there)` : '';
  if (v.phase === 'done') {
    return `${v.verb}: done 100%: ${formatBytes(v.moved)} ${v.verb === 'verify' ? 'checked' : 'moved'}${skipped}, ${v.blobsDone}/${v.blobs} ${unit}, ${formatBytes(Math.round(v.moved / Math.max(v.elapsed, 0.001)))}/s, ${formatDuration(v.elapsed)}`;
  }
  return `${v.verb}: ${phaseLabel(v.verb, v.phase)} ${percentOf(v)}%: ${movedOfToMove(v)}${skipped}, ${v.blobsDone}/${v.blobs} ${unit}, ${formatBytes(Math.round(v.rate))}/s, ETA ${formatDuration(v.eta)}`;
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

/**
 * The counts of one transfer and how they are shown: what every command with
 * progress shares. Items are blobs (a copy) or files (send), each known by a
 * key; bytes of an item that was first counted as skipped move it to moved.
 */
export class ProgressTracker {
  private readonly now: () => number;
  private readonly form: Form;
  private phase: ProgressView['phase'] = 'planning';
  private total = 0;
  private images = 0;
  private moved = 0;
  private items = 0;
  private itemsDone = 0;
  private started: number;
  private active = false;
  private readonly finished = new Set<string>();
  private readonly skipped = new Map<string, number>();
  private skippedBytes = 0;
  private readonly samples: { t: number; moved: number }[] = [];
  private lastLine = 0;
  private bar: cliProgress.SingleBar | undefined;
  private unit = 'blobs';

  constructor(private readonly out: Output, private readonly verb: string, opts: ProgressOptions = {}) {
    this.now = opts.now ?? Date.now;
    this.form = formOf(out);
    this.started = this.now();
  }

  /** A new phase; `planning` starts a new transfer (a command may run several: the demo does). */
  setPhase(p: CopyPhase): void {
    if (p === 'planning') {
      // The transfer before ended well, or the command would have stopped.
      this.finish('done');
      this.phase = p;
      if (this.form === 'plain' || this.form === 'bar') this.out.stderr.write(`${this.verb}: planning: reading manifests\n`);
    } else {
      this.phase = p;
      // verify writes nothing: it has no tags to set, so it does not say it sets them.
      if (p === 'tags' && this.form === 'plain' && this.verb !== 'verify') this.out.stderr.write(`${this.verb}: tagging ${this.images} images\n`);
    }
    if (this.form === 'json') this.emitJson();
    else if (this.form === 'bar') this.redraw();
  }

  /** A step that moves no bytes, as a line in a log (a terminal's bar shows the counts instead; JSON lines have no place for it). */
  say(line: string): void {
    if (this.form === 'plain') this.out.info(line);
  }

  /** The transfer is planned: this many items and bytes in all (what is skipped included). */
  planned(t: { images: number; items: number; bytes: number; what: string; unit?: string }): void {
    this.stopBar();
    this.unit = t.unit ?? 'blobs';
    this.total = t.bytes;
    this.items = t.items;
    this.images = t.images;
    this.moved = 0;
    this.itemsDone = 0;
    this.finished.clear();
    this.skipped.clear();
    this.skippedBytes = 0;
    this.started = this.now();
    this.lastLine = this.started;
    this.samples.length = 0;
    this.samples.push({ t: this.started, moved: 0 });
    this.active = true;
    if (this.form === 'plain') this.out.stderr.write(`${this.verb}: ${t.what}, ${formatBytes(t.bytes)}\n`);
    if (this.form === 'json') this.emitJson();
    if (this.form === 'bar') {
      this.bar = new cliProgress.SingleBar({
        stream: this.out.stderr,
        // The whole line is ours, fitted to the terminal at every redraw (it may be resized).
        format: () => renderBar(this.view(), columnsOf(this.out)),
        hideCursor: true, clearOnComplete: false, fps: 5, linewrap: false,
      });
      this.bar.start(Math.max(1, this.total), 0);
    }
  }

  /** `n` bytes of item `key` moved. */
  bytes(n: number, key: string): void {
    this.moved += n;
    const before = this.skipped.get(key);
    if (before !== undefined) {
      this.skipped.delete(key);
      this.skippedBytes -= before;
    }
    const t = this.now();
    if (this.samples.length === 0 || t - this.samples[this.samples.length - 1]!.t >= 100) this.samples.push({ t, moved: this.moved });
    this.tick();
  }

  /** Bytes of item `key` that need not move (already at the destination); more may move later. */
  skip(key: string, size: number): void {
    this.skipped.set(key, (this.skipped.get(key) ?? 0) + size);
    this.skippedBytes += size;
  }

  /** Item `key` is finished (counted once, however many destinations it went to). */
  itemDone(key: string, skippedSize?: number): void {
    if (this.finished.has(key)) return;
    this.finished.add(key);
    this.itemsDone++;
    if (skippedSize !== undefined) this.skip(key, skippedSize);
    if (this.form === 'json') this.emitJson();
    else this.tick();
  }

  /** A line that is not progress (a failed image, a warning); `endBar`: the bar stops first (a failure ends it). */
  note(json: Record<string, unknown>, human: () => void, endBar = false): void {
    if (this.form === 'json') {
      this.out.stderr.write(`${JSON.stringify({ ...json, command: this.verb })}\n`);
      return;
    }
    if (endBar) this.stopBar();
    human();
  }

  finish(how: 'done' | 'stopped'): void {
    if (!this.active) return;
    this.active = false;
    if (how === 'done') this.phase = 'done';
    this.stopBar();
    if (this.form === 'plain') this.out.stderr.write(`${how === 'done' ? renderPlain(this.view()) : `${this.verb}: stopped at ${renderPlain(this.view()).slice(this.verb.length + 2)}`}\n`);
    if (this.form === 'json') this.out.stderr.write(`${JSON.stringify({ ...progressEvent(this.view()), ...(how === 'stopped' ? { phase: 'stopped' } : {}) })}\n`);
  }

  view(): ProgressView {
    const t = this.now();
    const r = this.rate(t);
    const left = Math.max(0, this.total - this.moved - this.skippedBytes);
    return {
      verb: this.verb, phase: this.phase, moved: this.moved, skipped: this.skippedBytes, skippedBlobs: this.skipped.size, total: this.total,
      blobsDone: this.itemsDone, blobs: this.items, unit: this.unit, images: this.images, rate: r,
      eta: this.phase === 'done' || (this.total > 0 && left === 0) ? 0 : r > 0 && this.total > 0 ? left / r : undefined,
      elapsed: (t - this.started) / 1000,
    };
  }

  private rate(t: number): number {
    // Done: the whole run's average. Under way: the recent past, once there is a second of it.
    // No sample yet (a view asked for before the plan is known, late under load): the average too.
    const average = this.moved / Math.max((t - this.started) / 1000, 0.001);
    if (this.phase === 'done' || t - this.started < 1000 || this.samples.length === 0) return average;
    while (this.samples.length > 1 && t - this.samples[1]!.t >= RATE_WINDOW_MS) this.samples.shift();
    const first = this.samples[0]!;
    return (this.moved - first.moved) / Math.max((t - first.t) / 1000, 0.001);
  }

  private emitJson(): void {
    this.out.stderr.write(`${JSON.stringify(progressEvent(this.view()))}\n`);
  }

  private redraw(): void {
    this.bar?.update(Math.min(this.moved + this.skippedBytes, this.total), {});
  }

  private tick(): void {
    const t = this.now();
    if (this.form === 'bar') this.redraw();
    else if (this.form === 'plain' && t - this.lastLine >= PLAIN_EVERY_MS) {
      this.lastLine = t;
      this.out.stderr.write(`${renderPlain(this.view())}\n`);
    } else if (this.form === 'json' && t - this.lastLine >= JSON_EVERY_MS) {
      this.lastLine = t;
      this.emitJson();
    }
  }

  private stopBar(): void {
    if (!this.bar) return;
    this.redraw();
    this.bar.stop();
    this.bar = undefined;
  }
}

/** Progress of a copy (export, import, push, verify, merge, demo), fed by the engine's events. */
export function progressObserver(out: Output, verb: string, opts: ProgressOptions = {}): Progress {
  const p = new ProgressTracker(out, verb, opts);
  return {
    phase: (phase) => p.setPhase(phase),
    planned: (t) => p.planned({ images: t.images, items: t.blobs, bytes: t.bytes, what: `${t.images} images, ${t.blobs} unique blobs` }),
    bytes: (n, desc: Descriptor) => p.bytes(n, desc.digest),
    blobDone: (desc, outcome) => p.itemDone(desc.digest, outcome === 'copied' ? undefined : desc.size),
    imageFailed: (label, error) => p.note({ type: 'imageFailed', image: label, code: error.code, message: error.message }, () => {
      if (!out.json) out.stderr.write(`ferry: ${label}: ${error.message}\n`);
    }, true),
    warning: (message) => p.note({ type: 'warning', message }, () => out.warn(message)),
    done: () => p.finish('done'),
    stop: () => p.finish('stopped'),
  };
}
