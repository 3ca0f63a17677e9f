// `npm run bench -- --size scale [--images 100,1000,3000]`: per-image cost against the
// number of images — export, verify, import to a registry layout, push to an empty
// registry, and skopeo sync as the peer — with peak RSS and bytes written per command.
// Nothing quadratic should show: ms per image flat from the smallest N to the largest.
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry } from '../support/registry.js';
import { mb, mbps, table } from './report.js';
import type { RunOutcome } from './runner.js';
import { openScaleCorpus, sliceOf, type ScaleSlice } from './scale-corpus.js';
import { ok, type Scenario, type ScenarioContext, type ScenarioResult } from './scenario.js';

export interface ScaleRow {
  step: 'export' | 'verify' | 'import → registry-layout' | 'push → empty registry' | 'skopeo sync → dir';
  images: number;
  rep: number;
  /** false: stopped at the peer cap (skopeo) — the figures are then a lower bound. */
  finished: boolean;
  wallS: number;
  cpuS: number;
  peakRssBytes: number;
  writtenBytes: number;
  /** What the step produced (bundle, tree, registry storage), bytes. */
  outputBytes?: number;
  /** The bundle's `.ferry.json` metadata (export). */
  metadataBytes?: number;
}

function du(path: string): number {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.size;
  return readdirSync(path).reduce((a, name) => a + du(join(path, name)), 0);
}

/** skopeo sync takes a list as YAML (JSON is YAML): one process for the whole list, as ferry. */
export function syncYaml(file: string, host: string, refs: string[]): void {
  const images: Record<string, string[]> = {};
  for (const r of refs) {
    const [repo, tag] = r.split(':') as [string, string];
    (images[repo] ??= []).push(tag);
  }
  writeFileSync(file, JSON.stringify({ [host]: { 'tls-verify': false, images } }, null, 2));
}

const perImageMs = (s: number, n: number): string => (Number.isFinite(s) ? ((s / n) * 1000).toFixed(1) : 'n/a');
const mib = (b: number): string => (Number.isFinite(b) ? (b / 2 ** 20).toFixed(0) : 'n/a');
const fmtS = (s: number): string => (s < 10 ? s.toFixed(2) : s.toFixed(1));

