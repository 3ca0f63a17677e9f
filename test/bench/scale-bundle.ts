// `vite-node test/bench/scale-bundle.ts -- OUT.tar [IMAGES] [LAYERS] [SEED]`: writes a bundle of the
// "Bundles of 10,000 images" measurements (spec/robustness.md) with the real bundle writer, as
// bundle-scale.test.ts does: A is 10,000 images and 0 layers of their own (20,020 blobs), B is
// 10,000 images and 3 (50,020 blobs); another SEED gives other images (a second side for `diff`).
// For measuring peak RSS by hand; nothing is asserted.
import { writeScaleBundle } from '../support/scale-images.js';

const [output, images = '10000', layers = '3', seed] = process.argv.slice(2).filter((a) => a !== '--');
if (output === undefined) throw new Error('usage: scale-bundle.ts OUT.tar [IMAGES] [LAYERS] [SEED]');
const n = await writeScaleBundle(output, { images: Number(images), layers: Number(layers), ...(seed !== undefined ? { seed: Number(seed) } : {}) });
console.log(`${output}: ${n} images`);
