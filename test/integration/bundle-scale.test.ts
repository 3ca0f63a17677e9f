// A whole platform's mirror in one bundle: 20,000 images and 100,000 blobs written by
// the bundle writer the way export drives it (configs first, the layout, every blob
// at its offset through the real engine), then read by the commands that read a
// bundle. The metadata of that many images passed the old 8 MiB cap at ~39,000 blobs:
// export succeeded and every reader refused the bundle. Its parse is held to the
// 200 MiB RSS budget (spec/robustness.md); inspect's and verify's peaks are printed.
import { spawn } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchConfigs, layoutRequest } from '../../src/app/bundle-layout.js';
import { copyImages } from '../../src/copy/engine.js';
import { planCopy } from '../../src/copy/plan.js';
import { METADATA_MAX_BYTES } from '../../src/transports/bundle/metadata.js';
import { BundleDestination } from '../../src/transports/bundle/writer.js';
import { readMetadata } from '../support/bundle-metadata.js';
import { FERRY_BIN, REPO_ROOT } from '../support/cli.js';
import { MemorySource, requestsOf } from '../support/memory-transports.js';
import { scaleImages } from '../support/scale-images.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

const IMAGES = 20_000;
const RSS_BUDGET = 200 * 1024 * 1024;

let tmp: TempDir;
beforeAll(() => { tmp = makeTempDir('ferry-scale-'); });
afterAll(async () => tmp.cleanup());

/**
 * Runs node under GNU time: `script` with -e, or bin/ferry with `args` when it is null.
 * The exit status, stdout, and the child's peak RSS (time's %M, KiB).
 */
function nodePeak(script: string | null, args: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string; peakBytes: number }> {
  return new Promise((resolve, reject) => {
    const argv = script === null ? [FERRY_BIN, ...args] : ['--input-type=module', '-e', script];
    const child = spawn('/usr/bin/time', ['-f', 'PEAK_KIB=%M', process.execPath, ...argv], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.on('error', reject);
    child.on('close', (code) => {
      const m = /PEAK_KIB=(\d+)/.exec(stderr);
      if (!m) { reject(new Error(`no peak RSS from GNU time: ${stderr.slice(-500)}`)); return; }
      resolve({ code, stdout, stderr, peakBytes: Number(m[1]) * 1024 });
    });
  });
}

describe(`a bundle of ${IMAGES} images and ${IMAGES * 5 + 20} blobs`, () => {
  it('is written as export writes it; its metadata is within the caps and parses within the memory budget; inspect and verify take it', async () => {
    const placed = scaleImages({ images: IMAGES });
    const source = new MemorySource(placed);
    const output = join(tmp.path, 'platform.tar');
    const plan = await planCopy(source, requestsOf(placed), { jobs: 16 });
    const dest = new BundleDestination({ toolVersion: '0.0.0-test', output });
    try {
      await fetchConfigs(source, dest.configSink(), plan, () => false, 'export', {});
      dest.layOut(layoutRequest(plan));
      await dest.open({});
      const report = await copyImages(source, dest, plan, { jobs: 16 });
      expect(report.failures).toEqual([]);
      await dest.commit({});
    } finally {
      await dest.close();
    }
    // The metadata as readers get it: within the caps, and parsed by ferry's parser in a process of its own within the budget.
    const sidecar = `${output}.ferry.json`;
    const meta = await readMetadata(sidecar);
    expect(meta.totals.images).toBe(IMAGES);
    expect(meta.totals.blobs).toBe(IMAGES * 5 + 20);
    expect((await stat(sidecar)).size).toBeLessThan(METADATA_MAX_BYTES);
    const parsed = await nodePeak(`import(${JSON.stringify(join(REPO_ROOT, 'dist/transports/bundle/metadata.js'))}).then(async (m) => {
      const { readFileSync } = await import('node:fs');
      process.stdout.write(String(m.parseMetadata(readFileSync(${JSON.stringify(sidecar)}), 'ferry.json').blobs.length));
    })`);
    expect(parsed.code, parsed.stderr).toBe(0);
    expect(parsed.stdout).toBe(String(IMAGES * 5 + 20));
    expect(parsed.peakBytes).toBeLessThan(RSS_BUDGET);

    // Every reader takes what the writer wrote (before format 2 both refused it: exit 6).
    const inspect = await nodePeak(null, ['inspect', output, '--json']);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect((JSON.parse(inspect.stdout) as { images: unknown[] }).images).toHaveLength(IMAGES);
    const verify = await nodePeak(null, ['verify', output, '--json']);
    expect(verify.code, verify.stderr).toBe(0);
    // Their peak RSS is the read side's (reader, entry index, parallel verify): shown here, not yet held to the budget.
    console.log(`${IMAGES} images: metadata ${(await stat(sidecar)).size} bytes, parse peak ${parsed.peakBytes}, inspect peak ${inspect.peakBytes}, verify peak ${verify.peakBytes}`);
  }, 600_000);
});
