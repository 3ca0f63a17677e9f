// Interruption at many points: export, import into a registry layout and push, each
// killed (SIGINT, SIGTERM, SIGKILL in turn) at N points spread over its own reference
// run, then rerun to completion. The rerun must give exactly what an uninterrupted run
// gives; a graceful stop must leave no temp files; and at every kill point — SIGKILL
// included — no tag may point at anything incomplete. FERRY_STRESS=1 for more points.
// The runs killed are processes, and so are the reference runs whose length spreads the
// kill points (node's start-up included); the reruns, whose point is what they leave,
// run in this process (a Node start-up each cost ~0.5 s of CPU).
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleCorpus, type PushedCorpus } from '../support/corpus.js';
import { makeImage, makeStreamLayer } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { validateRegistryImage } from '../support/validate.js';
import { expectationsOf, serveAndCheck, type Expectation } from './cli-fixture.js';
import { checkLayout, diffMaps, runInProcess, runTimed, sha256File, treeContent, type TimedResult } from './hostile-fixture.js';

const POINTS = process.env.FERRY_STRESS ? 15 : 3;
const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGKILL'];

let reg: RegistryHandle;
let corpus: PushedCorpus;
let tmp: TempDir;
let expected: Expectation[];
let listFile: string;
let refBundle: string;
let refDigest: string;
const durations: Record<string, number> = {};
let n = 0;
const dir = (name: string) => join(tmp.path, `${String(++n).padStart(3, '0')}-${name}`);

/** Runs ferry and sends `signal` after `delayMs` (unless it has finished). */
function killedAt(args: string[], signal: NodeJS.Signals, delayMs: number, env?: Record<string, string>): Promise<TimedResult & { sent: boolean }> {
  let sent = false;
  return runTimed(args, {
    direct: true,
    timeoutMs: 60_000,
    ...(env ? { env } : {}),
    onSpawn: (child: ChildProcess) => {
      const t = setTimeout(() => { sent = child.kill(signal); }, delayMs);
      child.on('exit', () => clearTimeout(t));
    },
  }).then((r) => ({ ...r, sent }));
}

