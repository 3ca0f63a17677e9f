// `ferry import --to skopeo-dir` end to end: the real skopeo pushes each written
// directory to a fresh registry, and the pushed digests are the originals.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Image } from '../support/images.js';
import { startRegistry } from '../support/registry.js';
import { destFlags, skopeo, skopeoInspectDigest } from '../support/skopeo.js';
import { validateDirImage } from '../support/validate.js';
import { type CliEnv, entry, ferryOk, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';

let env: CliEnv;
let bundle: string;
let out: string;

/** Where ferry puts an image: `<out>/<repository>:<tag>` or `<out>/<repository>@<digest>`. */
function dirOf(repo: string, tag: string | undefined, digest: string): string {
  return join(out, tag !== undefined ? `${repo}:${tag}` : `${repo}@${digest}`);
}

beforeAll(async () => {
  env = await startCliEnv(0xe4);
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar.zst');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  out = env.path('dirs');
  const receipt = jsonOf<{ images: { status: string }[] }>(await ferryOk(['import', bundle, '--to', 'skopeo-dir', out, '--receipt', env.path('receipt.json'), '--json']));
  expect(receipt.images.filter((i) => i.status === 'done')).toHaveLength(env.corpus.refs.length);
});
afterAll(async () => env?.stop());

describe('ferry import --to skopeo-dir', () => {
  it('writes one valid dir per image; skopeo copies each to a fresh registry with the original digest', async () => {
    const fresh = await startRegistry();
    try {
      for (const e of env.corpus.entries) {
        for (const tag of e.tags.length > 0 ? e.tags : [undefined]) {
          const dir = dirOf(e.repo, tag, e.digest);
          const walked = await validateDirImage(dir, { expectDigest: e.digest, requireAllChildren: e.artifact.kind === 'index' });
          expect(walked.digest).toBe(e.digest);
          const destRef = `${fresh.host}/${e.repo}:${tag ?? 'pinned'}`;
          const r = await skopeo(['copy', ...(e.artifact.kind === 'index' ? ['--all'] : []), ...destFlags(), `dir:${dir}`, `docker://${destRef}`]);
          expect(r.code, `${dir}: ${r.stderr}`).toBe(0);
          expect(await skopeoInspectDigest(destRef)).toBe(e.digest);
        }
      }
    } finally {
      await fresh.stop();
    }
  });

  it('shares blobs between image dirs as hard links (same inode)', async () => {
    const os = entry(env.corpus, 'library/base-os');
    const web = entry(env.corpus, 'apps/web');
    const abc = entry(env.corpus, 'a/b/c');
    const base = (os.artifact as Image).layers[0]!.digest.slice(7);
    expect((web.artifact as Image).layers[0]!.digest.slice(7)).toBe(base);
    const files = [
      join(dirOf(os.repo, '1.0', os.digest), base),
      join(dirOf(os.repo, 'latest', os.digest), base),
      join(dirOf(web.repo, 'v1', web.digest), base),
      join(dirOf(abc.repo, 'stable', abc.digest), base),
    ];
    const stats = await Promise.all(files.map((f) => stat(f)));
    expect(new Set(stats.map((s) => s.ino)).size).toBe(1);
    expect(stats[0]!.nlink).toBeGreaterThanOrEqual(files.length);
  });
});
