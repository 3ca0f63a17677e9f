// The smaller gaps field engineers named, end to end against the real registry:
// per-line options in images.list (a platform list for one image), export
// --skip-missing (images gone upstream are left out and reported, never
// silently), and import --dry-run (what would land and where, nothing written).
import { existsSync } from 'node:fs';
import { readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry, testStateHome } from '../support/cli.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { type CliEnv, childFor, entry, ferryOk, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';
import type { Index } from '../support/images.js';

let env: CliEnv;
let bundle: string;

beforeAll(async () => {
  env = await startCliEnv(0x96a9);
  bundle = env.path('full.tar');
  await ferryOk(['export', '-f', await writeList(env.path('all.list'), imagesList(env.corpus)), '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
}, 120_000);
afterAll(async () => env?.stop());

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; details: Record<string, unknown> } }
interface Inspected { images: { reference: string; digest: string; platforms: { os: string; architecture: string }[] }[] }

const ref = (repoTag: string) => `${env.reg.host}/${repoTag}`;

describe('images.list: per-line options', () => {
  it('--platform on a line filters that image; the command\'s --platform the others; plan and export agree', async () => {
    const multi = entry(env.corpus, 'multi/arch');
    const tools = entry(env.corpus, 'multi/tools');
    const list = await writeList(env.path('platforms.list'), [
      '# per-line options',
      `${ref('multi/arch:1.0')}   --platform linux/arm64   # only arm for this one`,
      `${ref('multi/tools:2024.1')}`,
      `${ref('library/base-os:1.0')}  --platform=linux/amd64`,
      '',
    ].join('\n'));
    const out = env.path('platforms.tar');
    const r = await runFerry(['export', '-f', list, '-o', out, '--platform', 'linux/amd64', '--cache', env.path('cache'), ...env.net]);
    expect(r.code, r.stderr).toBe(0);
    const inspected = jsonOf<Inspected>(await ferryOk(['inspect', out, '--json']));
    const byRef = (name: string) => inspected.images.find((i) => i.reference.includes(name))!;
    // One platform kept: the tag points at that platform's own manifest.
    expect(byRef('multi/arch').digest).toBe(childFor(multi.artifact as Index, 'arm64').digest);
    expect(byRef('multi/tools').digest).toBe(childFor(tools.artifact as Index, 'amd64').digest);
    // A --platform on a single-platform image changes nothing, and says so.
    expect(byRef('library/base-os').digest).toBe(entry(env.corpus, 'library/base-os').digest);
    expect(r.stderr).toContain('on its list line changes nothing: the image is single-platform');

    const plan = jsonOf<{ images: { reference: string; platforms: string[] }[] }>(await ferryOk(['plan', '-f', list, '--platform', 'linux/amd64', '--cache', env.path('cache'), ...env.net, '--json']));
    expect(plan.images.find((i) => i.reference.includes('multi/arch'))!.platforms).toEqual(['linux/arm64/v8']);
    expect(plan.images.find((i) => i.reference.includes('multi/tools'))!.platforms).toEqual(['linux/amd64']);
  }, 120_000);

  it('a bad option is E_LIST_SYNTAX naming file:line, every bad line at once, before anything is fetched or written', async () => {
    const file = env.path('bad-options.list');
    await writeFile(file, [
      `${ref('multi/arch:1.0')} --platfrom linux/arm64`,
      `${ref('multi/tools:2024.1')} --platform`,
      `${ref('apps/web:v1')} --platform linux/amd46`,
      `${ref('a/b/c:stable')} extra`,
      `${ref('library/base-os:1.0')} --platform linux/amd64`,
      `${ref('library/base-os:1.0')} --platform linux/arm64`,
      `${ref('library/base-os:latest')}`,
    ].join('\n'));
    const out = env.path('never.tar');
    const r = await runFerry(['export', '-f', file, '-o', out, '--cache', env.path('cache'), ...env.net, '--json']);
    expect(r.code).toBe(2);
    const doc = jsonOf<ErrorDoc>(r);
    expect(doc.error.code).toBe('E_LIST_SYNTAX');
    const problems = doc.error.details['problems'] as string[];
    expect(problems).toEqual([
      `${file}:1: unknown option --platfrom (a line takes --platform)`,
      `${file}:2: --platform needs a value, e.g. --platform linux/amd64,linux/arm64`,
      `${file}:3: --platform: "linux/amd46": unknown architecture "amd46"`,
      `${file}:4: "extra" after the reference: one image a line, options start with --`,
      `${file}:6: ${ref('library/base-os:1.0')} is also on ${file}:5 with other options (--platform linux/amd64 there, --platform linux/arm64 here)`,
    ]);
    expect(existsSync(out)).toBe(false);
  });
});

