// Two imports into one OCI layout at once: index.json is read, merged and written
// under the layout's pid-owned lock, so neither loses the other's entries; a lock a
// killed run left behind is taken over.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openOciLayout } from '../../../src/transports/oci-layout/index.js';
import { INDEX_LOCK } from '../../../src/transports/oci-layout/index-file.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Fixtures, makeFixtures, writeArtifacts } from './helpers.js';

let fx: Fixtures;
let tmp: TempDir;
beforeAll(async () => {
  fx = await makeFixtures(11);
  tmp = makeTempDir('ferry-oci-lock-');
});
afterAll(async () => tmp.cleanup());

const refNames = async (root: string): Promise<string[]> =>
  (JSON.parse(await readFile(join(root, 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] }).manifests
    .map((m) => m.annotations?.['org.opencontainers.image.ref.name'] ?? '').sort();

describe('OCI layout index.json under concurrent imports', () => {
  it('eight imports committing at once into one layout: every entry survives', async () => {
    const root = join(tmp.path, 'concurrent');
    const dests = Array.from({ length: 8 }, () => openOciLayout(root));
    // Everything up to the commit first, then all commits at once: each reads index.json while the others write it.
    await Promise.all(dests.map((d, i) => writeArtifacts(d, [{ repository: `team/app${i}`, tag: `v${i}`, artifact: i % 2 ? fx.dockerImage : fx.ociImage }], false)));
    await Promise.all(dests.map((d) => d.commit()));
    expect(await refNames(root)).toEqual(Array.from({ length: 8 }, (_, i) => `team/app${i}:v${i}`).sort());
    expect(existsSync(join(root, INDEX_LOCK))).toBe(false);
  });

  it('a lock left by a killed run (its pid is gone) is taken over; the commit completes', async () => {
    const root = join(tmp.path, 'stale-lock');
    const dest = openOciLayout(root);
    await writeArtifacts(dest, [{ repository: 'a', tag: '1', artifact: fx.ociImage }], false);
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
    await new Promise((r) => child.once('exit', r));
    await writeFile(join(root, INDEX_LOCK), `${child.pid} 0123456789abcdef`);
    await dest.commit();
    expect(await refNames(root)).toEqual(['a:1']);
    expect(existsSync(join(root, INDEX_LOCK))).toBe(false);
  });
});
