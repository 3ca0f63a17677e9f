// `ferry verify` end to end: a good bundle, then copies damaged the ways bundles get
// damaged on the way across (a flipped bit, a cut transfer, a lost entry).
import { copyFile, readFile, writeFile } from 'node:fs/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { runFerry } from '../support/cli.js';
import type { Image } from '../support/images.js';
import { type CliEnv, entry, ferryOk, flipByteInBlob, imagesList, jsonOf, rewriteTar, startCliEnv, tarOffsets, writeList } from './cli-fixture.js';

let env: CliEnv;
let bundle: string;
/** A layer only apps/web:v1 uses, so the broken image is known. */
let layer: { digest: string; size: number };
let webRef: string;

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }

beforeAll(async () => {
  env = await startCliEnv(0xe2);
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  const web = entry(env.corpus, 'apps/web');
  webRef = `${env.corpus.host}/${web.refs[0]!}`;
  const l = (web.artifact as Image).layers[1]!;
  const users = env.corpus.entries.filter((e) => (e.artifact.kind === 'index' ? e.artifact.manifests : [e.artifact]).some((m) => m.layers.some((x) => x.digest === l.digest)));
  expect(users).toHaveLength(1);
  layer = { digest: l.digest, size: l.size };
});
afterAll(async () => env?.stop());

async function layerOffset(file: string): Promise<{ offset: number; size: number }> {
  const at = (await tarOffsets(file)).get(`blobs/sha256/${layer.digest.slice(7)}`);
  if (!at) throw new Error(`${layer.digest} not in ${file}`);
  expect(at.size).toBe(layer.size);
  return at;
}

describe('ferry verify', () => {
  it('passes a good bundle (exit 0) and counts every image and blob', async () => {
    const r = await ferryOk(['verify', bundle, '--json']);
    const doc = jsonOf<{ images: number; blobs: number; bytes: number }>(r);
    expect(doc.images).toBe(env.corpus.refs.length);
    expect(doc.blobs).toBe(env.corpus.blobs.size + env.corpus.manifests.size);
    const human = await ferryOk(['verify', bundle]);
    expect(human.stdout).toContain('OK');
  });

  it('a flipped byte inside a layer → E_DIGEST_MISMATCH naming the digest and the image', async () => {
    const bad = env.path('flipped.tar');
    await copyFile(bundle, bad);
    await layerOffset(bad);
    await flipByteInBlob(bad, layer.digest);
    const r = await runFerry(['verify', bad, '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    const doc = jsonOf<ErrorDoc>(r);
    expect(doc.error.code).toBe('E_DIGEST_MISMATCH');
    expect(doc.error.exitStatus).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    expect(doc.error.message).toContain(layer.digest);
    expect(doc.error.message).toContain(webRef);
    // Human form goes to stderr, same facts.
    const h = await runFerry(['verify', bad]);
    expect(h.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    expect(h.stderr).toContain('E_DIGEST_MISMATCH');
    expect(h.stderr).toContain(layer.digest);
    expect(h.stdout).not.toContain('OK');
  });

  it('a copy cut in the middle of a layer → E_BUNDLE_TRUNCATED', async () => {
    const at = await layerOffset(bundle);
    const bytes = await readFile(bundle);
    const cut = env.path('truncated.tar');
    await writeFile(cut, bytes.subarray(0, at.offset + Math.floor(at.size / 2)));
    const r = await runFerry(['verify', cut, '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_BUNDLE_TRUNCATED);
    expect(jsonOf<ErrorDoc>(r).error.code).toBe('E_BUNDLE_TRUNCATED');
  });

  it('a bundle with a blob entry removed → an error naming the missing digest', async () => {
    const holed = env.path('holed.tar');
    await rewriteTar(bundle, holed, (name) => name === `blobs/sha256/${layer.digest.slice(7)}`);
    expect((await tarOffsets(holed)).has(`blobs/sha256/${layer.digest.slice(7)}`)).toBe(false);
    const r = await runFerry(['verify', holed, '--json']);
    expect(r.code).not.toBe(0);
    const doc = jsonOf<ErrorDoc>(r);
    expect(EXIT_STATUS[doc.error.code as keyof typeof EXIT_STATUS]).toBe(r.code);
    expect(r.code).toBe(6);
    // Named as its entry (blobs/sha256/<hex>) or as a digest: either way the hex is there.
    expect(doc.error.message).toContain(layer.digest.slice(7));
  });

  it('reads the bundle from stdin too', async () => {
    const r = await ferryOk(['verify', '-', '--json'], { input: await readFile(bundle) });
    expect(jsonOf<{ images: number }>(r).images).toBe(env.corpus.refs.length);
  });
});
