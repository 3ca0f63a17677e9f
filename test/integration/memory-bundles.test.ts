import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeManyImagesBundle, type WrittenBundle } from '../support/bundles.js';
import { peakRssKiB, requireGnuTime, RSS_BUDGET_KIB } from '../support/peak-rss.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

/**
 * A bundle file is read at random: the head keeps manifests only, configs are
 * read when a blob job asks for them. Memory ceilings, not timings: verify of
 * 3,000 images, and of a bundle whose configs alone add up to 300 MB, peaks
 * under the 200 MiB ceiling (a reader holding every config could not).
 */
const IMAGES = 3_000;

describe('verify of a bundle file holds manifests, not configs', () => {
  let tmp: TempDir;
  let many: WrittenBundle;
  let bigConfigs: WrittenBundle;

  beforeAll(async () => {
    requireGnuTime();
    tmp = makeTempDir('ferry-memory-bundles-');
    // 3,000 images: a per-image cost (a manifest, a plan entry) shows; the ceiling is crossed near
    // 7,000 today by the parsed metadata, the plan and the head's manifests (on the JS heap, not configs).
    many = await writeManyImagesBundle(join(tmp.path, 'many.tar'), join(tmp.path, 'store-many'), { images: IMAGES, seed: IMAGES, ownLayerBytes: 256 });
    // 300 configs of 1 MB each (a label of that size): 300 MB of configs, 300 images.
    bigConfigs = await writeManyImagesBundle(join(tmp.path, 'configs.tar'), join(tmp.path, 'store-configs'), { images: 300, seed: 300, ownLayerBytes: 0, configPadBytes: 1_000_000 });
  }, 600_000);

  afterAll(async () => {
    await tmp?.cleanup();
  });

  it('verify of 3,000 images peaks under 200 MiB', () => {
    expect(many.images).toBe(IMAGES);
    const peak = peakRssKiB(['verify', many.path, '--quiet']);
    expect(peak, `verify of ${many.images} images (${many.blobs} blobs): peak RSS ${peak} KiB`).toBeLessThan(RSS_BUDGET_KIB);
  }, 600_000);

  it('verify of a bundle whose configs add up to 300 MB peaks under 200 MiB', () => {
    expect(bigConfigs.bytes).toBeGreaterThan(300_000_000);
    const peak = peakRssKiB(['verify', bigConfigs.path, '--quiet']);
    expect(peak, `verify of 300 configs of 1 MB: peak RSS ${peak} KiB`).toBeLessThan(RSS_BUDGET_KIB);
  }, 600_000);
});
