// Concurrency and load: two imports into one layout at once, a push with --jobs 16, and
// an export of 100 images / 1,000 blobs under `ulimit -n 256`, with peak RSS measured and
// the open descriptors of the ferry process sampled from /proc while it runs. The two
// imports are two processes (two ferries at once is the point) and so is the export under
// ulimit; the export that makes their bundle and the push run in this process.
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { sampleCorpus, type PushedCorpus } from '../support/corpus.js';
import { FERRY_BIN } from '../support/cli.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { validateRegistryImage } from '../support/validate.js';
import { expectationsOf, readBundleTar, serveAndCheck } from './cli-fixture.js';
import { checkLayout, runInProcess, runTimed, TIME } from './hostile-fixture.js';
import { spawn } from 'node:child_process';

// 100 images at --jobs 16 hold as many descriptors at once as 200 would: the count only lengthens the run.
const IMAGES = process.env.FERRY_STRESS ? 500 : 100;
const LAYERS_PER_IMAGE = 9; // + 1 config = 10 blobs per image

let reg: RegistryHandle;
let corpus: PushedCorpus;
let tmp: TempDir;

beforeAll(async () => {
  tmp = makeTempDir('ferry-load-');
  reg = await startRegistry();
  corpus = await sampleCorpus(reg.url, 0x10ad);
});
afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

/** Every descendant pid of `pid` (time → node). */
function descendants(pid: number): number[] {
  let kids: number[] = [];
  try {
    kids = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

describe('concurrency and load', () => {
  it('two imports into the same registry layout at once: the layout is intact and the registry serves everything', async () => {
    const bundle = join(tmp.path, 'corpus.tar');
    const ex = await runInProcess(['export', ...corpus.hostRefs, '-o', bundle, '--compression', 'none', '--cache', join(tmp.path, 'c1'), '--plain-http', reg.host, '--quiet']);
    expect(ex.code, ex.stderr).toBe(0);
    const layout = join(tmp.path, 'shared-layout');
    const [a, b] = await Promise.all([1, 2].map(() => runTimed(['import', bundle, '--to', 'registry-layout', layout, '--jobs', '8', '--quiet'], { direct: true })));
    expect(a!.code, a!.stderr).toBe(0);
    expect(b!.code, b!.stderr).toBe(0);
    expect((await checkLayout(layout)).problems).toEqual([]);
    await serveAndCheck(layout, expectationsOf(corpus));
  }, 120_000);

  it('a push with --jobs 16 against the real registry completes, every image with its digest', async () => {
    const bundle = join(tmp.path, 'corpus.tar');
    const target = await startRegistry();
    try {
      const r = await runInProcess(['push', bundle, '--to', target.host, '--plain-http', target.host, '--jobs', '16', '--quiet']);
      expect(r.code, r.stderr).toBe(0);
      for (const x of expectationsOf(corpus)) expect((await validateRegistryImage(target.url, x.repo, x.ref)).digest).toBe(x.digest);
    } finally {
      await target.stop();
    }
  }, 120_000);

  it(`an export of ${IMAGES} images with ${IMAGES * (LAYERS_PER_IMAGE + 1)} blobs stays within 256 descriptors and bounded memory`, async () => {
    const rng = new Rng(0x10ad2);
    const images: Image[] = [];
    for (let i = 0; i < IMAGES; i++) {
      const layers = [];
      for (let l = 0; l < LAYERS_PER_IMAGE; l++) layers.push(await makeLayer(rng, { size: 200 + ((i * 7 + l) % 50) }));
      images.push(makeImage({ layers, mediaTypes: i % 2 ? 'oci' : 'docker', labels: { i: String(i) } }));
    }
    // Pushed eight at a time: the registry is the slow part of this set-up, not ferry.
    for (let i = 0; i < IMAGES; i += 8) await Promise.all(images.slice(i, i + 8).map((img, k) => pushArtifact(reg.url, `load/r${(i + k) % 40}`, img, [`t${i + k}`])));
    const refs = images.map((_, i) => `${reg.host}/load/r${i % 40}:t${i}`);
    const list = join(tmp.path, 'load.list');
    await (await import('node:fs/promises')).writeFile(list, `${refs.join('\n')}\n`);
    const out = join(tmp.path, 'load.tar');
    const script = `ulimit -n 256 && exec ${TIME} -f FERRY_PEAK_RSS_KIB=%M ${process.execPath} ${FERRY_BIN} export -f ${list} -o ${out} --cache ${join(tmp.path, 'c-load')} --plain-http ${reg.host} --no-referrers --quiet --jobs 16`;
    let maxFds = 0;
    let samples = 0;
    const r = await new Promise<{ code: number | null; stderr: string }>((resolve) => {
      const child: ChildProcess = spawn('bash', ['-c', script], { stdio: ['ignore', 'ignore', 'pipe'] });
      let stderr = '';
      child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
      const t = setInterval(() => {
        for (const pid of descendants(child.pid!)) {
          try {
            maxFds = Math.max(maxFds, readdirSync(`/proc/${pid}/fd`).length);
            samples++;
          } catch { /* exited */ }
        }
      }, 20);
      child.on('close', (code) => { clearInterval(t); resolve({ code, stderr }); });
    });
    expect(r.code, r.stderr).toBe(0);
    const peak = Number(/FERRY_PEAK_RSS_KIB=(\d+)/.exec(r.stderr)?.[1]);
    expect(samples, 'the descriptor sampler saw the process').toBeGreaterThan(0);
    expect(maxFds).toBeLessThan(256);
    expect(peak).toBeLessThan(300 * 1024);
    const entries = await readBundleTar(out);
    const blobs = entries.filter((e) => e.name.startsWith('blobs/sha256/') && e.type === 'file');
    // Every config and layer, plus one manifest per image; all hash to their names.
    expect(blobs.length).toBe(IMAGES * (LAYERS_PER_IMAGE + 2));
    for (const b of blobs) expect(b.digest).toBe(`sha256:${b.name.slice(13)}`);
    if (process.env.FERRY_ROBUSTNESS_REPORT) console.log(`load export: peak ${Math.round(peak / 1024)} MiB, max ${maxFds} fds over ${samples} samples`);
  }, 240_000);
});
