// A full disk and a read-only one, for real: a 2 MiB tmpfs that a 3 MiB layer does
// not fit on. Every kind of import target and the export output: exit 10 (E_NO_SPACE) with
// the --json error document naming the file and saying what to do, no partial file,
// nothing that looks complete; and after space is freed, the same command completes.
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { type Image, makeImage, makeStreamLayer } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { entriesUnder } from '../support/walk.js';
import { schemaErrors, cliSchemaRef } from '../support/schemas.js';
import { mountTmpfs, type Tmpfs } from '../support/tmpfs.js';
import { type CliEnv, ferryOk, jsonOf, serveAndCheck, startCliEnv } from './cli-fixture.js';
import { startProxy } from './registry-proxy.js';

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }

let env: CliEnv;
let image: Image;
let bundle: string;
const ref = () => `${env.reg.host}/big/one:1`;

beforeAll(async () => {
  env = await startCliEnv(0xf011);
  image = makeImage({ layers: [await makeStreamLayer({ seed: 0xf0111, size: 3 << 20, compressible: false, files: 1 })], mediaTypes: 'oci' });
  await pushArtifact(env.reg.url, 'big/one', image, ['1']);
  bundle = env.path('big.tar');
  await ferryOk(['export', ref(), '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
});
afterAll(async () => env?.stop());

function tempsUnder(dir: string): string[] {
  return entriesUnder(dir, /^\.ferry-tmp-/);
}

async function sha256Of(path: string): Promise<string> {
  return `sha256:${createHash('sha256').update(await readFile(path)).digest('hex')}`;
}

/** Runs `args` against a 2 MiB tmpfs: must fail with E_NO_SPACE naming a file on it; then the same command after growing it must succeed. */
async function fullThenFreed(name: string, args: (dir: string) => string[], incomplete: (dir: string) => void, complete: (dir: string) => Promise<void>): Promise<void> {
  const fs: Tmpfs = mountTmpfs(env.path(name), '2m');
  try {
    const r = await runFerry([...args(fs.dir), '--json']);
    expect(r.code, `${name}: ${r.stderr}`).toBe(10);
    const doc = jsonOf<ErrorDoc>(r);
    expect(schemaErrors(cliSchemaRef('errorDocument'), doc)).toEqual([]);
    expect(doc.error.code).toBe('E_NO_SPACE');
    expect(doc.error.exitStatus).toBe(10);
    expect(doc.error.message).toContain(fs.dir);
    // Found before the first byte (the sizes plan computes) or when the disk filled up: either names the place.
    expect(doc.error.message).toMatch(/no space left on the device \(ENOSPC|free, this run needs about/);
    expect(doc.error.message).not.toContain('.ferry-tmp-');
    expect(doc.error.hint).toMatch(/free space/);
    expect(tempsUnder(fs.dir), 'partial files left').toEqual([]);
    incomplete(fs.dir);

    fs.resize('64m');
    const again = await runFerry(args(fs.dir));
    expect(again.code, `${name} after freeing space: ${again.stderr}`).toBe(0);
    await complete(fs.dir);
  } finally {
    fs.unmount();
  }
}

describe('disk full', () => {
  it('import --to registry-layout', async () => {
    await fullThenFreed('full-layout', (d) => ['import', bundle, '--to', 'registry-layout', join(d, 'layout')], (d) => {
      expect(existsSync(join(d, 'layout/docker/registry/v2/repositories/big/one/_manifests/tags/1/current/link'))).toBe(false);
      // Refused before the first byte: the target folder the import made for it is taken away again.
      expect(readdirSync(d)).toEqual([]);
    }, async (d) => {
      await serveAndCheck(join(d, 'layout'), [{ repo: 'big/one', ref: '1', digest: image.digest }]);
    });
  });

  it('import --to oci', async () => {
    await fullThenFreed('full-oci', (d) => ['import', bundle, '--to', 'oci', join(d, 'oci')], (d) => {
      expect(existsSync(join(d, 'oci/index.json'))).toBe(false);
      // Refused before the first byte: the target folder the import made for it is taken away again.
      expect(readdirSync(d)).toEqual([]);
    }, async (d) => {
      expect(await readFile(join(d, 'oci/index.json'), 'utf8')).toContain('big/one:1');
      expect(await sha256Of(join(d, 'oci/blobs/sha256', image.layers[0]!.digest.slice(7)))).toBe(image.layers[0]!.digest);
    });
  });

  it('import --to skopeo-dir', async () => {
    await fullThenFreed('full-dir', (d) => ['import', bundle, '--to', 'skopeo-dir', join(d, 'dirs')], (d) => {
      expect(existsSync(join(d, 'dirs/big/one:1/manifest.json'))).toBe(false);
      // Refused before the first byte: the target folder the import made for it is taken away again.
      expect(readdirSync(d)).toEqual([]);
    }, async (d) => {
      expect(await sha256Of(join(d, 'dirs/big/one:1/manifest.json'))).toBe(image.digest);
      expect(await sha256Of(join(d, 'dirs/big/one:1', image.layers[0]!.digest.slice(7)))).toBe(image.layers[0]!.digest);
    });
  });

  it('import --to docker-archive', async () => {
    await fullThenFreed('full-archive', (d) => ['import', bundle, '--to', 'docker-archive', join(d, 'images.tar')], (d) => {
      expect(readdirSync(d)).toEqual([]);
    }, async (d) => {
      expect(readdirSync(d)).toEqual(['images.tar']);
    });
  });

  it('export -o on a full disk', async () => {
    const cache = env.path('export-cache');
    await fullThenFreed('full-export', (d) => ['export', ref(), '-o', join(d, 'x.tar'), '--cache', cache, ...env.net], (d) => {
      expect(readdirSync(d)).toEqual([]);
    }, async (d) => {
      await ferryOk(['verify', join(d, 'x.tar'), '-q']);
    });
  });
});

/** Takes every free byte of the file system `path` is on, as another program filling the disk would. */
function fillUp(path: string): void {
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 << 10);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
}

describe('disk fills up during the run', () => {
  // The preflight passed (the disk had room); another writer takes the rest while the
  // layer is on its way. The work file stays for the rerun to continue from, and holds
  // space the user must free: the error has to say so instead of "nothing partial was left".
  it('export -o: E_NO_SPACE names the work file it keeps and how to get its space back; freed, the rerun completes and removes it', async () => {
    const fs: Tmpfs = mountTmpfs(env.path('fills-up'), '8m');
    const filler = join(fs.dir, 'filler');
    const layer = image.layers[0]!.digest;
    let filled = false;
    const proxy = await startProxy(env.reg.url, {
      inject(req) {
        // Once: the rerun finds the space freed.
        if (req.method === 'GET' && req.url?.includes(`/blobs/${layer}`) && !filled) {
          filled = true;
          fillUp(filler);
        }
        return undefined;
      },
    });
    try {
      const out = join(fs.dir, 'x.tar');
      const args = ['export', `${proxy.host}/big/one:1`, '-o', out, '--cache', env.path('fills-up-cache'), '--plain-http', proxy.host, '--no-referrers'];
      const r = await runFerry([...args, '--json']);
      expect(r.code, r.stderr).toBe(10);
      const doc = jsonOf<ErrorDoc>(r);
      expect(schemaErrors(cliSchemaRef('errorDocument'), doc)).toEqual([]);
      expect(doc.error.code).toBe('E_NO_SPACE');
      expect(doc.error.message).toContain(`${out}: no space left on the device (ENOSPC`);
      const kept = doc.error.details['workFiles'] as string[];
      expect(kept.length, doc.error.message).toBe(2);
      for (const f of kept) expect(existsSync(f), f).toBe(true);
      const work = kept.find((f) => !f.endsWith('.journal'))!;
      expect(doc.error.message).toContain(`kept for the rerun to continue from: ${work}`);
      expect(doc.error.details['workFileBytesOnDisk']).toBeGreaterThan(0);
      expect(doc.error.hint).not.toContain('nothing partial was left');
      expect(doc.error.hint).toContain(`delete ${work.slice(fs.dir.length + 1)}*`);
      expect(existsSync(out)).toBe(false);

      rmSync(filler);
      await ferryOk(args);
      expect(readdirSync(fs.dir).sort()).toEqual(['x.tar', 'x.tar.ferry.json']);
      await ferryOk(['verify', out, '-q']);
    } finally {
      await proxy.stop();
      fs.unmount();
    }
  });
});

describe('read-only file system', () => {
  it('import into a read-only target: E_IO naming it, saying to pick a writable one; rerun when writable completes', async () => {
    const fs = mountTmpfs(env.path('ro'), '16m');
    try {
      fs.readOnly(true);
      const layout = join(fs.dir, 'layout');
      const r = await runFerry(['import', bundle, '--to', 'registry-layout', layout, '--json']);
      expect(r.code, r.stderr).toBe(10);
      const err = jsonOf<ErrorDoc>(r).error;
      expect(err.code).toBe('E_IO');
      expect(err.message).toContain(layout);
      expect(err.message).toMatch(/read-only.*EROFS/);
      expect(err.hint).toMatch(/writable file system/);
      fs.readOnly(false);
      expect((await runFerry(['import', bundle, '--to', 'registry-layout', layout])).code).toBe(0);
      await serveAndCheck(layout, [{ repo: 'big/one', ref: '1', digest: image.digest }]);
    } finally {
      fs.unmount();
    }
  });
});
