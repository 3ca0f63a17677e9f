// `ferry import` into file-system targets, against what field disks really hold:
// links planted in the target (prune and writes must never leave it), files of the
// right size with the wrong bytes (a rerun must repair them, and say so), receipts
// that cannot be written where they used to go (the import still succeeds), and a
// prune that lists what it removed and warns about a registry already serving.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync } from 'node:fs';
import { mkdir, open, readdir, readFile, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry, testStateHome } from '../support/cli.js';
import type { Image } from '../support/images.js';
import { cliSchemaRef, schemaErrors } from '../support/schemas.js';
import { mountTmpfs } from '../support/tmpfs.js';
import {
  type CliEnv, entry, expectationsOf, ferryOk, imagesList, jsonOf, pushExtraImage, serveAndCheck, startCliEnv, writeList,
} from './cli-fixture.js';

interface Receipt {
  images: { origin: string; status: string; error?: { code: string; message: string } }[];
  blobs: { copied: number; skipped: number };
  warnings?: string[];
  pruned?: { repositories: string[]; tags: string[]; manifests: string[]; blobs: string[] };
  receipt?: string;
}
interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }

let env: CliEnv;
let bundle: string;
let oldBundle: string;
let legacy: Image;
let web: Image;

beforeAll(async () => {
  env = await startCliEnv(0x5afe);
  legacy = await pushExtraImage(env.reg.url, 'legacy/app', '0.9', 0x5afe1);
  web = entry(env.corpus, 'apps/web').artifact as Image;
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  oldBundle = env.path('old.tar');
  await ferryOk(['export', `${env.reg.host}/legacy/app:0.9`, `${env.reg.host}/library/base-os:1.0`, '-o', oldBundle, '--cache', env.path('cache'), ...env.net, '-q']);
});
afterAll(async () => env?.stop());

const v2 = (layout: string) => join(layout, 'docker/registry/v2');
const dataPath = (layout: string, digest: string) => join(v2(layout), 'blobs/sha256', digest.slice(7, 9), digest.slice(7), 'data');

async function sha256Of(path: string): Promise<string> {
  return `sha256:${createHash('sha256').update(await readFile(path)).digest('hex')}`;
}

/** Flips one byte in the middle: same size, different bytes (bit rot, a bad copy). */
async function flipByte(path: string): Promise<void> {
  const fh = await open(path, 'r+');
  try {
    const size = (await fh.stat()).size;
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, Math.floor(size / 2));
    b[0] = b[0]! ^ 0x20;
    await fh.write(b, 0, 1, Math.floor(size / 2));
  } finally {
    await fh.close();
  }
}

/** A directory outside every target, holding one file nobody may touch. */
async function bait(name: string): Promise<{ dir: string; file: string }> {
  const dir = env.path(`outside-${name}`);
  await mkdir(dir, { recursive: true });
  const file = join(dir, 'bait.txt');
  await writeFile(file, 'belongs to someone else');
  return { dir, file };
}

