// Property: ferry reads back what it writes. For every target kind ferry both writes and
// reads (registry-layout, skopeo-dir, oci), `export --from KIND:DIR` of what
// `import B --to KIND:DIR` wrote is B again — the same bundle id and the same bytes — for
// random small sets of images: one-component names (`python`), nested ones, names with a
// registry (given back with --registry-name, since an import drops the host), Docker and OCI
// media types, shared layers and two-platform indexes. Tagged images only: a registry
// layout enumerates its tags (spec/bundle.md §3.2).
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { makeImage, makeIndex, makeLayer, Rng, type Artifact, type Layer } from '../support/images.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { jsonOf } from './cli-fixture.js';
import { writeOciLayout } from '../support/oci-layout.js';
import { readMetadata } from '../support/bundle-metadata.js';

const RUNS = process.env['FERRY_STRESS'] ? 40 : 5;
const HOST = 'registry.example:5000';
const NAMES = ['python', 'pause', 'a', 'team/app', 'team/app-2', 'x/y/z', 'library/nginx'];
const TAGS = ['1', '1.0', 'latest', 'v2.3_rc-1', 'stable'];
const KINDS = ['registry-layout', 'skopeo-dir', 'oci'] as const;

const imageSpec = fc.record({
  name: fc.constantFrom(...NAMES),
  tag: fc.constantFrom(...TAGS),
  docker: fc.boolean(),
  platforms: fc.constantFrom(0 as const, 2 as const),
  shared: fc.integer({ min: 0, max: 2 }),
});
const runSpec = fc.record({
  seed: fc.integer({ min: 1, max: 1_000_000 }),
  qualified: fc.boolean(),
  images: fc.uniqueArray(imageSpec, { minLength: 1, maxLength: 4, selector: (i) => `${i.name}:${i.tag}` }),
});

let tmp: TempDir;
let n = 0;
const path = (name: string) => join(tmp.path, `${String(++n).padStart(4, '0')}-${name}`);

beforeAll(() => {
  tmp = makeTempDir('ferry-round-trip-');
});
afterAll(async () => {
  await tmp?.cleanup();
});


type RunSpec = typeof runSpec extends fc.Arbitrary<infer T> ? T : never;

async function build(spec: RunSpec): Promise<{ artifact: Artifact; ref: string }[]> {
  const rng = new Rng(spec.seed);
  const shared: Layer[] = [];
  for (let i = 0; i < 2; i++) shared.push(await makeLayer(rng.fork(`shared-${i}`), { size: 2_000 + i * 1_500 }));
  const out: { artifact: Artifact; ref: string }[] = [];
  for (const [i, s] of spec.images.entries()) {
    const types = s.docker ? 'docker' : 'oci';
    const own = await makeLayer(rng.fork(`own-${i}`), { size: 1_000 + i * 500 });
    const layers = [...shared.slice(0, s.shared), own];
    const artifact = s.platforms === 0
      ? makeImage({ layers, mediaTypes: types, labels: { i: String(i) } })
      : makeIndex([
        makeImage({ layers, mediaTypes: types, platform: { os: 'linux', architecture: 'amd64' }, labels: { i: String(i) } }),
        makeImage({ layers: [own], mediaTypes: types, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, labels: { i: String(i) } }),
      ], types);
    out.push({ artifact, ref: `${spec.qualified ? `${HOST}/` : ''}${s.name}:${s.tag}` });
  }
  return out;
}

async function exportFrom(from: string, extra: string[] = []): Promise<{ file: string; bundleId: string; sha: string }> {
  const file = path('b.tar');
  const r = await runFerry(['export', '--from', from, '-o', file, '--cache', join(tmp.path, 'cache'), '--json', ...extra]);
  if (r.code !== 0) throw new Error(`export --from ${from} exited ${r.code}: ${r.stdout}${r.stderr}`);
  return { file, bundleId: jsonOf<{ bundleId: string }>(r).bundleId, sha: createHash('sha256').update(await readFile(file)).digest('hex') };
}

describe('import --to KIND then export --from KIND gives the same bundle', () => {
  it('for registry-layout, skopeo-dir and oci, random image sets with one-component and qualified names', async () => {
    let qualifiedRuns = 0;
    let bareRuns = 0;
    await fc.assert(fc.asyncProperty(runSpec, async (spec) => {
      const images = await build(spec);
      const source = path('src');
      await writeOciLayout(source, images);
      const original = await exportFrom(`oci:${source}`);
      // The names are recorded as the layout wrote them: with the host, or without any.
      const meta = await readMetadata(`${original.file}.ferry.json`);
      expect(meta.images.map((i) => `${i.repository}:${i.tag}`).sort()).toEqual(images.map((i) => i.ref).sort());
      for (const kind of KINDS) {
        const target = path(kind);
        const r = await runFerry(['import', original.file, '--to', `${kind}:${target}`, '--json']);
        expect(r.code, `${kind}: ${r.stdout}${r.stderr}`).toBe(0);
        const again = await exportFrom(`${kind}:${target}`, spec.qualified ? ['--registry-name', HOST] : []);
        expect(again.bundleId, `${kind} ${JSON.stringify(spec)}`).toBe(original.bundleId);
        expect(again.sha, `${kind} ${JSON.stringify(spec)}`).toBe(original.sha);
      }
      if (spec.qualified) qualifiedRuns++;
      else bareRuns++;
    }), { numRuns: RUNS, seed: 0x6e616d65, endOnFailure: true });
    // Both halves of the property ran (the seed is fixed, so this is deterministic).
    expect(qualifiedRuns).toBeGreaterThan(0);
    expect(bareRuns).toBeGreaterThan(0);
  });
});
