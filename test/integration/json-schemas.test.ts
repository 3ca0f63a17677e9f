// Every `--json` document the real CLI prints, on real work against the real
// registry, validated against its published $def in spec/cli-output.schema.json
// (and bundle metadata / inventories against their own schemas). Each check also
// proves the validator bites: the same document with a required field removed fails.
//
// Not covered: `ferry send`, which needs an SSH server (ssh-transfer.test.ts runs it).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { copyFile, mkdir, readFile, stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FERRY_BIN, runFerry, type FerryResult } from '../support/cli.js';
import {
  BUNDLE_METADATA_ID, cliSchemaRef, type CliDocumentKind, describeErrors, INVENTORY_ID, readSchema, schemaErrors, SPEC_DIR,
} from '../support/schemas.js';
import { type CliEnv, ferryOk, flipByteInBlob, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';
import { readMetadata } from '../support/bundle-metadata.js';

type Doc = Record<string, unknown>;
interface SchemaNode { $ref?: string; required?: string[]; $defs?: Record<string, SchemaNode> }

let env: CliEnv;
let list: string;
let cache: string;
let full: string;
let base: string;
let fullExport: Doc;
let deltaBundle: string;
let deltaExport: Doc;

const cliSchema = readSchema(join(SPEC_DIR, 'cli-output.schema.json')) as SchemaNode;

/** The required top-level fields of a schema node, following $refs inside spec/. */
function requiredOf(node: SchemaNode, file = cliSchema): string[] {
  if (node.required) return node.required;
  if (!node.$ref) return [];
  if (node.$ref.startsWith('#/$defs/')) return requiredOf(file.$defs![node.$ref.slice('#/$defs/'.length)]!, file);
  const other = readSchema(join(SPEC_DIR, node.$ref)) as SchemaNode;
  return requiredOf(other, other);
}

/** Valid against `ref`, and invalid once any one required field is gone. */
function expectSchema(ref: string, doc: unknown, required: string[], what: string): void {
  const errors = schemaErrors(ref, doc);
  expect(errors, `${what} against ${ref}:\n${describeErrors(errors)}\n${JSON.stringify(doc, null, 2).slice(0, 4000)}`).toEqual([]);
  expect(required.length, `${ref} requires nothing`).toBeGreaterThan(0);
  for (const field of required) {
    const { [field]: _, ...without } = doc as Doc;
    expect(schemaErrors(ref, without).length, `${what} without "${field}" still passes ${ref}`).toBeGreaterThan(0);
  }
}

function expectDocument(kind: CliDocumentKind, doc: unknown, what: string = kind): void {
  expectSchema(cliSchemaRef(kind), doc, requiredOf(cliSchema.$defs![kind]!), what);
}

/** A failed run: exit status as documented, stdout one error document agreeing with it. */
function expectErrorDocument(r: FerryResult, code: string, what: string): Doc {
  const doc = jsonOf<{ error: Doc }>(r);
  expectDocument('errorDocument', doc, what);
  expect(doc.error['code'], r.stderr).toBe(code);
  expect(doc.error['exitStatus']).toBe(r.code);
  const errorDef = (cliSchema.$defs!['errorDocument'] as { properties: { error: SchemaNode } }).properties.error;
  for (const field of errorDef.required!) {
    const { [field]: _, ...without } = doc.error;
    expect(schemaErrors(cliSchemaRef('errorDocument'), { error: without }).length, `${what}: error without "${field}" passes`).toBeGreaterThan(0);
  }
  return doc.error;
}

async function json(args: string[]): Promise<Doc> {
  return jsonOf<Doc>(await ferryOk([...args, '--json'], { cwd: env.tmp.path }));
}

beforeAll(async () => {
  env = await startCliEnv(0x75);
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  cache = env.path('cache');
  full = env.path('full.tar');
  fullExport = await json(['export', '-f', list, '-o', full, '--cache', cache, ...env.net]);
  // The older release a delta is cut against: two of the images.
  base = env.path('base.tar');
  await ferryOk(['export', ...env.corpus.hostRefs.slice(0, 2), '-o', base, '--cache', cache, ...env.net, '-q']);
  deltaBundle = env.path('delta.tar');
  deltaExport = await json(['export', '-f', list, '--since', base, '-o', deltaBundle, '--cache', cache, ...env.net]);
}, 240_000);
afterAll(async () => env?.stop());

describe('--json documents match spec/cli-output.schema.json', () => {
  it('export: full, --since delta, --split; the bundle metadata matches its own schema', async () => {
    expectDocument('exportResult', fullExport, 'export (full)');
    expect(fullExport['delta']).toBeUndefined();

    expectDocument('exportResult', deltaExport, 'export --since');
    expect(deltaExport['delta']).toBeDefined();

    const meta = JSON.parse(await readFile(`${full}.ferry.json`, 'utf8')) as Doc;
    const metaRequired = requiredOf(readSchema(join(SPEC_DIR, 'bundle-metadata.schema.json')) as SchemaNode);
    expectSchema(BUNDLE_METADATA_ID, meta, metaRequired, 'full.tar.ferry.json');
    // --metadata prints the stored ferry.json as it is: same schema.
    const printed = jsonOf<Doc>(await ferryOk(['inspect', deltaBundle, '--metadata']));
    expectSchema(BUNDLE_METADATA_ID, printed, metaRequired, 'inspect --metadata (delta)');

    // Room for the head and the largest layer, so the bundle takes several volumes.
    const blobs = (await readMetadata(`${full}.ferry.json`)).blobs;
    const split = blobs.filter((b) => b.kind !== 'layer').reduce((n, b) => n + b.size + 1024, 0) + 3 * (await stat(`${full}.ferry.json`)).size + 16 * 1024
      + Math.max(...blobs.filter((b) => b.kind === 'layer').map((b) => b.size)) + 1024;
    const dir = env.path('split');
    await mkdir(dir);
    const volumes = await json(['export', '-f', list, '-o', join(dir, 'rel.tar'), '--split', String(split), '--cache', cache, ...env.net]);
    expectDocument('exportResult', volumes, 'export --split');
    const paths = (volumes['volumes'] as { path: string }[]).map((v) => v.path);
    expect(paths.length).toBeGreaterThan(1);

    const one = await json(['inspect', paths[1]!]);
    expectDocument('inspectResult', one, 'inspect (one volume)');
    expect((one['volumes'] as { missing: unknown[] }).missing.length).toBeGreaterThan(0);
    expectSchema(BUNDLE_METADATA_ID, jsonOf<Doc>(await ferryOk(['inspect', paths[1]!, '--metadata'])), metaRequired, 'inspect --metadata (volume)');
    const all = await json(['verify', join(dir, 'rel.sha256')]);
    expectDocument('verifyResult', all, 'verify (volume set)');
    expect((all['volumes'] as { fromSidecar: boolean }).fromSidecar).toBe(true);
  });

  it('export -o - --json: stdout carries the bundle alone, the result document goes to stderr', async () => {
    const piped = env.path('piped.tar');
    const child = spawn(process.execPath, [FERRY_BIN, 'export', '-f', list, '-o', '-', '--cache', cache, ...env.net, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const err: Buffer[] = [];
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const [code] = await Promise.all([once(child, 'close').then(([c]) => c as number), pipeline(child.stdout, createWriteStream(piped))]);
    expect(code, Buffer.concat(err).toString()).toBe(0);
    const doc = JSON.parse(Buffer.concat(err).toString()) as Doc;
    expectDocument('exportResult', doc, 'export -o - (on stderr)');
    expect(doc['bundleId']).toBe(fullExport['bundleId']);
    // Byte-identical to the file export: nothing was appended to the stream.
    expect(await readFile(piped)).toEqual(await readFile(full));
  });

  it('inspect and verify, full and delta', async () => {
    expectDocument('inspectResult', await json(['inspect', full]), 'inspect');
    expectDocument('verifyResult', await json(['verify', full]), 'verify');
    const delta = await json(['inspect', deltaBundle]);
    expectDocument('inspectResult', delta, 'inspect (delta)');
    expect(delta['delta']).toBeDefined();
    const verified = await json(['verify', deltaBundle]);
    expectDocument('verifyResult', verified, 'verify (delta)');
    expect(verified['omittedBlobs']).toBeGreaterThan(0);
  });

  it('verify of a damaged bundle: the error document, with the repair report named', async () => {
    const bad = env.path('bad.tar');
    await copyFile(full, bad);
    const meta = await readMetadata(`${full}.ferry.json`);
    // The corpus's largest layer is the base every image but one shares: several images fail at once.
    const shared = meta.blobs.filter((b) => b.kind === 'layer').sort((x, y) => y.size - x.size)[0]!;
    await flipByteInBlob(bad, shared.digest);
    const r = await runFerry(['verify', bad, '--json'], { cwd: env.tmp.path });
    expect(r.code).toBe(6);
    const error = expectErrorDocument(r, 'E_DIGEST_MISMATCH', 'verify (damaged)');
    const details = error['details'] as Doc;
    expect(details['repairReport']).toBeTypeOf('string');
    // Several images failed: their per-image failures list was validated too.
    expect((details['failures'] as unknown[]).length).toBeGreaterThan(1);
  });

  it('usage and not-found errors', async () => {
    const usage = await runFerry(['export', '-f', list, '--json'], { cwd: env.tmp.path });
    expect(usage.code).toBe(2);
    expectErrorDocument(usage, 'E_USAGE', 'export without -o');
    const unknown = await runFerry(['frobnicate', '--json'], { cwd: env.tmp.path });
    expectErrorDocument(unknown, 'E_USAGE', 'unknown command');
    const missing = await runFerry(['inspect', env.path('no-such.tar'), '--json'], { cwd: env.tmp.path });
    expect(missing.code).toBe(5);
    expectErrorDocument(missing, 'E_NOT_FOUND', 'inspect of a missing bundle');
  });

  it('import: registry-layout and skopeo dir; inventory of the layout and of a bundle', async () => {
    const layout = env.path('layout');
    const intoLayout = await json(['import', full, '--to', 'registry-layout', layout]);
    expectDocument('importReceipt', intoLayout, 'import --to registry-layout');
    expectDocument('importReceipt', JSON.parse(await readFile(intoLayout['receipt'] as string, 'utf8')), 'receipt file (registry-layout)');

    const receipt = env.path('skopeo.receipt.json');
    const intoDirs = await json(['import', full, '--to', 'skopeo-dir', env.path('dirs'), '--receipt', receipt]);
    expectDocument('importReceipt', intoDirs, 'import --to skopeo-dir');
    expectDocument('importReceipt', JSON.parse(await readFile(receipt, 'utf8')), 'receipt file (skopeo-dir)');

    const invFile = env.path('layout.inventory.json');
    const written = await json(['inventory', '--layout', layout, '-o', invFile]);
    expectDocument('inventoryResult', written, 'inventory -o');
    const invRequired = requiredOf(readSchema(join(SPEC_DIR, 'inventory.schema.json')) as SchemaNode);
    expectSchema(INVENTORY_ID, JSON.parse(await readFile(invFile, 'utf8')), invRequired, 'inventory file (layout)');

    // Without -o the inventory itself is the document.
    const printed = await json(['inventory', '--bundle', full]);
    expectDocument('inventory', printed, 'inventory (stdout)');
    expectSchema(INVENTORY_ID, printed, invRequired, 'inventory (stdout)');
  });

  it('push, and push --dry-run', async () => {
    const to = `${env.reg.host}/mirror`;
    const pushed = await json(['push', full, '--to', to, '--receipt', env.path('push.receipt.json'), ...env.net]);
    expectDocument('pushReceipt', pushed, 'push');
    expect((pushed['images'] as { status: string }[]).every((i) => i.status === 'done')).toBe(true);
    const dry = await json(['push', full, '--to', `${env.reg.host}/dry`, '--dry-run', ...env.net]);
    expectDocument('pushReceipt', dry, 'push --dry-run');
    expect(dry['dryRun']).toBe(true);
  });

  it('plan (with --since and --split), diff, merge', async () => {
    const plan = await json(['plan', '-f', list, '--since', base, '--split', '1M', '--cache', cache, ...env.net]);
    expectDocument('planResult', plan, 'plan');
    expect(plan['delta']).toBeDefined();
    expect(plan['split']).toBeDefined();

    expectDocument('diffResult', await json(['diff', base, full]), 'diff bundle bundle');
    expectDocument('diffResult', await json(['diff', `${base}.ferry.json`, list, ...env.net]), 'diff metadata image-list');

    const delta = env.path('d2.tar');
    await ferryOk(['export', '-f', list, '--since', base, '-o', delta, '--cache', cache, ...env.net, '-q']);
    expectDocument('mergeResult', await json(['merge', base, delta, '-o', env.path('merged.tar')]), 'merge');
  });

  it('demo', async () => {
    expectDocument('demoResult', await json(['demo', '--dir', env.path('demo')]), 'demo');
  });
});