async function timed(args: string[], env?: Record<string, string>): Promise<number> {
  const t0 = Date.now();
  const r = await runTimed(args, { direct: true, timeoutMs: 90_000, ...(env ? { env } : {}) });
  if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}:\n${r.stderr}`);
  return Date.now() - t0;
}

async function temps(root: string, prefix = '.ferry-tmp-'): Promise<string[]> {
  const found: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      if (e.name.startsWith(prefix)) found.push(join(d, e.name));
      if (e.isDirectory()) await walk(join(d, e.name));
    }
  };
  await walk(root);
  return found;
}

/** Kill delays spread over a reference run of `ms`: never all in node's start-up. */
function killPoints(ms: number): number[] {
  const step = Math.max(50, Math.floor(ms / (POINTS + 1)));
  return Array.from({ length: POINTS }, (_, i) => 50 + i * step);
}

/** What each interrupted run must satisfy whatever the signal. */
function checkStop(r: TimedResult & { sent: boolean }, signal: NodeJS.Signals, what: string): 'graceful' | 'killed' | 'finished' {
  if (r.code === 0 && r.signal === null) return 'finished';
  if (signal === 'SIGKILL' || r.signal !== null) {
    // SIGKILL, or a signal that arrived before ferry installed its handlers (node's default action).
    expect(r.signal, `${what}: ${r.stderr}`).toBe(signal);
    return 'killed';
  }
  expect(r.code, `${what}: ${r.stderr}`).toBe(130);
  expect(r.stderr).toContain('E_ABORTED');
  return 'graceful';
}

beforeAll(async () => {
  tmp = makeTempDir('ferry-interrupt-');
  reg = await startRegistry();
  corpus = await sampleCorpus(reg.url, 0x1e7);
  // A few larger layers, so that each run lasts long enough to be cut in many places.
  for (let i = 0; i < 3; i++) {
    const layer = await makeStreamLayer({ seed: 900 + i, size: 6 * 1024 * 1024, compressible: false, files: 1 });
    await pushArtifact(reg.url, `big/img${i}`, makeImage({ layers: [layer], mediaTypes: 'oci', labels: { i: String(i) } }), ['1']);
  }
  const refs = [...corpus.hostRefs, ...[0, 1, 2].map((i) => `${reg.host}/big/img${i}:1`)];
  listFile = join(tmp.path, 'images.list');
  await (await import('node:fs/promises')).writeFile(listFile, `${refs.join('\n')}\n`);
  expected = [
    ...expectationsOf(corpus),
    ...(await Promise.all([0, 1, 2].map(async (i) => ({ repo: `big/img${i}`, ref: '1', digest: (await validateRegistryImage(reg.url, `big/img${i}`, '1')).digest })))),
  ];
  refBundle = join(tmp.path, 'reference.tar');
  durations.export = await timed(exportArgs(refBundle), exportEnv());
  refDigest = await sha256File(refBundle);
}, 180_000);

afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

/**
 * No cache: what a killed export leaves is its bundle's work file and journal, and the
 * rerun continues into it. The cache folder is an empty one of the test's (never the
 * tester's ~/.cache/ferry).
 */
function exportArgs(out: string): string[] {
  return ['export', '-f', listFile, '-o', out, '--compression', 'none', '--plain-http', reg.host, '--no-referrers', '--quiet', '--jobs', '4'];
}

function exportEnv(): Record<string, string> {
  return { XDG_CACHE_HOME: join(tmp.path, 'xdg-cache'), FERRY_CACHE: '' };
}

describe('interrupting ferry at many points, then rerunning, gives the uninterrupted result', () => {
  it('export: the bundle is never at its final name unless complete; graceful stops leave no temp files; the rerun is byte-identical', async () => {
    // Same content, same bytes: a second uninterrupted export is the yardstick.
    const again = join(tmp.path, 'again.tar');
    const second = await runInProcess(exportArgs(again), { env: exportEnv() });
    expect(second.code, second.stderr).toBe(0);
    expect(await sha256File(again)).toBe(refDigest);
    const seen: string[] = [];
    for (const [k, delay] of killPoints(durations.export!).entries()) {
      const signal = SIGNALS[k % SIGNALS.length]!;
      const work = dir(`export-${k}`);
      await (await import('node:fs/promises')).mkdir(work);
      const out = join(work, 'release.tar');
      const r = await killedAt(exportArgs(out), signal, delay, exportEnv());
      const how = checkStop(r, signal, `export killed by ${signal} at ${delay} ms`);
      seen.push(`${signal}@${delay}ms: ${how}${how !== 'finished' && (await temps(work, '.ferry-resume-')).length > 0 ? ' (work file left to continue)' : ''}`);
      if (existsSync(out)) expect(await sha256File(out), `a partial bundle at the final name after ${signal}@${delay}`).toBe(refDigest);
      if (how === 'graceful') expect(await temps(work), `temp files after ${signal}`).toEqual([]);
      const rerun = await runInProcess(exportArgs(out), { timeoutMs: 90_000, env: exportEnv() });
      expect(rerun.code, rerun.stderr).toBe(0);
      expect(await sha256File(out), `rerun after ${signal}@${delay}`).toBe(refDigest);
      expect(await temps(work), 'the rerun left temp files beside the bundle').toEqual([]);
      expect(await temps(work, '.ferry-resume-'), 'the rerun left the work file it continued').toEqual([]);
    }
    expect(seen.some((s) => !s.endsWith('finished')), seen.join(', ')).toBe(true);
  }, 240_000);

  it('import --to registry-layout: after every kill each tag is complete; the rerun gives the same tree', async () => {
    const refLayout = join(tmp.path, 'ref-layout');
    const importArgs = (target: string) => ['import', refBundle, '--to', 'registry-layout', target, '--quiet', '--jobs', '4'];
    durations.import = await timed(importArgs(refLayout));
    await serveAndCheck(refLayout, expected);
    const want = await treeContent(refLayout);
    const refTags = [...(await checkLayout(refLayout)).tags].sort();
    expect(refTags.length).toBe(expected.filter((x) => !x.ref.startsWith('sha256:')).length);
    const seen: string[] = [];
    for (const [k, delay] of killPoints(durations.import).entries()) {
      const signal = SIGNALS[(k + 1) % SIGNALS.length]!;
      const target = dir(`layout-${k}`);
      const r = await killedAt(importArgs(target), signal, delay);
      const how = checkStop(r, signal, `import killed by ${signal} at ${delay} ms`);
      seen.push(`${signal}@${delay}ms: ${how}`);
      const state = await checkLayout(target);
      expect(state.problems, `after ${signal}@${delay}ms`).toEqual([]);
      for (const [tag, digest] of state.tags) expect(expected.some((x) => `${x.repo}:${x.ref}` === tag && x.digest === digest), `${tag} → ${digest}`).toBe(true);
      if (how === 'graceful') expect(await temps(target), `temp files after ${signal}`).toEqual([]);
      const rerun = await runInProcess(importArgs(target), { timeoutMs: 90_000 });
      expect(rerun.code, rerun.stderr).toBe(0);
      // SIGKILL may leave temp files; the rerun may ignore them, but everything else must match.
      const got = await treeContent(target, (rel) => rel.startsWith('ferry-receipts') || rel.split('/').some((c) => c.startsWith('.ferry-tmp-')));
      expect(diffMaps(want, got), `tree after ${signal}@${delay}ms + rerun`).toEqual([]);
      expect([...(await checkLayout(target)).tags].sort()).toEqual(refTags);
    }
    expect(seen.some((s) => !s.endsWith('finished')), seen.join(', ')).toBe(true);
    // The last interrupted-then-rerun layout, served by the real registry.
    await serveAndCheck(join(tmp.path, `${String(n).padStart(3, '0')}-layout-${POINTS - 1}`), expected);
  }, 240_000);

  it('push: after every kill the registry serves only complete images; the rerun lands every image with its digest', async () => {
    const pushArgs = (host: string) => ['push', refBundle, '--to', host, '--plain-http', host, '--quiet', '--jobs', '4'];
    const first = await startRegistry();
    try {
      durations.push = await timed(pushArgs(first.host));
    } finally {
      await first.stop();
    }
    const seen: string[] = [];
    for (const [k, delay] of killPoints(durations.push).entries()) {
      const signal = SIGNALS[(k + 2) % SIGNALS.length]!;
      const target = await startRegistry();
      try {
        const r = await killedAt(pushArgs(target.host), signal, delay);
        const how = checkStop(r, signal, `push killed by ${signal} at ${delay} ms`);
        seen.push(`${signal}@${delay}ms: ${how}`);
        const state = await checkLayout(target.storageDir);
        expect(state.problems, `registry storage after ${signal}@${delay}ms`).toEqual([]);
        for (const [tag] of state.tags) {
          const [repo, ref] = tag.split(':') as [string, string];
          await validateRegistryImage(target.url, repo, ref); // throws listing what is missing
        }
        const rerun = await runInProcess(pushArgs(target.host), { timeoutMs: 90_000 });
        expect(rerun.code, rerun.stderr).toBe(0);
        for (const x of expected) expect((await validateRegistryImage(target.url, x.repo, x.ref)).digest, `${x.repo}:${x.ref}`).toBe(x.digest);
      } finally {
        await target.stop();
      }
    }
    expect(seen.some((s) => !s.endsWith('finished')), seen.join(', ')).toBe(true);
  }, 240_000);
});
