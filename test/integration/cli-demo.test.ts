// `ferry demo`: the whole job on generated images, offline. Its claims are checked
// independently: the real registry (our harness) serves the layout it wrote, and
// every digest it prints is the one the bundle holds.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
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

  it('refuses a folder that holds files it did not make, deleting nothing; empties and reuses its own earlier folder', async () => {
    const mine = join(tmp.path, 'users-folder');
    await mkdir(join(mine, 'notes'), { recursive: true });
    await writeFile(join(mine, 'thesis.txt'), 'years of work');
    const r = await runFerry(['demo', '--dir', mine, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const err = jsonOf<{ error: { code: string; message: string } }>(r).error;
    expect(err.code).toBe('E_USAGE');
    expect(err.message).toContain(mine);
    expect((await readdir(mine)).sort()).toEqual(['notes', 'thesis.txt']);
    expect(await readFile(join(mine, 'thesis.txt'), 'utf8')).toBe('years of work');

    // The folder the first test's demo made (it left its marker there) is emptied and used again.
    const again = jsonOf<DemoDoc>(await ferryOk(['demo', '--dir', `${tmp.path}/json`, '--json']));
    expect(again.served.length).toBeGreaterThan(0);
  });
});