async function run(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { opts, log } = ctx;
  const sizes = [...new Set(opts.images)].sort((a, b) => a - b);
  const corpus = await openScaleCorpus(opts.resultsDir, sizes[sizes.length - 1]!, opts.seed, log);
  const rows: ScaleRow[] = [];
  const slices: ScaleSlice[] = [];
  const notes: string[] = [];
  let skopeoGaveUpAt: number | undefined;
  try {
    const host = corpus.host;
    for (const n of sizes) {
      const slice = sliceOf(corpus.info, n);
      slices.push(slice);
      const list = join(ctx.work, `scale-${n}.list`);
      writeFileSync(list, slice.refs.map((r) => `${host}/${r}`).join('\n') + '\n');
      for (let rep = 1; rep <= opts.reps; rep++) {
        log(`scale: ${n} images (${slice.repositories} repositories), repetition ${rep}/${opts.reps}`);
        const add = (step: ScaleRow['step'], r: RunOutcome, extra: Partial<ScaleRow> = {}): void => {
          rows.push({ step, images: n, rep, finished: !r.timedOut, wallS: r.wallS, cpuS: r.cpuS, peakRssBytes: r.peakRssBytes, writtenBytes: r.writtenBytes, ...extra });
          log(`${step}, ${n} images: ${fmtS(r.wallS)} s${r.timedOut ? ' (stopped at the cap)' : ''}, ${perImageMs(r.wallS, n)} ms/image, ${mib(r.peakRssBytes)} MiB RSS, ${Number.isFinite(r.writtenBytes) ? mb(r.writtenBytes) : 'n/a'} written`);
        };
        const bundle = `${ctx.fresh(`scale-${n}`)}.tar`;
        add('export', ok(await ctx.ferry(['export', '--plain-http', host, '-f', list, '-o', bundle]), `export of ${n} images`), {
          outputBytes: du(bundle), metadataBytes: du(`${bundle}.ferry.json`),
        });
        if (ctx.wanted('verify')) add('verify', ok(await ctx.ferry(['verify', bundle]), 'verify'));
        if (ctx.wanted('import')) {
          const layout = ctx.fresh('layout');
          add('import → registry-layout', ok(await ctx.ferry(['import', bundle, '--to', `registry-layout:${layout}`]), 'import'), { outputBytes: du(layout) });
        }
        if (ctx.wanted('push')) {
          const reg = await startRegistry();
          try {
            const receipt = join(ctx.fresh('receipt'), 'receipt.json');
            mkdirSync(join(receipt, '..'));
            add('push → empty registry', ok(await ctx.ferry(['push', bundle, '--to', reg.host, '--plain-http', reg.host, '--receipt', receipt]), 'push'), { outputBytes: du(reg.storageDir) });
          } finally {
            await reg.stop();
          }
        }
        if (ctx.wanted('skopeo')) {
          if (skopeoGaveUpAt !== undefined) {
            if (rep === 1) notes.push(`skopeo sync at ${n} images: not run (it did not finish at ${skopeoGaveUpAt} within ${opts.peerCapS} s)`);
          } else {
            const yaml = join(ctx.work, `scale-${n}.sync.yaml`);
            syncYaml(yaml, host, slice.refs);
            const dest = ctx.fresh('skopeo-sync');
            const r = ok(await ctx.skopeo(['sync', '--all', '--scoped', '--src', 'yaml', '--dest', 'dir', yaml, dest], { timeoutMs: opts.peerCapS * 1000 }), 'skopeo sync');
            add('skopeo sync → dir', r, { outputBytes: du(dest) });
            if (r.timedOut) {
              skopeoGaveUpAt = n;
              notes.push(`skopeo sync at ${n} images: did not finish within ${opts.peerCapS} s (stopped)`);
            }
          }
        }
      }
    }
  } finally {
    await corpus.registry.stop();
  }

  const m = ctx.machine;
  const median = (xs: number[]): number => {
    const v = xs.filter(Number.isFinite).sort((a, b) => a - b);
    return v.length === 0 ? NaN : v.length % 2 ? v[(v.length - 1) / 2]! : (v[v.length / 2 - 1]! + v[v.length / 2]!) / 2;
  };
  const steps = [...new Set(rows.map((r) => r.step))];
  const summary = steps.flatMap((step) => sizes.flatMap((n) => {
    const rs = rows.filter((r) => r.step === step && r.images === n);
    if (rs.length === 0) return [];
    const slice = slices.find((s) => s.images === n)!;
    const wall = median(rs.map((r) => r.wallS));
    const written = median(rs.map((r) => r.writtenBytes));
    return [{
      step, images: n, finished: rs.every((r) => r.finished), wallS: wall, msPerImage: (wall / n) * 1000, cpuMsPerImage: (median(rs.map((r) => r.cpuS)) / n) * 1000,
      peakRssBytes: Math.max(...rs.map((r) => r.peakRssBytes)), writtenBytes: written, writtenPerUnique: written / slice.uniqueBytes,
      outputBytes: median(rs.map((r) => r.outputBytes ?? NaN)), metadataBytes: median(rs.map((r) => r.metadataBytes ?? NaN)),
    }];
  }));
  const md = [
    `# ferry at scale — ${sizes.join(' / ')} images, ${opts.reps} repetition(s)`,
    '',
    `Machine: ${m.cpuModel}, ${m.cores} cores. One-core sha256 ${mbps(m.sha256Bps)}, fsync'd write ${mbps(m.diskWriteBps)}, read ${mbps(m.diskReadBps)} (${m.diskReadMethod}).`,
    '',
    `Corpus (seed ${opts.seed}, generator v${corpus.info.generatorVersion}, written straight into registry storage): ${slices.map((s) => `${s.images} images = ${s.repositories} repositories, ${s.objects} unique blobs+manifests, ${mb(s.uniqueBytes)} (${s.multiArch} multi-arch, ${s.signed} signed, ${s.withSbom} with an SBOM referrer)`).join('; ')}. 5 shared bases, 8 shared runtimes.`,
    '',
    table(['step', 'images', 'wall s', 'ms / image', 'CPU ms / image', 'peak RSS MiB', 'written', 'written ÷ unique bytes', 'output', '.ferry.json'], summary.map((s) => [
      s.step, String(s.images), `${fmtS(s.wallS)}${s.finished ? '' : ' (cap: not finished)'}`, s.msPerImage.toFixed(1), Number.isFinite(s.cpuMsPerImage) ? s.cpuMsPerImage.toFixed(1) : 'n/a',
      mib(s.peakRssBytes), Number.isFinite(s.writtenBytes) ? mb(s.writtenBytes) : 'n/a', Number.isFinite(s.writtenPerUnique) ? `${s.writtenPerUnique.toFixed(2)}×` : 'n/a',
      Number.isFinite(s.outputBytes) ? mb(s.outputBytes) : '–', Number.isFinite(s.metadataBytes) ? mb(s.metadataBytes) : '–',
    ])),
    '',
    'Written = bytes the command (its whole process tree) caused to be written to storage: GNU time %O × 512, the kernel\'s write_bytes. Push writes nothing itself: the registry does (its storage is the output column).',
    ...(notes.length > 0 ? ['', ...notes.map((n) => `- ${n}`)] : []),
  ].join('\n');
  return { name: 'scale', markdown: md, data: { corpus: { ...corpus.info, refs: undefined, newBytes: undefined, newObjects: undefined }, slices: slices.map((s) => ({ ...s, refs: undefined })), rows, summary, notes } };
}

export const scaleScenario: Scenario = {
  name: 'scale',
  wanted: (o) => o.size === 'scale' && o.latencyMs === undefined,
  run,
};
