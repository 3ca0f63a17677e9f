// A bundle cut short (an interrupted copy, a full disk, a dropped transfer) lands every image
// whose blobs all arrived, and the error names exactly the images that did not — for any cut
// point (a property test over random cuts of one generated bundle), in process through the
// same importBundle the CLI runs, into an OCI layout that records what landed.
import fc from 'fast-check';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBundle } from '../../../src/app/import.js';
import { NO_REGISTRY_ACCESS } from '../../../src/app/registry-access.js';
import { type FerryError, isFerryError } from '../../../src/errors.js';
import { type Artifact, makeImage, makeIndex, makeLayer, manifestsOf, Rng } from '../../support/images.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Entry, originOf, writeBundle } from '../bundle/fixture.js';

const RUNS = process.env.FERRY_STRESS ? 400 : 40;

let tmp: TempDir;
let bundle: Buffer;
let entries: Entry[];
/** Where each entry's content ends in the uncompressed bundle, by tar name. */
let ends: Map<string, number>;
/** Where ferry.json's content ends: a cut before it leaves nothing to name images by. */
let metaEnd: number;

beforeAll(async () => {
  tmp = makeTempDir('ferry-truncated-import-');
  const rng = new Rng(0x7c7);
  const base = await makeLayer(rng, { size: 3000 });
  const layer = async () => makeLayer(rng, { size: rng.int(1500, 4500), compressible: false });
  entries = [];
  for (let i = 0; i < 5; i++) {
    entries.push({ artifact: makeImage({ layers: [base, await layer()], mediaTypes: i % 2 ? 'docker' : 'oci', labels: { n: String(i) } }), repository: `registry.example.com/team/app${i}`, tag: '1.0' });
  }
  const amd = makeImage({ layers: [base, await layer()], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'amd64' }, labels: { n: 'multi' } });
  const arm = makeImage({ layers: [await layer()], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, labels: { n: 'multi' } });
  entries.push({ artifact: makeIndex([amd, arm], 'oci'), repository: 'docker.io/library/multi', tag: '2' });
  // A layer of its own after everything else: cuts inside it spare every other image.
  entries.push({ artifact: makeImage({ layers: [await layer(), await layer()], mediaTypes: 'oci', labels: { n: 'last' } }), repository: 'quay.io/zz/last', tag: 'v9' });
  const output = join(tmp.path, 'whole.tar');
  await writeBundle(entries, { output, storeDir: join(tmp.path, 'store') });
  bundle = await readFile(output);
  ends = contentEnds(bundle);
  metaEnd = ends.get('ferry.json')!;
});
afterAll(async () => tmp?.cleanup());

/** Reads the tar headers with code independent of src/: name → end of its content. */
function contentEnds(tar: Buffer): Map<string, number> {
  const out = new Map<string, number>();
  let pos = 0;
  while (pos + 512 <= tar.length) {
    const h = tar.subarray(pos, pos + 512);
    if (h.every((b) => b === 0)) break;
    const name = h.subarray(0, 100).toString('latin1').replace(/\0.*$/s, '');
    const size = parseInt(h.subarray(124, 136).toString('latin1').replace(/\0.*$/s, '').trim() || '0', 8);
    out.set(name, pos + 512 + size);
    pos += 512 + Math.ceil(size / 512) * 512;
  }
  return out;
}

/** Every blob an artifact needs (manifests included), as tar names. */
function namesOf(a: Artifact): string[] {
  const digests = new Set<string>();
  for (const m of manifestsOf(a)) {
    digests.add(m.digest);
    if (m.kind === 'manifest') for (const b of m.blobs) digests.add(b.digest);
  }
  return [...digests].map((d) => `blobs/sha256/${d.slice(7)}`);
}

/** The images whose every blob lies whole before `cut`. */
function arrivedBefore(cut: number): Set<string> {
  return new Set(entries.filter((e) => namesOf(e.artifact).every((n) => ends.get(n)! <= cut)).map(originOf));
}

let runs = 0;
/** Imports `bytes` into a fresh OCI layout; returns the images it holds and the error, if any. */
async function importCut(bytes: Buffer): Promise<{ landed: Set<string>; error?: FerryError }> {
  const n = ++runs;
  const file = join(tmp.path, `cut-${n}.tar`);
  await writeFile(file, bytes);
  const target = join(tmp.path, `oci-${n}`);
  let error: FerryError | undefined;
  try {
    await importBundle({ bundle: file, to: { kind: 'oci', location: target }, jobs: 2, registry: NO_REGISTRY_ACCESS, receiptFile: join(tmp.path, `receipt-${n}.json`) });
  } catch (e) {
    error = e as FerryError;
  }
  const index = await readFile(join(target, 'index.json'), 'utf8').then((t) => JSON.parse(t) as { manifests: Array<{ annotations?: Record<string, string> }> }, () => ({ manifests: [] }));
  // The target drops the registry host (a mirror's naming): map each name back to the image it came from.
  const byTarget = new Map(entries.map((e) => [`${e.repository.slice(e.repository.indexOf('/') + 1)}:${e.tag}`, originOf(e)]));
  const landed = new Set(index.manifests.map((m) => byTarget.get(m.annotations?.['org.opencontainers.image.ref.name'] ?? '') ?? '?'));
  return { landed, ...(error ? { error } : {}) };
}

/** The images an error says did not land: its per-image failures, or (for a cut in the head) the images it names. */
function named(e: FerryError): Set<string> {
  const failures = e.details['failures'] as Array<{ image: string }> | undefined;
  if (failures) return new Set(failures.map((f) => f.image));
  return new Set((e.details['images'] as string[] | undefined) ?? []);
}

function expectTruncated(error: FerryError | undefined, cut: number): FerryError {
  expect(error, `cut at ${cut}: no error`).toBeDefined();
  expect(isFerryError(error, 'E_BUNDLE_TRUNCATED'), `cut at ${cut}: ${error?.code}: ${error?.message}`).toBe(true);
  expect(error!.exitStatus).toBe(6);
  expect(error!.hint).toBeTruthy();
  return error!;
}

describe('a truncated bundle', () => {
  it('imports whole when it is whole (so every cut below fails for its own reason)', async () => {
    const { landed, error } = await importCut(bundle);
    expect(error).toBeUndefined();
    expect(landed).toEqual(new Set(entries.map(originOf)));
  });

  it('lands exactly the images whose blobs all lie before any cut, and names exactly the others', async () => {
    const boundaries = [...ends.values()].flatMap((e) => [e - 1, e, e + 1, e + 511, e + 512]).filter((c) => c > 0 && c < bundle.length);
    await fc.assert(fc.asyncProperty(fc.oneof(fc.integer({ min: 0, max: bundle.length - 1 }), fc.constantFrom(...boundaries)), async (cut) => {
      const { landed, error } = await importCut(bundle.subarray(0, cut));
      const expected = arrivedBefore(cut);
      expect(landed, `cut at ${cut} of ${bundle.length}`).toEqual(expected);
      const err = expectTruncated(error, cut);
      expect(err.message).toContain(`cut-${runs}.tar`);
      if (cut < metaEnd) return; // nothing says which images the file held
      expect(named(err), `cut at ${cut}: ${err.message}`).toEqual(new Set(entries.map(originOf).filter((o) => !expected.has(o))));
    }), { numRuns: RUNS, seed: 0x7c7 });
  });
});
