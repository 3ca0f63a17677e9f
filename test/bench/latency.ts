// `npm run bench -- --latency 40 [--images 300] [--jobs 1,4,16]`: export and push of many
// small images through a proxy that adds a round-trip time, at several --jobs, against
// skopeo sync (export side) and skopeo copy per image (push side). Besides the wall time
// it prints how the link was used — requests, how many ran alone (strictly in series),
// the most and the mean in flight — since on a WAN it is round trips, not bytes, that
// a run of small images waits on.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startRegistry } from '../support/registry.js';
import { dirImages } from './dir-images.js';
import { startLatencyProxy, type LinkStats } from './latency-proxy.js';
import { table } from './report.js';
import type { RunOutcome } from './runner.js';
import { openScaleCorpus, sliceOf } from './scale-corpus.js';
import { syncYaml } from './scale.js';
import { ok, type Scenario, type ScenarioContext, type ScenarioResult } from './scenario.js';

export interface LatencyRow {
  case: string;
  tool: 'ferry' | 'skopeo';
  jobs?: number;
  rep: number;
  finished: boolean;
  /** Images done when stopped at the cap (per-image peers). */
  imagesDone?: number;
  wallS: number;
  cpuS: number;
  peakRssBytes: number;
  link: LinkStats;
}

const fmtS = (s: number): string => (s < 10 ? s.toFixed(2) : s.toFixed(1));

