import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { openSkopeoDir, openSkopeoDirSource } from '../../../src/transports/dir/index.js';
import { openOciLayout, openOciLayoutSource } from '../../../src/transports/oci-layout/index.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { descOf, type Fixtures, makeFixtures, writeArtifacts } from './helpers.js';

let fx: Fixtures;
let tmp: TempDir;
beforeAll(async () => {
  fx = await makeFixtures(9);
  tmp = makeTempDir('ferry-dir-oci-unit-');
});
afterAll(async () => tmp.cleanup());

describe('dir and OCI layout transports: untrusted input and interrupted writes', () => {
  it('dir source refuses directory names that are not <repository>:<tag>', async () => {
    const root = join(tmp.path, 'dir-hostile');
    await writeArtifacts(openSkopeoDir(root), [{ repository: 'ok', tag: 't', artifact: fx.dockerImage }]);
    await mkdir(join(root, 'Bad..Name:t'), { recursive: true });
    await expect(openSkopeoDirSource(root).listImages()).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE'));
  });

  it('dir destination refuses unsafe names and leaves nothing from an interrupted blob', async () => {
    const root = join(tmp.path, 'dir-int');
    const dest = openSkopeoDir(root);
    await expect(writeArtifacts(dest, [{ repository: '../../etc', tag: 't', artifact: fx.dockerImage }])).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE'));
    const layer = fx.ociImage.layers[1]!;
    const broken = new Readable({ read() { this.push(layer.bytes!.subarray(0, 100)); this.destroy(new Error('cut')); } });
    await expect(dest.putBlob('x', descOf(layer), broken)).rejects.toThrow(/cut/);
    expect(await dest.hasBlob('x', descOf(layer))).toBe(false);
    await dest.close();
    expect(await readdir(root)).toEqual([]);
  });

  it('OCI layout source refuses hostile ref names and altered manifests', async () => {
    const root = join(tmp.path, 'oci-hostile');
    await writeArtifacts(openOciLayout(root), [{ repository: 'ok', tag: 't', artifact: fx.dockerImage }]);
    const src = openOciLayoutSource(root);
    expect((await src.getManifest('ok', 't')).digest).toBe(fx.dockerImage.digest);
    const hex = fx.dockerImage.digest.slice(7);
    await writeFile(join(root, 'blobs/sha256', hex), fx.dockerImage.bytes.toString().replace('2', '3'));
    await expect(src.getManifest('ok', 't')).rejects.toSatisfy((e) => isFerryError(e, 'E_DIGEST_MISMATCH'));
    await writeFile(join(root, 'index.json'), JSON.stringify({
      schemaVersion: 2, manifests: [{ mediaType: fx.dockerImage.mediaType, digest: fx.dockerImage.digest, size: fx.dockerImage.size, annotations: { 'org.opencontainers.image.ref.name': '../../etc:x' } }],
    }));
    await expect(openOciLayoutSource(root).listImages()).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE'));
  });
});