describe('links planted in a target are never followed', () => {
  it('--prune refuses a layout with a link in blobs/, naming it, before deleting anything; without the link it prunes', async () => {
    const layout = env.path('prune-link');
    await ferryOk(['import', oldBundle, '--to', 'registry-layout', layout, '-q']);
    // A directory outside the layout that looks like a blob directory to a walk that follows links.
    const out = await bait('prune');
    const fakeHex = `ff${'0'.repeat(62)}`;
    await mkdir(join(out.dir, fakeHex));
    await writeFile(join(out.dir, fakeHex, 'data'), 'someone else\'s data');
    const planted = join(v2(layout), 'blobs/sha256/ff');
    await symlink(out.dir, planted);
    const legacyLayer = dataPath(layout, legacy.layers[0]!.digest);

    const r = await runFerry(['import', bundle, '--to', 'registry-layout', layout, '--prune', '--json']);
    expect(r.code, r.stderr).toBe(2);
    const err = jsonOf<ErrorDoc>(r).error;
    expect(err.code).toBe('E_NAME_UNSAFE');
    expect(err.message).toContain('blobs/sha256/ff');
    expect(err.message).toContain('nothing was deleted');
    expect(err.hint).toMatch(/remove the links/);
    expect(await readFile(join(out.dir, fakeHex, 'data'), 'utf8')).toBe('someone else\'s data');
    expect(await readFile(out.file, 'utf8')).toBe('belongs to someone else');
    // Nothing of the layout went either: the old release is still there.
    expect((await stat(legacyLayer)).size).toBe(legacy.layers[0]!.size);

    await unlink(planted);
    await ferryOk(['import', bundle, '--to', 'registry-layout', layout, '--prune', '-q']);
    expect(existsSync(legacyLayer)).toBe(false);
    expect(await readdir(out.dir)).toEqual(['bait.txt', fakeHex]);
    await serveAndCheck(layout, expectationsOf(env.corpus));
  });

  it('registry layout: a link where a blob directory goes fails the images needing it (E_NAME_UNSAFE, exit 2); nothing is written outside', async () => {
    const layout = env.path('write-link');
    const out = await bait('layout');
    const layer = web.layers[1]!;
    await mkdir(join(v2(layout), 'blobs/sha256'), { recursive: true });
    await symlink(out.dir, join(v2(layout), 'blobs/sha256', layer.digest.slice(7, 9)));
    const r = await runFerry(['import', bundle, '--to', 'registry-layout', layout, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const err = jsonOf<ErrorDoc>(r).error;
    expect(err.code).toBe('E_NAME_UNSAFE');
    expect(err.message).toContain(join(v2(layout), 'blobs/sha256', layer.digest.slice(7, 9)));
    expect(await readdir(out.dir)).toEqual(['bait.txt']);
    // The images that need the layer are not tagged; the others are.
    expect(existsSync(join(v2(layout), 'repositories/apps/web/_manifests/tags/v1/current/link'))).toBe(false);
    expect(existsSync(join(v2(layout), 'repositories/a/b/c/_manifests/tags/stable/current/link'))).toBe(true);
  });

  it('OCI layout: blobs/sha256 as a link to another folder is refused; nothing is written there, no index.json names anything', async () => {
    const root = env.path('oci-link');
    const out = await bait('oci');
    await mkdir(join(root, 'blobs'), { recursive: true });
    await symlink(out.dir, join(root, 'blobs/sha256'));
    const r = await runFerry(['import', bundle, '--to', 'oci', root, '--json']);
    expect(r.code, r.stderr).toBe(2);
    expect(jsonOf<ErrorDoc>(r).error.code).toBe('E_NAME_UNSAFE');
    expect(jsonOf<ErrorDoc>(r).error.message).toContain(join(root, 'blobs/sha256'));
    expect(await readdir(out.dir)).toEqual(['bait.txt']);
    expect(existsSync(join(root, 'index.json'))).toBe(false);
  });

  it('skopeo dir tree: a repository folder that is a link fails its images; the others land; nothing is written outside', async () => {
    const root = env.path('dir-link');
    const out = await bait('dir');
    await mkdir(root, { recursive: true });
    await symlink(out.dir, join(root, 'library'));
    const r = await runFerry(['import', bundle, '--to', 'skopeo-dir', root, '--json']);
    expect(r.code, r.stderr).toBe(2);
    const err = jsonOf<ErrorDoc>(r).error;
    expect(err.code).toBe('E_NAME_UNSAFE');
    expect(err.message).toContain(join(root, 'library'));
    expect(await readdir(out.dir)).toEqual(['bait.txt']);
    expect(existsSync(join(root, 'a/b/c:stable/manifest.json'))).toBe(true);
  });
});

describe('a file of the right size with the wrong bytes is not taken as present', () => {
  it('registry layout: a rerun replaces a damaged layer and a damaged manifest, says so, and the registry serves every image', async () => {
    const layout = env.path('rot-layout');
    await ferryOk(['import', bundle, '--to', 'registry-layout', layout, '-q']);
    const layer = dataPath(layout, web.layers[1]!.digest);
    const manifest = dataPath(layout, web.digest);
    await flipByte(layer);
    await flipByte(manifest);
    expect((await stat(layer)).size).toBe(web.layers[1]!.size);

    const r = await runFerry(['import', bundle, '--to', 'registry-layout', layout, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const receipt = jsonOf<Receipt>(r);
    expect(await sha256Of(layer)).toBe(web.layers[1]!.digest);
    expect(await sha256Of(manifest)).toBe(web.digest);
    expect(receipt.warnings?.some((w) => w.includes(layer) && w.includes('replaced a damaged file'))).toBe(true);
    expect(receipt.warnings?.some((w) => w.includes(manifest))).toBe(true);
    expect(receipt.blobs.copied).toBe(1);
    await serveAndCheck(layout, expectationsOf(env.corpus));
    // People see it too.
    await flipByte(layer);
    const human = await runFerry(['import', bundle, '--to', 'registry-layout', layout]);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stderr).toMatch(new RegExp(`ferry: warning: ${layer.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: replaced a damaged file`));
  });

  it('OCI layout: a rerun replaces a damaged blob and says so', async () => {
    const root = env.path('rot-oci');
    await ferryOk(['import', bundle, '--to', 'oci', root, '-q']);
    const blob = join(root, 'blobs/sha256', web.layers[1]!.digest.slice(7));
    await flipByte(blob);
    const receipt = jsonOf<Receipt>(await ferryOk(['import', bundle, '--to', 'oci', root, '--json']));
    expect(await sha256Of(blob)).toBe(web.layers[1]!.digest);
    expect(receipt.warnings?.some((w) => w.includes(blob))).toBe(true);
  });

  it('skopeo dir tree: a rerun rewrites a damaged blob file of an image', async () => {
    const root = env.path('rot-dir');
    await ferryOk(['import', bundle, '--to', 'skopeo-dir', root, '-q']);
    const blob = join(root, 'apps/web:v1', web.layers[1]!.digest.slice(7));
    await flipByte(blob);
    await ferryOk(['import', bundle, '--to', 'skopeo-dir', root, '-q']);
    expect(await sha256Of(blob)).toBe(web.layers[1]!.digest);
  });
});

describe('receipts are an audit record, not a reason to fail', () => {
  it('go to the state folder, not the current folder or the target; a read-only current folder does not fail the import', async () => {
    const cwd = mountTmpfs(env.path('ro-cwd'), '1m');
    try {
      cwd.readOnly(true);
      const layout = env.path('receipt-layout');
      const r = await runFerry(['import', bundle, '--to', 'oci', layout, '--json'], { cwd: cwd.dir });
      expect(r.code, r.stderr).toBe(0);
      const receipt = jsonOf<Receipt>(r);
      expect(receipt.warnings).toBeUndefined();
      expect(receipt.receipt!.startsWith(join(testStateHome(), 'ferry', 'receipts'))).toBe(true);
      expect(JSON.parse(await readFile(receipt.receipt!, 'utf8'))).toMatchObject({ images: receipt.images });
      const intoLayout = jsonOf<Receipt>(await ferryOk(['import', bundle, '--to', 'registry-layout', env.path('receipt-reg'), '--json'], { cwd: cwd.dir }));
      expect(intoLayout.receipt!.startsWith(join(testStateHome(), 'ferry', 'receipts'))).toBe(true);
      expect(existsSync(join(env.path('receipt-reg'), 'ferry-receipts'))).toBe(false);
    } finally {
      cwd.unmount();
    }
  });

  it('a state folder that cannot be written: exit 0, a warning on stderr and in --json; the images landed', async () => {
    const state = mountTmpfs(env.path('ro-state'), '1m');
    try {
      state.readOnly(true);
      const layout = env.path('receipt-warn');
      const r = await runFerry(['import', bundle, '--to', 'registry-layout', layout, '--json'], { env: { XDG_STATE_HOME: state.dir } });
      expect(r.code, r.stderr).toBe(0);
      const doc = jsonOf<Receipt>(r);
      expect(doc.receipt).toBeUndefined();
      expect(doc.warnings, JSON.stringify(doc.warnings)).toEqual([expect.stringMatching(new RegExp(`^the receipt could not be written \\(${state.dir}/ferry: the file system is read-only`))]);
      expect(schemaErrors(cliSchemaRef('importReceipt'), doc)).toEqual([]);
      expect(doc.images.every((i) => i.status === 'done')).toBe(true);
      const human = await runFerry(['import', bundle, '--to', 'registry-layout', layout], { env: { XDG_STATE_HOME: state.dir } });
      expect(human.code).toBe(0);
      expect(human.stderr).toMatch(/ferry: warning: the receipt could not be written .*EROFS|read-only/);
      await serveAndCheck(layout, expectationsOf(env.corpus));
    } finally {
      state.unmount();
    }
  });

  it('--receipt in a place that cannot be written fails before the first byte (E_IO, exit 10), target untouched', async () => {
    const ro = mountTmpfs(env.path('ro-receipt'), '1m');
    try {
      ro.readOnly(true);
      const layout = env.path('receipt-early');
      const r = await runFerry(['import', bundle, '--to', 'registry-layout', layout, '--receipt', join(ro.dir, 'r.json'), '--json']);
      expect(r.code, r.stderr).toBe(10);
      const err = jsonOf<ErrorDoc>(r).error;
      expect(err.code).toBe('E_IO');
      expect(err.message).toContain(join(ro.dir, 'r.json'));
      expect(err.message).toContain('nothing was imported');
      expect(existsSync(layout)).toBe(false);
    } finally {
      ro.unmount();
    }
  });
});

describe('documents named on the command line', () => {
  it('--receipt and inventory -o naming a device or a pipe write into it and leave it there (a temp file renamed over /dev/null replaced it with a regular file)', async () => {
    const dir = env.path('special-documents');
    await mkdir(dir, { recursive: true });
    // A private null device, not /dev/null: a failure here must not break the machine.
    const dev = join(dir, 'null');
    execFileSync('mknod', ['-m', '666', dev, 'c', '1', '3']);
    const fifo = join(dir, 'fifo');
    execFileSync('mkfifo', [fifo]);

    const imported = jsonOf<Receipt>(await ferryOk(['import', bundle, '--to', 'oci', join(dir, 'oci'), '--receipt', dev, '--json']));
    expect(imported.receipt).toBe(dev);
    expect(imported.warnings ?? []).toEqual([]);
    expect(lstatSync(dev).isCharacterDevice(), 'the device is still a device').toBe(true);
    await ferryOk(['inventory', '--bundle', bundle, '-o', dev]);
    expect(lstatSync(dev).isCharacterDevice(), 'the device is still a device').toBe(true);

    // A reader on the pipe gets the whole receipt (a child process: the pipe's open blocks until both ends are there).
    const reading = readFile(fifo, 'utf8');
    const piped = await runFerry(['import', bundle, '--to', 'oci', join(dir, 'oci2'), '--receipt', fifo, '-q'], { process: true });
    expect(piped.code, piped.stderr).toBe(0);
    const doc = JSON.parse(await reading) as Receipt;
    expect(doc.images.length).toBeGreaterThan(0);
    expect(doc.images.every((i) => i.status !== 'failed')).toBe(true);
    expect(lstatSync(fifo).isFIFO(), 'the pipe is still a pipe').toBe(true);
  });
});

describe('--prune', () => {
  it('lists what it removed in the receipt, and warns that a registry already serving the layout must be restarted', async () => {
    const layout = env.path('prune-list');
    await ferryOk(['import', oldBundle, '--to', 'registry-layout', layout, '-q']);
    const r = await ferryOk(['import', bundle, '--to', 'registry-layout', layout, '--prune', '--json']);
    const receipt = jsonOf<Receipt>(r);
    expect(receipt.pruned?.repositories).toEqual(['legacy/app']);
    expect(receipt.pruned?.tags).toEqual(['legacy/app:0.9']);
    expect(receipt.pruned?.blobs).toEqual(expect.arrayContaining([legacy.digest, legacy.config.digest, legacy.layers[0]!.digest]));
    expect(receipt.pruned?.blobs).toHaveLength(3);
    expect(receipt.warnings?.some((w) => /--prune removed 3 blobs: .*restart/.test(w))).toBe(true);
    expect(schemaErrors(cliSchemaRef('importReceipt'), receipt)).toEqual([]);
    expect(JSON.parse(await readFile(receipt.receipt!, 'utf8'))).toMatchObject({ pruned: receipt.pruned });

    const again = env.path('prune-human');
    await ferryOk(['import', oldBundle, '--to', 'registry-layout', again, '-q']);
    const human = await ferryOk(['import', bundle, '--to', 'registry-layout', again, '--prune']);
    expect(human.stderr).toMatch(/ferry: warning: --prune removed 3 blobs: a registry already running on .* until it is restarted/);
  });
});
