// Turns measured runs into figures: median and min–max per case, ratios ferry/skopeo,
// the targets beside what was measured (reported, never asserted), and the
// Markdown the lead pastes into the issue notes.
import type { Measured } from './runner.js';

export interface Sample extends Measured {
  /** Bytes written (bundle, directory tree, archives), when the case produces any. */
  bytes?: number;
}

export interface Case {
  id: string;
  title: string;
  /** `node`: the bare loops the issue compares with (machine.ts). */
  tool: 'ferry' | 'skopeo' | 'node';
  samples: Sample[];
  /** Bytes the process moved, for throughput (e.g. the bundle's size for verify). */
  throughputBytes?: number;
  /** The machine figures that bound this case (names in the `limits` given to statsOf); the slowest binds. */
  limits?: string[];
  note?: string;
}

export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(values: number[]): Spread {
  const v = [...values].sort((a, b) => a - b);
  if (v.length === 0) return { median: NaN, min: NaN, max: NaN };
  const mid = Math.floor(v.length / 2);
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]! };
}

export interface CaseStats {
  id: string;
  title: string;
  tool: string;
  runs: number;
  wallS: Spread;
  cpuS: Spread;
  peakRssBytes: Spread;
  /** Bytes the process tree wrote to storage (GNU time %O). */
  writtenBytes: Spread;
  bytes?: Spread;
  throughputBps?: number;
  limit?: { name: string; bps: number; fraction: number };
  note?: string;
}

export function statsOf(c: Case, limits: Record<string, number> = {}): CaseStats {
  const wall = spread(c.samples.map((s) => s.wallS));
  const withBytes = c.samples.filter((s) => s.bytes !== undefined);
  const throughputBps = c.throughputBytes !== undefined && wall.median > 0 ? c.throughputBytes / wall.median : undefined;
  const binding = (c.limits ?? [])
    .flatMap((name) => (limits[name] !== undefined ? [{ name, bps: limits[name] }] : []))
    .reduce<{ name: string; bps: number } | undefined>((a, b) => (a === undefined || b.bps < a.bps ? b : a), undefined);
  return {
    id: c.id, title: c.title, tool: c.tool, runs: c.samples.length,
    wallS: wall,
    cpuS: spread(c.samples.map((s) => s.cpuS)),
    peakRssBytes: spread(c.samples.map((s) => s.peakRssBytes)),
    writtenBytes: spread(c.samples.map((s) => s.writtenBytes)),
    ...(withBytes.length > 0 ? { bytes: spread(withBytes.map((s) => s.bytes!)) } : {}),
    ...(throughputBps !== undefined ? { throughputBps } : {}),
    ...(throughputBps !== undefined && binding ? { limit: { ...binding, fraction: throughputBps / binding.bps } } : {}),
    ...(c.note ? { note: c.note } : {}),
  };
}

export interface Target {
  name: string;
  goal: string;
  measured: string;
  /** undefined: could not be measured in this run. */
  met: boolean | undefined;
}

export const mb = (bytes: number): string => `${(bytes / 1e6).toFixed(bytes < 10e6 ? 2 : 1)} MB`;
export const mbps = (bps: number): string => `${(bps / 1e6).toFixed(0)} MB/s`;
const sec = (s: number): string => (s < 10 ? s.toFixed(2) : s.toFixed(1));
const rng = (s: Spread, f: (n: number) => string): string => (s.min === s.max ? f(s.median) : `${f(s.median)} (${f(s.min)}–${f(s.max)})`);
const rss = (b: number): string => `${(b / 1024 / 1024).toFixed(0)}`;

export function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

export function casesTable(stats: CaseStats[]): string {
  return table(
    ['case', 'runs', 'wall s median (min–max)', 'CPU s (user+sys)', 'peak RSS MiB', 'written by the process', 'bytes on disk / shipped', 'throughput', 'of binding limit'],
    stats.map((s) => [
      s.title, String(s.runs), rng(s.wallS, sec), rng(s.cpuS, sec), rng(s.peakRssBytes, rss), mb(s.writtenBytes.median),
      s.bytes ? mb(s.bytes.median) : '–',
      s.throughputBps !== undefined ? mbps(s.throughputBps) : '–',
      s.limit ? `${(s.limit.fraction * 100).toFixed(0)} % of ${s.limit.name}` : '–',
    ]),
  );
}

export function targetsTable(targets: Target[]): string {
  return table(['target (issue)', 'goal', 'measured', 'met'], targets.map((t) => [t.name, t.goal, t.measured, t.met === undefined ? 'n/a' : t.met ? 'yes' : 'NO']));
}

/** "a is N× faster than b" by median wall time (> 1: a is faster). */
export function speedup(a: CaseStats | undefined, b: CaseStats | undefined): number | undefined {
  if (a === undefined || b === undefined || !(a.wallS.median > 0)) return undefined;
  return b.wallS.median / a.wallS.median;
}