describe('export --skip-missing', () => {
  const listWithGone = async () => writeList(env.path('gone.list'), [
    ref('apps/web:v1'),
    ref('apps/vanished:1.0'),
    `${ref('library/base-os:no-such-tag')}   # deleted upstream`,
  ].join('\n'));

  it('without it: the export fails naming every missing image, and writes no bundle', async () => {
    const list = await listWithGone();
    const out = env.path('fail.tar');
    const r = await runFerry(['export', '-f', list, '-o', out, '--cache', env.path('cache'), ...env.net, '--json']);
    expect(r.code).toBe(5);
    const doc = jsonOf<ErrorDoc>(r);
    expect(doc.error.code).toBe('E_NOT_FOUND');
    expect(doc.error.message).toContain('apps/vanished:1.0');
    expect(doc.error.message).toContain('library/base-os:no-such-tag');
    expect(existsSync(out)).toBe(false);
  });

  it('with it: the rest is exported; each missing image is reported with file:line and reason, in --json and on stderr', async () => {
    const list = await listWithGone();
    const out = env.path('skip.tar');
    const r = await runFerry(['export', '-f', list, '-o', out, '--skip-missing', '--cache', env.path('cache'), ...env.net, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = jsonOf<{ images: number; skipped: { image: string; where: string; code: string; reason: string }[] }>(r);
    expect(describeErrors(schemaErrors(cliSchemaRef('exportResult'), doc))).toBe('');
    expect(doc.images).toBe(1);
    expect(doc.skipped.map((s) => [s.image, s.where, s.code])).toEqual([
      [ref('apps/vanished:1.0'), `${list}:2`, 'E_NOT_FOUND'],
      [ref('library/base-os:no-such-tag'), `${list}:3`, 'E_NOT_FOUND'],
    ]);
    for (const s of doc.skipped) expect(s.reason.length).toBeGreaterThan(0);
    const inspected = jsonOf<Inspected>(await ferryOk(['inspect', out, '--json']));
    expect(inspected.images.map((i) => i.reference)).toEqual([ref('apps/web:v1')]);

    const human = await runFerry(['export', '-f', list, '-o', env.path('skip-h.tar'), '--skip-missing', '--cache', env.path('cache'), ...env.net]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain('2 images left out (--skip-missing), gone upstream:');
    expect(human.stdout).toContain(`  ${ref('apps/vanished:1.0')} (${list}:2): `);
    expect(human.stderr).toContain(`ferry: warning: ${list}:3: ${ref('library/base-os:no-such-tag')} left out (--skip-missing)`);
    // ferry plan says the same before the transfer window.
    const planned = await runFerry(['plan', '-f', list, '--skip-missing', '--cache', env.path('cache'), ...env.net, '--json']);
    expect(planned.code, planned.stderr).toBe(0);
    const planDoc = jsonOf<{ totals: { images: number }; skipped: { where: string }[] }>(planned);
    expect(describeErrors(schemaErrors(cliSchemaRef('planResult'), planDoc))).toBe('');
    expect(planDoc.totals.images).toBe(1);
    expect(planDoc.skipped.map((s) => s.where)).toEqual([`${list}:2`, `${list}:3`]);
    expect((await runFerry(['plan', '-f', list, '--cache', env.path('cache'), ...env.net])).code).toBe(5);
    // Reported once, as left out — not first as a failed image.
    expect(human.stderr).not.toContain(`ferry: ${ref('apps/vanished:1.0')}:`);
  }, 120_000);

  it('is no excuse for other failures: every image gone, or a platform the image lacks, still fails', async () => {
    const gone = await writeList(env.path('all-gone.list'), `${ref('apps/vanished:1.0')}\n${ref('apps/vanished:2.0')}\n`);
    const all = await runFerry(['export', '-f', gone, '-o', env.path('none.tar'), '--skip-missing', '--cache', env.path('cache'), ...env.net, '--json']);
    expect(all.code).toBe(5);
    expect(jsonOf<ErrorDoc>(all).error.message).toContain('every image of the list is gone upstream');

    const lacking = await writeList(env.path('lacking.list'), `${ref('apps/web:v1')}\n${ref('multi/arch:1.0')} --platform linux/s390x\n`);
    const p = await runFerry(['export', '-f', lacking, '-o', env.path('lacking.tar'), '--skip-missing', '--cache', env.path('cache'), ...env.net, '--json']);
    expect(p.code).toBe(5);
    expect(jsonOf<ErrorDoc>(p).error.message).toContain('no manifest for platform linux/s390x');
    expect(existsSync(env.path('lacking.tar'))).toBe(false);
  }, 120_000);
});

describe('import --dry-run', () => {
  interface Receipt { dryRun: boolean; target: { kind: string; location: string }; images: { origin: string; repository: string; tag?: string; status: string }[]; blobs: { copied: number; skipped: number; bytesCopied: number }; receipt?: string }

  it('lists what would land and where, writes nothing (no target, no receipt); after the import, nothing is left to write', async () => {
    const layout = env.path('dry-layout');
    const r = await runFerry(['import', bundle, '--to', `registry-layout:${layout}`, '--dry-run', '--json']);
    expect(r.code, r.stderr).toBe(0);
    const doc = jsonOf<Receipt>(r);
    expect(describeErrors(schemaErrors(cliSchemaRef('importReceipt'), doc))).toBe('');
    expect(doc.dryRun).toBe(true);
    expect(doc.receipt).toBeUndefined();
    expect(doc.target).toEqual({ kind: 'registry-layout', location: layout });
    expect(doc.images).toHaveLength(env.corpus.refs.length);
    expect(doc.images.every((i) => i.status === 'planned')).toBe(true);
    expect(doc.images.find((i) => i.origin === ref('a/b/c:stable'))).toMatchObject({ repository: 'a/b/c', tag: 'stable' });
    expect(doc.blobs.copied).toBe(env.corpus.blobs.size);
    expect(doc.blobs.bytesCopied).toBe([...env.corpus.blobs.values()].reduce((n, b) => n + b.size, 0));
    expect(existsSync(layout)).toBe(false);

    const human = await runFerry(['import', bundle, '--to', `registry-layout:${layout}`, '--dry-run']);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`dry run: ${env.corpus.refs.length} images would go to registry-layout ${layout}; nothing was written`);
    expect(human.stdout).toContain(`  ${ref('a/b/c:stable')} → a/b/c:stable`);
    expect(human.stdout).toMatch(new RegExp(`^blobs: ${env.corpus.blobs.size} to write \\(.+\\), 0 already there$`, 'm'));
    expect(existsSync(layout)).toBe(false);

    await ferryOk(['import', bundle, '--to', `registry-layout:${layout}`, '-q']);
    // Receipts live in the state folder: a dry run adds none.
    const receiptDir = join(testStateHome(), 'ferry', 'receipts');
    const receipts = await readdir(receiptDir);
    const again = jsonOf<Receipt>(await ferryOk(['import', bundle, '--to', `registry-layout:${layout}`, '--dry-run', '--json']));
    expect(again.blobs).toMatchObject({ copied: 0, skipped: env.corpus.blobs.size, bytesCopied: 0 });
    expect(await readdir(receiptDir)).toEqual(receipts);
  }, 120_000);

  it('writes no file for any kind: oci, skopeo-dir, docker-archive', async () => {
    for (const kind of ['oci', 'skopeo-dir', 'docker-archive']) {
      const target = env.path(`dry-${kind}`);
      const r = await runFerry(['import', bundle, '--to', `${kind}:${target}`, '--dry-run', '--json']);
      expect(r.code, `${kind}: ${r.stderr}`).toBe(0);
      expect(jsonOf<Receipt>(r).dryRun, kind).toBe(true);
      expect(existsSync(target), kind).toBe(false);
    }
  }, 120_000);
});
