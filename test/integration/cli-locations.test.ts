// One location syntax on the command line: `bundle:FILE` wherever a bundle is read,
// `registry-layout:DIR` / `oci:DIR` wherever a layout is named (serve, inventory), and the
// near misses refused before any work with exit 2 and the --json error document saying
// what to write: a flag that takes one value given twice (was E_INTERNAL, or the second
// --to silently read as a bundle volume), a place where a bundle is expected, `~` after
// the colon (was: a folder named `~` in the working directory), a URL, a kind alone, `~USER`, a
// file kind ending in `/` or written `-`, an uppercase kind; `diff` and `send` read `bundle:FILE` too.
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { writeOciLayout } from '../support/oci-layout.js';
import { startRegistry } from '../support/registry.js';
import { startServe } from '../support/serve.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { ferryOk, jsonOf } from './cli-fixture.js';

let tmp: TempDir;
let bundle: string;
let layout: string;
let oci: string;
let n = 0;
const path = (name: string) => join(tmp.path, `${String(++n).padStart(3, '0')}-${name}`);

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }

beforeAll(async () => {
  tmp = makeTempDir('ferry-locations-');
  const rng = new Rng(0x10c);
  oci = path('oci');
  await writeOciLayout(oci, [{ artifact: makeImage({ layers: [await makeLayer(rng.fork('l'), { size: 2_000 })], mediaTypes: 'oci' }), ref: 'team/app:1.0' }]);
  bundle = path('b.tar');
  await ferryOk(['export', '--from', `oci:${oci}`, '-o', bundle, '--cache', path('cache'), '-q']);
  layout = path('layout');
  await ferryOk(['import', `bundle:${bundle}`, '--to', `registry-layout:${layout}`, '-q']);
});
afterAll(async () => {
  await tmp?.cleanup();
});

async function usageError(args: string[], cwd?: string): Promise<ErrorDoc['error']> {
  const r = await runFerry([...args, '--json'], cwd !== undefined ? { cwd } : {});
  expect(r.code, `${args.join(' ')}: ${r.stdout}${r.stderr}`).toBe(2);
  const err = jsonOf<ErrorDoc>(r).error;
  expect(err.code).toBe('E_USAGE');
  return err;
}

