import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { openStorageLayout, openStorageLayoutSource } from '../../../src/transports/storage/index.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { descOf, type Fixtures, makeFixtures, manifestOf, writeArtifacts } from './helpers.js';

let fx: Fixtures;
let tmp: TempDir;
beforeAll(async () => {
  fx = await makeFixtures(7);
  tmp = makeTempDir('ferry-storage-unit-');
});
afterAll(async () => tmp.cleanup());

const unsafe = (e: unknown) => isFerryError(e, 'E_NAME_UNSAFE');

describe('storage layout names and untrusted input', () => {
  it('refuses repository names and tags that would escape the tree', async () => {
    const root = join(tmp.path, 'names');
    const dest = openStorageLayout(root);
    const layer = fx.dockerImage.layers[0]!;
    for (const repo of ['../../etc', '/etc', 'a/../../b', 'A', 'a//b', '']) {
      await expect(dest.putBlob(repo, descOf(layer), Readable.from([layer.bytes!]))).rejects.toSatisfy(unsafe);
      await expect(dest.hasBlob(repo, descOf(layer))).rejects.toSatisfy(unsafe);
    }
    await writeArtifacts(dest, [{ repository: 'ok', artifact: fx.dockerImage }]);
    for (const tag of ['../x', '.hidden', 'a/b', '-x']) {
      await expect(dest.putImage({ repository: 'ok', tag, manifest: manifestOf(fx.dockerImage) })).rejects.toSatisfy(unsafe);
    }
    await expect(readdir(join(tmp.path, 'etc'))).rejects.toThrow();
  });

  it('refuses a manifest whose blobs have not landed, and an index whose children have not', async () => {
    const dest = openStorageLayout(join(tmp.path, 'order'));
    await expect(dest.putManifest('x', manifestOf(fx.ociImage))).rejects.toSatisfy((e) => isFerryError(e, 'E_BLOB_MISSING'));
    await expect(dest.putManifest('x', manifestOf(fx.ociIndex))).rejects.toSatisfy((e) => isFerryError(e, 'E_BLOB_MISSING'));
  });

  it('source rejects hostile layouts: bad names, bad links, altered manifests', async () => {
    const root = join(tmp.path, 'hostile');
    await writeArtifacts(openStorageLayout(root), [{ repository: 'good', tag: 't', artifact: fx.dockerImage }]);
    const v2 = join(root, 'docker/registry/v2');
    const src = openStorageLayoutSource(root);
    expect((await src.listImages()).map((i) => i.repository)).toEqual(['good']);

    // a link with trailing junk
    const current = join(v2, 'repositories/good/_manifests/tags/t/current/link');
    await writeFile(current, `${fx.dockerImage.digest}\n../../etc/passwd`);
    await expect(src.getManifest('good', 't')).rejects.toSatisfy((e) => isFerryError(e, 'E_MANIFEST_INVALID'));
    await writeFile(current, fx.dockerImage.digest);

    // manifest data altered on disk
    const hex = fx.dockerImage.digest.slice(7);
    await writeFile(join(v2, 'blobs/sha256', hex.slice(0, 2), hex, 'data'), Buffer.from(fx.dockerImage.bytes.toString().replace('2', '3')));
    await expect(src.getManifest('good', 't')).rejects.toSatisfy((e) => isFerryError(e, 'E_DIGEST_MISMATCH'));

    // a repository directory whose name is not a repository name
    await mkdir(join(v2, 'repositories/Evil..Name/_manifests'), { recursive: true });
    await expect(src.listImages()).rejects.toSatisfy(unsafe);
    await expect(src.getManifest('../good', 't')).rejects.toSatisfy(unsafe);
  });

  it('a moved tag gets a new current link and keeps its index history', async () => {
    const root = join(tmp.path, 'move');
    await writeArtifacts(openStorageLayout(root), [{ repository: 'r', tag: 't', artifact: fx.dockerImage }]);
    await writeArtifacts(openStorageLayout(root), [{ repository: 'r', tag: 't', artifact: fx.ociImage }]);
    const tagDir = join(root, 'docker/registry/v2/repositories/r/_manifests/tags/t');
    expect(await readFile(join(tagDir, 'current/link'), 'utf8')).toBe(fx.ociImage.digest);
    expect((await readdir(join(tagDir, 'index/sha256'))).sort()).toEqual([fx.dockerImage.digest.slice(7), fx.ociImage.digest.slice(7)].sort());
    const src = openStorageLayoutSource(root);
    expect(await src.listImages()).toEqual([{ repository: 'r', tag: 't', digest: fx.ociImage.digest }]);
  });
});
