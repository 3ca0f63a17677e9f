// Repair instead of re-send (spec/repair.md): `ferry verify` writes a report of what
// is missing or damaged, `ferry export --repair` turns it into a bundle of just those
// blobs, and importing the good part then the repair bundle makes the target whole.
// Real registry as source and as push target, real files, real skopeo.
import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import type { BundleMetadata } from '../../src/transports/bundle/metadata.js';
import { BundleSource } from '../../src/transports/bundle/reader.js';
import { runFerry } from '../support/cli.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { skopeoInspectDigest, skopeoInspectRaw } from '../support/skopeo.js';
import { readMetadata } from '../support/bundle-metadata.js';
import {
  type CliEnv, expectationsOf, ferryOk, flipByteInBlob, imagesList, jsonOf, pushExtraImage, readBundleTar, serveAndCheck, sha256File, startCliEnv, writeList,
} from './cli-fixture.js';

interface Report {
  format: string; version: number; bundleId: string; metadataDigest: string;
  volumes?: { missing: number[]; damaged: number[] };
  blobs: { digest: string; size: number; mediaType: string; problem: string; images: string[] }[];
}
const REPAIR_SCHEMA = 'https://ferry.invalid/spec/repair.schema.json';

interface ErrorDoc { error: { code: string; message: string; hint?: string; details: Record<string, unknown> } }

let env: CliEnv;
let list: string;
let whole: string;
let wholeMeta: BundleMetadata;
let volumes: string[];
let metas: BundleMetadata[];

beforeAll(async () => {
  env = await startCliEnv(0x4e9a);
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  whole = env.path('whole.tar');
  await ferryOk(['export', '-f', list, '-o', whole, '--cache', env.path('cache'), ...env.net, '-q']);
  wholeMeta = await readMetadata(`${whole}.ferry.json`);
  // Room for the head and the largest layer: several volumes, no layer cut.
  const head = wholeMeta.blobs.filter((b) => b.kind !== 'layer').reduce((n, b) => n + b.size + 1024, 0) + 3 * Buffer.byteLength(JSON.stringify(wholeMeta)) + 16 * 1024;
  const largest = Math.max(...wholeMeta.blobs.filter((b) => b.kind === 'layer').map((b) => b.size));
  const dir = env.path('split');
  await mkdir(dir);
  const r = await ferryOk(['export', '-f', list, '-o', join(dir, 'rel.tar'), '--split', String(head + largest + 1024), '--cache', env.path('cache'), ...env.net, '--json']);
  volumes = jsonOf<{ volumes: { path: string }[] }>(r).volumes.map((v) => v.path);
  expect(volumes.length).toBeGreaterThanOrEqual(3);
  metas = await Promise.all(volumes.map((v) => BundleSource.peekMetadata(v)));
}, 240_000);
afterAll(async () => env?.stop());

function layersOf(meta: BundleMetadata): string[] {
  const kinds = new Map(meta.blobs.map((b) => [b.digest as string, b.kind]));
  return (meta.volume?.blobs ?? meta.blobs.map((b) => b.digest)).filter((d) => kinds.get(d) === 'layer');
}

/** A share holding every volume and the .sha256 list except volume `drop`. */
async function shareWithout(drop: number): Promise<string> {
  const share = env.path(`share-without-${drop}`);
  await mkdir(share);
  for (const [i, v] of volumes.entries()) if (i !== drop) await copyFile(v, join(share, basename(v)));
  await copyFile(join(dirname(volumes[0]!), 'rel.sha256'), join(share, 'rel.sha256'));
  return share;
}

/** The volume (not the first: it also carries the head) holding the most layers. */
function richVolume(): number {
  let best = 1;
  for (let i = 1; i < metas.length; i++) if (layersOf(metas[i]!).length > layersOf(metas[best]!).length) best = i;
  expect(layersOf(metas[best]!).length).toBeGreaterThan(0);
  return best;
}

