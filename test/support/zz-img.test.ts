import { test, expect } from 'vitest';
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { makeLayer, makeImage, makeIndex, makeStreamLayer, Rng } from './images.js';
test('img', async () => {
  const a = await makeLayer(new Rng(1), { size: 200_000 });
  const b = await makeLayer(new Rng(1), { size: 200_000 });
  expect(a.digest).toBe(b.digest);
  console.log(a.digest, a.size, a.uncompressedSize);
  writeFileSync('/tmp/hs/l.tgz', a.bytes!);
  console.log(execFileSync('tar', ['tvzf', '/tmp/hs/l.tgz'], { encoding: 'utf8' }));
  const img = makeImage({ layers: [a], mediaTypes: 'oci' });
  console.log(img.bytes.toString());
  const t0 = Date.now();
  const s = await makeStreamLayer({ seed: 5, size: 50_000_000, compressible: false });
  console.log(s.size, s.digest, Date.now() - t0);
});