async function run(ctx: ScenarioContext): Promise<ScenarioResult> {
  const { opts, log } = ctx;
  const rtt = opts.latencyMs!;
  const n = opts.images[0] ?? 300;
  const corpus = await openScaleCorpus(opts.resultsDir, n, opts.seed, log);
  const slice = sliceOf(corpus.info, n);
  const rows: LatencyRow[] = [];
  const notes: string[] = [];
  const stops: Array<() => Promise<void>> = [() => corpus.registry.stop()];
  try {
    const source = await startLatencyProxy(corpus.registry.url, rtt);
    stops.push(() => source.stop());
    const list = join(ctx.work, `latency-${n}.list`);
    writeFileSync(list, slice.refs.map((r) => `${source.host}/${r}`).join('\n') + '\n');
    const add = (row: Omit<LatencyRow, 'link'>, link: LinkStats): void => {
      rows.push({ ...row, link });
      log(`${row.case}${row.jobs !== undefined ? ` --jobs ${row.jobs}` : ''}: ${fmtS(row.wallS)} s${row.finished ? '' : ' (stopped at the cap)'}, ${link.requests} requests, ${link.alone} alone, ${link.maxInFlight} max / ${link.meanInFlightBusy.toFixed(1)} mean in flight`);
    };
    const measured = (r: RunOutcome, c: string, tool: LatencyRow['tool'], rep: number, jobs?: number): Omit<LatencyRow, 'link'> => ({
      case: c, tool, rep, finished: !r.timedOut, wallS: r.wallS, cpuS: r.cpuS, peakRssBytes: r.peakRssBytes, ...(jobs !== undefined ? { jobs } : {}),
    });

    let bundle = '';
    for (let rep = 1; rep <= opts.reps; rep++) {
      log(`latency ${rtt} ms, ${n} images, repetition ${rep}/${opts.reps}`);
      // ---- export: ferry at each --jobs (and once without referrers, to show their share), skopeo sync
      if (ctx.wanted('export')) {
        for (const jobs of opts.jobs) {
          const out = `${ctx.fresh(`export-j${jobs}`)}.tar`;
          source.reset();
          const r = ok(await ctx.ferry(['export', '--plain-http', source.host, '-f', list, '-o', out, '--jobs', String(jobs)]), 'export');
          add(measured(r, 'ferry export', 'ferry', rep, jobs), source.stats());
          if (bundle === '') bundle = out;
        }
        source.reset();
        const r = ok(await ctx.ferry(['export', '--plain-http', source.host, '-f', list, '-o', `${ctx.fresh('export-noref')}.tar`, '--no-referrers']), 'export --no-referrers');
        add(measured(r, 'ferry export --no-referrers (default --jobs)', 'ferry', rep), source.stats());
      }
      if (ctx.wanted('skopeo')) {
        const yaml = join(ctx.work, 'latency.sync.yaml');
        syncYaml(yaml, source.host, slice.refs);
        source.reset();
        const r = ok(await ctx.skopeo(['sync', '--all', '--scoped', '--src', 'yaml', '--dest', 'dir', yaml, ctx.fresh('skopeo-sync')], { timeoutMs: opts.peerCapS * 1000 }), 'skopeo sync');
        add(measured(r, 'skopeo sync → dir', 'skopeo', rep), source.stats());
        if (r.timedOut) notes.push(`skopeo sync did not finish within ${opts.peerCapS} s`);
      }

      // ---- push into an empty registry behind the same kind of link
      if (ctx.wanted('push')) {
        if (bundle === '') {
          // Push alone was asked for: its bundle is made without the proxy (not measured).
          const direct = join(ctx.work, `latency-${n}.direct.list`);
          writeFileSync(direct, slice.refs.map((r) => `${corpus.host}/${r}`).join('\n') + '\n');
          const out = `${ctx.fresh('export-for-push')}.tar`;
          ok(await ctx.ferry(['export', '--plain-http', corpus.host, '-f', direct, '-o', out]), 'export for push');
          bundle = out;
        }
        for (const jobs of opts.jobs) {
          const reg = await startRegistry();
          const proxy = await startLatencyProxy(reg.url, rtt);
          try {
            const receipt = join(ctx.fresh('receipt'), 'receipt.json');
            mkdirSync(join(receipt, '..'));
            const r = ok(await ctx.ferry(['push', bundle, '--to', proxy.host, '--plain-http', proxy.host, '--jobs', String(jobs), '--receipt', receipt]), 'push');
            add(measured(r, 'ferry push → empty registry', 'ferry', rep, jobs), proxy.stats());
          } finally {
            await proxy.stop();
            await reg.stop();
          }
        }
      }
      if (ctx.wanted('skopeo') && ctx.wanted('push')) {
        // The per-image input comes from a sync without the proxy: preparing it is not measured.
        const tree = ctx.fresh('skopeo-tree');
        const yaml = join(ctx.work, 'direct.sync.yaml');
        syncYaml(yaml, corpus.host, slice.refs);
        ok(await ctx.skopeo(['sync', '--all', '--scoped', '--src', 'yaml', '--dest', 'dir', yaml, tree]), 'skopeo sync (direct)');
        const images = dirImages(tree);
        const reg = await startRegistry();
        const proxy = await startLatencyProxy(reg.url, rtt);
        try {
          let wall = 0;
          let cpu = 0;
          let rss = 0;
          let done = 0;
          for (const d of images) {
            const left = opts.peerCapS - wall;
            if (left <= 0) break;
            const ref = d.slice(join(tree, corpus.host).length + 1);
            const r = ok(await ctx.skopeo(['copy', '--all', '--dest-tls-verify=false', `dir:${d}`, `docker://${proxy.host}/${ref}`], { timeoutMs: left * 1000 }), 'skopeo copy');
            wall += r.wallS;
            if (r.timedOut) break;
            cpu += r.cpuS;
            rss = Math.max(rss, r.peakRssBytes);
            done++;
          }
          const finished = done === images.length;
          add({ case: 'skopeo copy dir: → docker://, per image', tool: 'skopeo', rep, finished, imagesDone: done, wallS: wall, cpuS: cpu, peakRssBytes: rss }, proxy.stats());
          if (!finished) notes.push(`skopeo copy per image did not finish within ${opts.peerCapS} s: ${done} of ${images.length} images`);
        } finally {
          await proxy.stop();
          await reg.stop();
        }
      }
    }
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => undefined);
  }

  const best = (c: string): LatencyRow | undefined => rows.filter((r) => r.case === c && r.finished).sort((a, b) => a.wallS - b.wallS)[0];
  const vs = (ferryCase: string, peerCase: string): string => {
    const f = best(ferryCase);
    const peer = rows.find((r) => r.case === peerCase);
    if (!f || !peer) return 'n/a';
    const x = peer.wallS / f.wallS;
    return peer.finished ? `${x.toFixed(1)}×` : `> ${x.toFixed(1)}× (peer stopped at the cap)`;
  };
  const md = [
    `# ferry over a ${rtt} ms round trip — ${n} images, ${opts.reps} repetition(s)`,
    '',
    `Corpus: the first ${n} images of the scale corpus (${slice.repositories} repositories, ${slice.signed} signed, ${slice.withSbom} with an SBOM referrer, ${slice.multiArch} multi-arch). The proxy adds ${rtt / 2} ms before forwarding each request and ${rtt / 2} ms before each response's first byte, and one round trip per new connection.`,
    '',
    table(['case', '--jobs', 'wall s', 'requests', 'alone (in series)', 'max in flight', 'mean in flight', 'connections', 'link idle s', 'peak RSS MiB'], rows.map((r) => [
      r.case, r.jobs !== undefined ? String(r.jobs) : '–', `${fmtS(r.wallS)}${r.finished ? '' : ` (cap${r.imagesDone !== undefined ? `, ${r.imagesDone} images` : ''})`}`,
      String(r.link.requests), `${r.link.alone} (${r.link.requests > 0 ? ((r.link.alone / r.link.requests) * 100).toFixed(0) : 0} %)`, String(r.link.maxInFlight), r.link.meanInFlightBusy.toFixed(1), String(r.link.connections), r.link.idleS.toFixed(1),
      Number.isFinite(r.peakRssBytes) ? (r.peakRssBytes / 2 ** 20).toFixed(0) : 'n/a',
    ])),
    '',
    `Best ferry export vs skopeo sync: ${vs('ferry export', 'skopeo sync → dir')}. Best ferry push vs skopeo per image: ${vs('ferry push → empty registry', 'skopeo copy dir: → docker://, per image')}.`,
    '"Alone" = requests that reached the proxy with no other request in flight: the part of the run that is strictly one round trip after another.',
    ...(notes.length > 0 ? ['', ...notes.map((x) => `- ${x}`)] : []),
  ].join('\n');
  return { name: `latency-${rtt}ms`, markdown: md, data: { rttMs: rtt, images: n, rows, notes } };
}

export const latencyScenario: Scenario = {
  name: 'latency',
  wanted: (o) => o.latencyMs !== undefined,
  run,
};
