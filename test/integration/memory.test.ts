import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage, makeStreamLayer } from '../support/images.js';
import { targetOf } from '../support/http.js';
import { pushArtifact } from '../support/push.js';
import { type RegistryHandle, startRegistry } from '../support/registry.js';
import { peakRssKiB, requireGnuTime, RSS_BUDGET_KIB } from '../support/peak-rss.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

/**
 * Bounded memory is a property, not a timing: the peak RSS of every command
 * must not grow with the size of a layer. A 256 MiB layer (incompressible, so
 * the bytes really flow) is compared with a 2 MiB one; the benchmark runs the
 * same check at 2 GiB.
 */
const SMALL = 2 * 1024 * 1024;
const LARGE = 256 * 1024 * 1024;
// Garbage-collector slack under allocation pressure, not a per-byte cost: the benchmark
// shows the same peak at 2 GiB as here.
const GROWTH_ALLOWED_KIB = 64 * 1024;

describe('peak memory does not grow with layer size', () => {
  let reg: RegistryHandle;
  let target: RegistryHandle;
  let tmp: TempDir;

  beforeAll(async () => {
    requireGnuTime();
    reg = await startRegistry();
    target = await startRegistry();
    tmp = makeTempDir('ferry-memory-');
    for (const [name, size] of [['small', SMALL], ['large', LARGE]] as const) {
      const layer = await makeStreamLayer({ seed: size, size, compressible: false, files: 1 });
      const image = makeImage({ layers: [layer], mediaTypes: 'oci' });
      await pushArtifact(targetOf(reg), `mem/${name}`, image, ['1']);
    }
  }, 600_000);

  afterAll(async () => {
    await reg?.stop();
    await target?.stop();
    await tmp?.cleanup();
  });

  it('export, verify, import and push of a 256 MiB layer peak like a 2 MiB one, and under 200 MiB', async () => {
    const peaks: Record<string, { small: number; large: number }> = {};
    for (const name of ['small', 'large'] as const) {
      const bundle = join(tmp.path, `${name}.tar`);
      const steps: [string, string[]][] = [
        ['export', ['export', `${reg.host}/mem/${name}:1`, '-o', bundle, '--cache', join(tmp.path, `cache-${name}`), '--quiet']],
        ['verify', ['verify', bundle, '--quiet']],
        ['import', ['import', bundle, '--to', 'registry-layout', join(tmp.path, `layout-${name}`), '--quiet']],
        ['push', ['push', bundle, '--to', `${target.host}/${name}`, '--receipt', join(tmp.path, `receipt-${name}.json`), '--quiet']],
      ];
      for (const [step, args] of steps) {
        peaks[step] ??= { small: 0, large: 0 };
        peaks[step][name] = await peakRssKiB(args);
      }
    }
    for (const [step, p] of Object.entries(peaks)) {
      expect(p.large, `${step}: peak RSS ${p.large} KiB with 256 MiB vs ${p.small} KiB with 2 MiB`).toBeLessThan(p.small + GROWTH_ALLOWED_KIB);
      expect(p.large, `${step}: peak RSS ${p.large} KiB`).toBeLessThan(RSS_BUDGET_KIB);
    }
  }, 600_000);
});