describe('the location syntax on every command line', () => {
  it('bundle:FILE is read wherever a bundle is: verify, inspect, import, inventory --bundle', async () => {
    expect(jsonOf<{ images: number }>(await ferryOk(['verify', `bundle:${bundle}`, '--json'])).images).toBe(1);
    expect(jsonOf<{ images: unknown[] }>(await ferryOk(['inspect', `bundle:${bundle}`, '--json'])).images).toHaveLength(1);
    const inv = jsonOf<{ images: unknown[] }>(await ferryOk(['inventory', '--layout', `registry-layout:${layout}`, '--json']));
    expect(inv.images).toHaveLength(1);
    // diff looked `bundle:FILE` up as a file of that name: exit 5.
    const diff = jsonOf<{ a: { where: string; kind: string }; added: unknown[] }>(await ferryOk(['diff', `bundle:${bundle}`, bundle, '--json']));
    expect([diff.a.where, diff.a.kind]).toEqual([bundle, 'bundle']);
  });

  it('serve registry-layout:DIR serves the layout, as serve --layout DIR does', async () => {
    const served = await startServe([`registry-layout:${layout}`]);
    try {
      const tags = await (await fetch(`${served.url}/v2/team/app/tags/list`)).json() as { tags: string[] };
      expect(tags.tags).toEqual(['1.0']);
    } finally {
      await served.stop('SIGTERM');
    }
  });

  it('inventory --registry takes registry:HOST and docker://HOST as push --to does (were "not a registry host", exit 2)', async () => {
    const live = await startRegistry({ storageDir: layout });
    try {
      const ids: string[] = [];
      for (const word of [live.host, `registry:${live.host}`, `docker://${live.host}`]) {
        const inv = JSON.parse((await ferryOk(['inventory', '--registry', word])).stdout) as { id: string; images: unknown[] };
        expect(inv.images, word).toHaveLength(1);
        ids.push(inv.id);
      }
      expect(new Set(ids).size).toBe(1);
      expect((await usageError(['inventory', '--registry', `http://${live.host}`])).message).toContain('without a scheme');
      expect((await usageError(['inventory', '--registry', `oci:${oci}`])).message).toContain('oci cannot be used here');
    } finally {
      await live.stop();
    }
  });

  it('a folder kind whose place is a file: E_IO naming that file for every kind, the file untouched', async () => {
    // skopeo-dir's message was about its hidden staging folder (.ferry-tmp-staging.PID…): removing it at
    // close met ENOTDIR, and that error replaced the one the check before the first byte had made.
    const file = path('a-file');
    await writeFile(file, 'not a folder\n');
    for (const kind of ['skopeo-dir', 'oci', 'registry-layout']) {
      const r = await runFerry(['import', bundle, '--to', `${kind}:${file}`, '--json']);
      const err = jsonOf<ErrorDoc>(r).error;
      expect([r.code, err.code], kind).toEqual([10, 'E_IO']);
      expect(err.message, kind).toBe(`--to ${kind} ${file} has a file where a folder should be (ENOTDIR)`);
      expect(await readFile(file, 'utf8')).toBe('not a folder\n');
    }
  });

  it('a flag that takes one value, given twice, is a usage error naming both values', async () => {
    const cases: [string[], string][] = [
      [['push', bundle, '--to', '127.0.0.1:1/x', '--to', '127.0.0.1:1/y'], '--to'],
      [['import', bundle, '--to', `oci:${path('o1')}`, `--to=oci:${path('o2')}`], '--to'],
      [['export', '--from', `bundle:${bundle}`, '--from', `oci:${path('x')}`, '-o', path('x.tar')], '--from'],
      [['export', '--from', `bundle:${bundle}`, '-o', path('a.tar'), '--output', path('b.tar')], '--output'],
    ];
    for (const [args, flag] of cases) {
      const err = await usageError(args);
      expect(err.message).toContain(`${flag} is given 2 times`);
      expect((err.details['values'] as string[]).length).toBe(2);
    }
    // Repeatable flags still collect.
    await ferryOk(['export', '--from', `bundle:${bundle}`, '--since', bundle, '--since', `bundle:${bundle}`, '-o', path('delta.tar'), '--cache', path('cache'), '-q']);
  });

  it('a place where a bundle is expected, ~ after the colon, a URL or a kind alone: exit 2 saying what to write; nothing written', async () => {
    const cwd = path('cwd');
    await mkdir(cwd);
    expect((await usageError(['verify', `oci:${layout}`], cwd)).hint).toContain(`ferry export --from oci:${layout}`);
    expect((await usageError(['import', bundle, '--to', 'oci:~/out'], cwd)).hint).toContain('oci:$HOME/out');
    expect((await usageError(['export', '--from', 'bundle:~/b.tar', '-o', 'x.tar'], cwd)).hint).toContain('bundle:$HOME/b.tar');
    expect((await usageError(['push', bundle, '--to', 'https://harbor.corp.local/p'], cwd)).hint).toContain('--to harbor.corp.local/PREFIX');
    expect((await usageError(['push', bundle, '--to', 'registry', '127.0.0.1:1/d'], cwd)).hint).toContain('--to registry:');
    expect((await usageError(['export', '--from', 'registry-layout', layout, '-o', 'x.tar'], cwd)).hint).toContain('--from registry-layout:');
    // Both forms at once, a bundle written as a place, flag values that would be misread.
    expect((await usageError(['import', bundle, '--to', 'registry-layout', 'oci:out'], cwd)).message).toContain('two kinds given');
    // The same kind twice: one way to write it, said once.
    expect((await usageError(['import', bundle, '--to', 'oci', 'oci:out'], cwd)).hint).toBe('--to oci:out');
    // -o naming a folder (trailing /) wrote a file named like the folder, exit 0.
    expect((await usageError(['export', '--from', `bundle:${bundle}`, '-o', 'sub/'], cwd)).hint).toContain('--output sub/release.tar');
    expect((await usageError(['merge', bundle, '-o', 'sub/'], cwd)).message).toContain('names a folder');
    expect((await usageError(['export', '--from', `bundle:${bundle}`, '-o', 'oci:./out'], cwd)).hint).toContain('ferry import B.tar --to oci:./out');
    expect((await usageError(['verify', bundle, '--jobs'], cwd)).message).toContain('--jobs needs a value');
    expect((await usageError(['verify', bundle, '--jobs', '0x10'], cwd)).message).toContain('not a whole number');
    expect((await usageError(['export', '--from', `bundle:${bundle}`, '--split', '1.5', '-o', 'x.tar'], cwd)).message).toContain('is not a size');
    expect((await usageError(['serve', bundle, join(tmp.path, '.', bundle.slice(tmp.path.length + 1)), '--listen', '127.0.0.1:0'], cwd)).message).toContain('is given twice');
    // skopeo's oci:DIR:REF and an archive file where a layout directory is read: not found, saying what they look like.
    const skopeoForm = jsonOf<ErrorDoc>(await runFerry(['export', '--from', `oci:${oci}:team/app:1.0`, '-o', 'x.tar', '--json'], { cwd })).error;
    expect([skopeoForm.code, skopeoForm.hint]).toEqual(['E_NOT_FOUND', expect.stringContaining(`--from oci:${oci}, and names the images`)]);
    const archive = jsonOf<ErrorDoc>(await runFerry(['export', '--from', `oci:${bundle}`, '-o', 'x.tar', '--json'], { cwd })).error;
    expect(archive.hint).toContain('is a file');
    // Were exit 0: a folder `~ops` here, a file `out`, a file `-`. Now the kind's spelling is said too.
    expect((await usageError(['import', bundle, '--to', 'oci:~ops/out'], cwd)).hint).toContain('--to oci:/home/ops/out');
    expect((await usageError(['import', bundle, '--to', 'docker-archive:out/'], cwd)).hint).toContain('--to docker-archive:out/images.tar');
    expect((await usageError(['import', bundle, '--to', 'docker-archive:-'], cwd)).message).toContain('"-" is not stdin or stdout here');
    expect((await usageError(['import', bundle, '--to', 'OCI:out'], cwd)).hint).toBe('write --to oci:out');
    // Was exit 0 with folders docker:/h/x made here.
    expect((await usageError(['import', bundle, '--to', 'oci', 'docker://h/x'], cwd)).hint).toContain('--to registry:h/x');
    // --to left out: the place is named as where to write (the hint said to bundle it first).
    expect((await usageError(['import', bundle, 'oci:out'], cwd)).hint).toContain('the place to write goes after --to: ferry import B.tar --to oci:out');
    expect((await usageError(['push', bundle, 'registry:h.local/m'], cwd)).hint).toContain('ferry push B.tar --to registry:h.local/m');
    // Was E_IO (exit 10, "check permissions"): the file opened as a folder, ENOTDIR.
    expect((await usageError(['verify', `${bundle}/`], cwd)).hint).toContain(`write ${bundle} if that is the bundle`);
    // diff said "oci:DIR: no such file" (exit 5); send said so only after an SSH connection (exit 3 for an
    // unknown host): every local argument is judged before the host is dialled.
    expect((await usageError(['diff', bundle, `oci:${oci}`], cwd)).hint).toContain(`ferry export --from oci:${oci}`);
    expect((await usageError(['send', `oci:${oci}`, 'nohost.invalid:/srv'], cwd)).hint).toContain(`ferry export --from oci:${oci}`);
    // A missing file is E_NOT_FOUND as for every other bundle reader (send said E_USAGE).
    const missing = await runFerry(['send', 'missing.tar', 'nohost.invalid:/srv', '--json'], { cwd });
    expect([missing.code, jsonOf<ErrorDoc>(missing).error.message]).toEqual([5, 'missing.tar: no such file']);
    // A --from that is not there, refused after -o's and --cache's folders were made to probe them: left them empty.
    const typo = await runFerry(['export', '--from', 'oci:no-such-layout', '-o', 'new/x.tar', '--cache', 'new/cache', '--json'], { cwd });
    expect([typo.code, jsonOf<ErrorDoc>(typo).error.code]).toEqual([5, 'E_NOT_FOUND']);
    expect(await readdir(cwd)).toEqual([]);
  });
});