describe('repair instead of re-send', () => {
  it('a missing volume: verify writes STEM.repair.json listing its layers; export --repair carries just those; good volumes + repair import whole', async () => {
    const k = richVolume();
    const share = await shareWithout(k);
    const v = await runFerry(['verify', join(share, 'rel.sha256'), '--json']);
    expect(v.code).toBe(EXIT_STATUS.E_BLOB_MISSING);
    const reportPath = join(share, 'rel.repair.json');
    const doc = jsonOf<ErrorDoc>(v);
    expect(doc.error.details['repairReport']).toBe(reportPath);
    expect(doc.error.message).toContain(`repair report: ${reportPath}`);
    expect(doc.error.hint).toContain('--repair');

    const report = JSON.parse(await readFile(reportPath, 'utf8')) as Report;
    expect(describeErrors(schemaErrors(REPAIR_SCHEMA, report))).toBe('');
    expect(describeErrors(schemaErrors(cliSchemaRef('errorDocument'), doc))).toBe('');
    expect(report.format).toBe('ferry-repair');
    expect(report.version).toBe(1);
    expect(report.bundleId).toBe(wholeMeta.bundleId);
    // The base it names is the split bundle's STEM.ferry.json, the file a --since would hash.
    expect(report.metadataDigest).toBe(await sha256File(join(dirname(volumes[0]!), 'rel.ferry.json')));
    expect(report.volumes).toEqual({ missing: [k], damaged: [] });
    expect(new Set(report.blobs.map((b) => b.digest))).toEqual(new Set(layersOf(metas[k]!)));
    for (const b of report.blobs) {
      const stored = wholeMeta.blobs.find((x) => x.digest === b.digest)!;
      expect(b.size).toBe(stored.size);
      expect(b.mediaType).toBe(stored.mediaType);
      expect(b.problem).toBe('missing');
      expect(b.images.length).toBeGreaterThan(0);
    }

    // Connected side: only the listed blobs are stored; the rest is omitted as held by the damaged bundle.
    const repair = env.path('repair.tar');
    const e = jsonOf<{ repair: { bundleId: string; blobs: number }; delta: { bases: { bundleId: string; metadataDigest: string }[] } }>(
      await ferryOk(['export', '-f', list, '--repair', reportPath, '-o', repair, '--cache', env.path('cache-repair'), ...env.net, '--json']),
    );
    expect(e.repair).toEqual({ bundleId: wholeMeta.bundleId, blobs: report.blobs.length });
    expect(describeErrors(schemaErrors(cliSchemaRef('exportResult'), e))).toBe('');
    expect(e.delta.bases).toEqual([{ bundleId: report.bundleId, metadataDigest: report.metadataDigest }]);
    const repairMeta = await readMetadata(`${repair}.ferry.json`);
    const storedConfigsAndLayers = repairMeta.blobs.filter((b) => b.kind === 'layer' || b.kind === 'config').map((b) => b.digest);
    expect(new Set(storedConfigsAndLayers)).toEqual(new Set(report.blobs.map((b) => b.digest)));
    const entries = (await readBundleTar(repair)).map((t) => t.name);
    for (const d of report.blobs) expect(entries).toContain(`blobs/sha256/${d.digest.slice(7)}`);
    await ferryOk(['verify', repair, '-q']);

    // Jump host: the good volumes land what they can, then the repair bundle completes the rest.
    const layout = env.path('layout');
    const partial = await runFerry(['import', join(share, 'rel.sha256'), '--to', 'registry-layout', layout, '-q']);
    expect(partial.code).not.toBe(0);
    const done = jsonOf<{ images: { status: string }[] }>(await ferryOk(['import', repair, '--to', 'registry-layout', layout, '--json']));
    expect(done.images.every((i) => i.status === 'done')).toBe(true);
    await serveAndCheck(layout, expectationsOf(env.corpus));

    // Or in one run: the repair bundle given beside the volumes replaces what they lack.
    const both = jsonOf<{ repairs: string[]; volumes: { missing: { volume: number }[] } }>(await ferryOk(['verify', join(share, 'rel.sha256'), repair, '--report', env.path('unused.json'), '--json']));
    expect(both.repairs).toEqual([repair]);
    expect(describeErrors(schemaErrors(cliSchemaRef('verifyResult'), both))).toBe('');
    expect(both.volumes.missing.map((m) => m.volume)).toEqual([k + 1]);
    const oneRun = env.path('layout-one-run');
    const one = jsonOf<{ images: { status: string }[] }>(await ferryOk(['import', repair, join(share, 'rel.sha256'), '--to', 'registry-layout', oneRun, '--json']));
    expect(one.images.every((i) => i.status === 'done')).toBe(true);
    await serveAndCheck(oneRun, expectationsOf(env.corpus));

    // The same through a registry: push the good part, then the repair bundle.
    await runFerry(['push', join(share, 'rel.sha256'), '--to', `${env.reg.host}/fixed`, ...env.net, '-q']);
    await ferryOk(['push', repair, '--to', `${env.reg.host}/fixed`, ...env.net, '-q']);
    for (const x of expectationsOf(env.corpus)) {
      const got = x.ref.startsWith('sha256:') ? (await skopeoInspectRaw(`${env.reg.host}/fixed/${x.repo}@${x.ref}`)).digest : await skopeoInspectDigest(`${env.reg.host}/fixed/${x.repo}:${x.ref}`);
      expect(got, `${x.repo} ${x.ref}`).toBe(x.digest);
    }
  });

  it('a damaged whole bundle: the report names the blob as digest-mismatch; damaged bundle + repair import whole', async () => {
    const bad = env.path('damaged.tar');
    await copyFile(whole, bad);
    const layer = layersOf(wholeMeta)[0]!;
    await flipByteInBlob(bad, layer);
    const reportPath = env.path('custom-report.json');
    const v = await runFerry(['verify', bad, '--report', reportPath, '--json']);
    expect(v.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    expect(existsSync(bad.replace(/\.tar$/, '.repair.json'))).toBe(false);
    const report = JSON.parse(await readFile(reportPath, 'utf8')) as Report;
    expect(describeErrors(schemaErrors(REPAIR_SCHEMA, report))).toBe('');
    expect(report.volumes).toBeUndefined();
    expect(report.metadataDigest).toBe(await sha256File(`${whole}.ferry.json`));
    expect(report.blobs.map((b) => [b.digest, b.problem])).toEqual([[layer, 'digest-mismatch']]);

    const repair = env.path('repair-one.tar');
    await ferryOk(['export', '-f', list, '--repair', reportPath, '-o', repair, '--cache', env.path('cache'), ...env.net, '-q']);
    const layout = env.path('layout-damaged');
    const partial = await runFerry(['import', bad, '--to', 'registry-layout', layout, '-q']);
    expect(partial.code).toBe(EXIT_STATUS.E_DIGEST_MISMATCH);
    await ferryOk(['import', repair, '--to', 'registry-layout', layout, '-q']);
    await serveAndCheck(layout, expectationsOf(env.corpus));

    // Given together, the damaged blob is read from the repair, not from the bundle.
    await ferryOk(['verify', bad, repair, '-q']);
    const oneRun = env.path('layout-damaged-one-run');
    await ferryOk(['import', bad, repair, '--to', 'registry-layout', oneRun, '-q']);
    await serveAndCheck(oneRun, expectationsOf(env.corpus));
  });

  it('a delta with new content is not taken for a repair when given beside a bundle', async () => {
    await pushExtraImage(env.reg.url, 'extra/tool', '1.0', 0x51);
    const list2 = await writeList(env.path('images2.list'), `${imagesList(env.corpus)}${env.reg.host}/extra/tool:1.0\n`);
    const delta = env.path('delta.tar');
    await ferryOk(['export', '-f', list2, '--since', whole, '-o', delta, '--cache', env.path('cache'), ...env.net, '-q']);
    const r = await runFerry(['import', whole, delta, '--to', 'registry-layout', env.path('layout-mixed'), '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_USAGE);
    expect(jsonOf<ErrorDoc>(r).error.message).toContain('it is a delta with new content, not a repair');
  });

  it('a bundle that verifies writes no report, and the repair bundle alone does not pretend to be whole', async () => {
    await ferryOk(['verify', whole, '-q']);
    expect(existsSync(whole.replace(/\.tar$/, '.repair.json'))).toBe(false);

    // A repair bundle imported where the good part never arrived: the omitted blobs are named as missing from the base.
    const report: Report = {
      format: 'ferry-repair', version: 1, bundleId: wholeMeta.bundleId, metadataDigest: await sha256File(`${whole}.ferry.json`),
      blobs: [{ digest: layersOf(wholeMeta)[0]!, size: 0, mediaType: 'x', problem: 'missing', images: [] }],
    };
    const reportPath = env.path('hand.repair.json');
    await writeFile(reportPath, JSON.stringify(report));
    const repair = env.path('repair-alone.tar');
    await ferryOk(['export', '-f', list, '--repair', reportPath, '-o', repair, '--cache', env.path('cache'), ...env.net, '-q']);
    const r = await runFerry(['import', repair, '--to', 'registry-layout', env.path('empty-layout'), '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_BASE_MISSING);
    expect(jsonOf<ErrorDoc>(r).error.message).toContain('not in this delta bundle');
  });

  it('bad reports and misuse are refused before any registry is contacted, naming the file and the field', async () => {
    const cases: [string, unknown, string][] = [
      ['not-json', '{', 'not JSON'],
      ['wrong-format', { format: 'ferry-inventory', version: 1 }, '"format" is not "ferry-repair"'],
      ['future', { format: 'ferry-repair', version: 2 }, 'version 2 is not supported'],
      ['no-blobs', { format: 'ferry-repair', version: 1, bundleId: wholeMeta.bundleId, metadataDigest: wholeMeta.bundleId, blobs: [] }, '"blobs" must list at least one blob'],
      ['bad-problem', { format: 'ferry-repair', version: 1, bundleId: wholeMeta.bundleId, metadataDigest: wholeMeta.bundleId, blobs: [{ digest: wholeMeta.bundleId, size: 1, mediaType: 'x', problem: 'lost' }] }, 'blobs[0].problem'],
    ];
    for (const [name, body, message] of cases) {
      const file = env.path(`${name}.json`);
      await writeFile(file, typeof body === 'string' ? body : JSON.stringify(body));
      // An unreachable registry: a report error must come first.
      const r = await runFerry(['export', 'nowhere.invalid/x:1', '--repair', file, '-o', env.path(`${name}.tar`), '--json']);
      expect(r.code, name).toBe(EXIT_STATUS.E_USAGE);
      const doc = jsonOf<ErrorDoc>(r);
      expect(doc.error.message, name).toContain(file);
      expect(doc.error.message, name).toContain(message);
      // The published schema refuses the same documents the reader does.
      if (typeof body !== 'string') expect(schemaErrors(REPAIR_SCHEMA, body).length, name).toBeGreaterThan(0);
    }
    const missing = await runFerry(['export', 'nowhere.invalid/x:1', '--repair', env.path('nope.json'), '-o', env.path('n.tar'), '--json']);
    expect(missing.code).toBe(EXIT_STATUS.E_NOT_FOUND);
    const both = await runFerry(['export', '-f', list, '--repair', env.path('nope.json'), '--since', whole, '-o', env.path('b.tar'), '--json']);
    expect(both.code).toBe(EXIT_STATUS.E_USAGE);
    expect(jsonOf<ErrorDoc>(both).error.message).toContain('--repair and --since cannot be combined');
  });

  it('a report listing a blob the images no longer contain is refused with the digest', async () => {
    const stray = `sha256:${'e'.repeat(64)}`;
    const file = env.path('stray.repair.json');
    await writeFile(file, JSON.stringify({
      format: 'ferry-repair', version: 1, bundleId: wholeMeta.bundleId, metadataDigest: wholeMeta.bundleId,
      blobs: [{ digest: stray, size: 10, mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', problem: 'missing', images: [] }],
    }));
    const out = env.path('stray.tar');
    const r = await runFerry(['export', '-f', list, '--repair', file, '-o', out, '--cache', env.path('cache'), ...env.net, '--json']);
    expect(r.code).toBe(EXIT_STATUS.E_NOT_FOUND);
    const doc = jsonOf<ErrorDoc>(r);
    expect(doc.error.message).toContain(stray);
    expect(doc.error.message).toContain('not part of these images');
    expect(existsSync(out)).toBe(false);
  });
});
