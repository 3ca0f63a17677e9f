// `ferry demo`: the whole job on generated images, offline. Its claims are checked
// independently: the real registry (our harness) serves the layout it wrote, and
// every digest it prints is the one the bundle holds.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { ferryOk, jsonOf, serveAndCheck } from './cli-fixture.js';

interface DemoDoc {
  bundle: string;
  layout: string;
  imported: { images: { repository: string; tag?: string; digest: string; status: string }[] };
  served: { reference: string; digest: string }[];
}

let tmp: TempDir;
beforeAll(() => {
  tmp = makeTempDir('ferry-cli-demo-');
});
afterAll(async () => tmp?.cleanup());

describe('ferry demo', () => {
  it('exits 0, prints the served digests, and the layout it wrote really serves them', async () => {
    const r = await ferryOk(['demo', '--dir', `${tmp.path}/json`, '--json']);
    const doc = jsonOf<DemoDoc>(r);
    expect(doc.served.length).toBeGreaterThan(0);
    expect(doc.served).toHaveLength(doc.imported.images.length);
    for (const img of doc.imported.images) expect(img.status).toBe('done');

    // The bundle's own view of the images agrees with what was served.
    const inspected = jsonOf<{ images: { reference: string; digest: string }[] }>(await ferryOk(['inspect', doc.bundle, '--json']));
    const bundleDigests = inspected.images.map((i) => i.digest).sort();
    expect(doc.served.map((s) => s.digest).sort()).toEqual(bundleDigests);

    // Independently: our registry launcher on the demo's layout, every image deep-validated.
    await serveAndCheck(doc.layout, doc.imported.images.map((i) => ({ repo: i.repository, ref: i.tag ?? i.digest, digest: i.digest })));

    const human = await ferryOk(['demo', '--dir', `${tmp.path}/human`]);
    for (const s of doc.served) {
      const name = s.reference.slice(s.reference.indexOf('/') + 1);
      expect(human.stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:\\d+/${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s+${s.digest}`));
    }
  });
});
