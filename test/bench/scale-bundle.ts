// `vite-node test/bench/scale-bundle.ts -- OUT.tar [IMAGES] [LAYERS] [SEED]`: writes the bundle of the
// "Bundles of 10,000 images" measurements (spec/robustness.md) with the real bundle writer, the
// way bundle-scale.test.ts builds it: A is 10,000 images and 0 layers of their own (20,020 blobs),
// B is 10,000 images and 3 (40,020 blobs). For measuring peak RSS by hand; nothing is asserted.
import { fetchConfigs, layoutRequest } from '../../src/app/bundle-layout.js';
import { copyImages } from '../../src/copy/engine.js';
import { planCopy } from '../../src/copy/plan.js';
import { BundleDestination } from '../../src/transports/bundle/writer.js';
import { MemorySource, requestsOf } from '../support/memory-transports.js';
import { scaleImages } from '../support/scale-images.js';

const [output, images = '10000', layers = '3', seed] = process.argv.slice(2).filter((a) => a !== '--');
if (output === undefined) throw new Error('usage: scale-bundle.ts OUT.tar [IMAGES] [LAYERS] [SEED]');
const placed = scaleImages({ images: Number(images), layers: Number(layers), ...(seed !== undefined ? { seed: Number(seed) } : {}) });
const source = new MemorySource(placed);
const plan = await planCopy(source, requestsOf(placed), { jobs: 16 });
const dest = new BundleDestination({ toolVersion: '0.0.0-test', output });
try {
  await fetchConfigs(source, dest.configSink(), plan, () => false, 'export', {});
  dest.layOut(layoutRequest(plan));
  await dest.open({});
  const report = await copyImages(source, dest, plan, { jobs: 16 });
  if (report.failures.length > 0) throw new Error(`${report.failures.length} blobs failed`);
  await dest.commit({});
} finally {
  await dest.close();
}
console.log(`${output}: ${placed.length} images`);
