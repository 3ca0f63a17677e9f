import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeManyImagesBundle, type WrittenBundle } from '../support/bundles.js';
import { peakRssKiB, requireGnuTime, RSS_BUDGET_KIB } from '../support/peak-rss.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

/**
 * A bundle file is read at random: the head keeps manifests only, configs are
 * read when a blob job asks for them. A memory ceiling, not a timing: verify of
 * a bundle whose configs alone add up to 300 MB peaks under the 200 MiB ceiling
 * (a reader holding every config could not). The per-image cost at 10,000 images
 * is bundle-scale.test.ts's.
 */
describe('verify of a bundle file holds manifests, not configs', () => {
  let tmp: TempDir;
  let bigConfigs: WrittenBundle;

  beforeAll(async () => {
    requireGnuTime();
    tmp = makeTempDir('ferry-memory-bundles-');
    // 300 configs of 1 MB each (a label of that size): 300 MB of configs, 300 images.
    bigConfigs = await writeManyImagesBundle(join(tmp.path, 'configs.tar'), join(tmp.path, 'store-configs'), { images: 300, seed: 300, ownLayerBytes: 0, configPadBytes: 1_000_000 });
  }, 600_000);

  afterAll(async () => {
    await tmp?.cleanup();
  });

  it('verify of a bundle whose configs add up to 300 MB peaks under 200 MiB', async () => {
    expect(bigConfigs.bytes).toBeGreaterThan(300_000_000);
    const peak = await peakRssKiB(['verify', bigConfigs.path, '--quiet']);
    expect(peak, `verify of 300 configs of 1 MB: peak RSS ${peak} KiB`).toBeLessThan(RSS_BUDGET_KIB);
  }, 600_000);
});
