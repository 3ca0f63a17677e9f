// Import from a bundle file: a blob of some size is copied by a worker thread — each
// chunk read once from the bundle, written into the target's temp file and hashed —
// instead of streamed through the main thread (stream/verify.ts copyVerified). The
// promises of the stream path hold: a damaged blob never appears under its name and
// leaves nothing behind, every other image lands, the run exits with the verifier's
// code, and a rerun with a good copy of the bundle completes.
import { copyFile, readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { runFerry } from '../support/cli.js';
import { type Image, makeImage, makeLayer } from '../support/images.js';
import { Rng } from '../support/prng.js';
import { pushArtifact } from '../support/push.js';
import { type CliEnv, expectationsOf, ferryOk, flipByteInBlob, imagesList, jsonOf, serveAndCheck, sha256File, startCliEnv, writeList } from './cli-fixture.js';

let env: CliEnv;
let bundle: string;
let big: Image;
/** Far above the size from which a worker copies (256 KiB), several of its 1 MiB chunks. */
const LAYER_BYTES = 3_000_000;

beforeAll(async () => {
  env = await startCliEnv(0xc0b1);
  const layer = await makeLayer(new Rng(0xc0b1), { size: LAYER_BYTES, compressible: false });
  big = makeImage({ layers: [layer], mediaTypes: 'oci', labels: { name: 'big' } });
  await pushArtifact(env.reg.url, 'big/app', big, ['v1']);
  const list = await writeList(env.path('images.list'), `${imagesList(env.corpus)}${env.corpus.host}/big/app:v1\n`);
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
});
afterAll(async () => env?.stop());

/** Every file below `dir`, relative. */
async function filesUnder(dir: string): Promise<string[]> {
  return (await readdir(dir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => join(e.parentPath, e.name).slice(dir.length + 1));
}

describe('import from a bundle file, large blobs copied by a worker', () => {
  it('a flipped byte in a large layer: that image fails with E_DIGEST_MISMATCH naming the blob, nothing of it is left in registry-layout or oci targets, the rest lands; a rerun with a good copy completes', async () => {
    const layer = big.layers[0]!;
    expect(layer.size).toBeGreaterThan(1024 * 1024);
    const hex = layer.digest.slice('sha256:'.length);
    const bad = env.path('bad.tar');
    await copyFile(bundle, bad);
    await flipByteInBlob(bad, layer.digest);
    const targets = [
      { kind: 'registry-layout', dest: env.path('layout'), data: (root: string) => join(root, 'docker/registry/v2/blobs/sha256', hex.slice(0, 2), hex, 'data') },
      { kind: 'oci', dest: env.path('oci'), data: (root: string) => join(root, 'blobs/sha256', hex) },
    ];
    for (const t of targets) {
      const r = await runFerry(['import', bad, '--to', t.kind, t.dest, '--receipt', env.path(`${t.kind}.json`), '--json']);
      const err = jsonOf<{ error: { code: string; exitStatus: number; message: string; details: { failures: { image: string; code: string }[] } } }>(r).error;
      expect(err.code, t.kind).toBe('E_DIGEST_MISMATCH');
      expect(r.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
      expect(err.exitStatus).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
      expect(err.message).toContain(layer.digest);
      expect(err.message).toContain(bad);
      expect(err.details.failures.map((f) => f.image)).toEqual([`${env.corpus.host}/big/app:v1`]);
      const files = await filesUnder(t.dest);
      expect(files.filter((f) => f.includes(hex)), t.kind).toEqual([]);
      expect(files.filter((f) => f.includes('.ferry-tmp')), t.kind).toEqual([]);
    }
    // What landed is served; the broken image is not.
    await serveAndCheck(targets[0]!.dest, expectationsOf(env.corpus));

    for (const t of targets) {
      await ferryOk(['import', bundle, '--to', t.kind, t.dest, '--receipt', env.path(`${t.kind}.again.json`), '-q']);
      expect(await sha256File(t.data(t.dest)), t.kind).toBe(layer.digest);
      expect((await filesUnder(t.dest)).filter((f) => f.includes('.ferry-tmp')), t.kind).toEqual([]);
    }
    await serveAndCheck(targets[0]!.dest, [...expectationsOf(env.corpus), { repo: 'big/app', ref: 'v1', digest: big.digest }]);
    const index = JSON.parse(await readFile(join(targets[1]!.dest, 'index.json'), 'utf8')) as { manifests: { digest: string }[] };
    expect(index.manifests.map((m) => m.digest)).toContain(big.digest);
  });
});
