// What main.ts hands a benchmark scenario (one file each: scale.ts, latency.ts, …) and
// what it gets back: the scenario runs whole processes and returns its Markdown and data;
// main.ts measures the machine around it and writes bench-results/<stamp>-<name>.json/.md.
import type { MachineLimits } from './machine.js';
import type { RunOptions, RunOutcome } from './runner.js';

export interface ScenarioOptions {
  seed: number;
  /** Repetitions (default 1 for scenarios: their runs are long). */
  reps: number;
  /** Corpus sizes in images (--images 100,1000,3000). */
  images: number[];
  /** Added round-trip time in ms (--latency). */
  latencyMs?: number;
  /** --jobs values to compare (--jobs 1,4,16). */
  jobs: number[];
  /** Longest a peer (skopeo) run may take before it is stopped and reported as not finished. */
  peerCapS: number;
  /** Case name prefixes to run (--only export,push); empty: all. */
  only: string[];
  resultsDir: string;
}

export interface ScenarioContext {
  opts: ScenarioOptions;
  /** Scratch directory of this run (removed afterwards unless --keep). */
  work: string;
  log(line: string): void;
  /** A fresh path under work (not created). */
  fresh(name: string): string;
  /** ferry --json ARGS under GNU time (the snapshot of the build the run started with); never throws on exit status. */
  ferry(args: string[], opts?: RunOptions): Promise<RunOutcome>;
  /** skopeo --insecure-policy ARGS under GNU time; never throws on exit status. */
  skopeo(args: string[], opts?: RunOptions): Promise<RunOutcome>;
  /** The machine's limits measured at the start of the run. */
  machine: MachineLimits;
  /** Whether case `name` was asked for (--only). */
  wanted(name: string): boolean;
}

export interface ScenarioResult {
  /** Short name for the result files. */
  name: string;
  markdown: string;
  data: unknown;
}

export interface Scenario {
  name: string;
  /** Whether these options ask for this scenario (the first match runs; none: the release benchmark). */
  wanted(o: { size: string; latencyMs?: number | undefined }): boolean;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

/** Throws with the tail of stderr unless the run exited 0 (a timed-out run is not a failure: the caller reports it). */
export function ok(r: RunOutcome, what: string): RunOutcome {
  if (r.timedOut || r.code === 0) return r;
  throw new Error(`${what} exited ${r.code}:\n${r.stderr.slice(-3000)}${r.stdout.slice(-1000)}`);
}
