// The names places without a registry record, read verbatim (spec/bundle.md §3.2): OCI
// ref names split by the reference grammar (full references as podman writes them, bare
// tags named after the layout directory), skopeo dir trees with and without the registry
// first, one image in the directory itself; and --registry-name.
import { cp, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRegistryName, qualifyName } from '../../../src/app/repository-mapping.js';
import { isFerryError } from '../../../src/errors.js';
import { parseLocalReference } from '../../../src/oci/reference.js';
import { openSkopeoDir, openSkopeoDirSource } from '../../../src/transports/dir/index.js';
import { openOciLayoutSource } from '../../../src/transports/oci-layout/index.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Fixtures, makeFixtures, writeArtifacts } from './helpers.js';

let fx: Fixtures;
let tmp: TempDir;
beforeAll(async () => {
  fx = await makeFixtures(0x6e);
  tmp = makeTempDir('ferry-layout-names-');
});
afterAll(async () => tmp.cleanup());

const D = `sha256:${'a'.repeat(64)}`;

/** A layout whose index.json has these ref names (manifests need not exist to be listed). */
async function layout(dir: string, refs: (string | undefined)[], digest = D): Promise<string> {
  const root = join(tmp.path, dir);
  await mkdir(root, { recursive: true });
  await writeFile(join(root, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  await writeFile(join(root, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: refs.map((r) => ({ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size: 2, ...(r !== undefined ? { annotations: { 'org.opencontainers.image.ref.name': r } } : {}) })),
  }));
  return root;
}

describe('parseLocalReference', () => {
  it('splits by the grammar and normalises nothing', () => {
    expect(parseLocalReference('app:1')).toEqual({ name: 'app', tag: '1' });
    expect(parseLocalReference('127.0.0.1:5000/apps/web:v1')).toEqual({ name: '127.0.0.1:5000/apps/web', tag: 'v1' });
    expect(parseLocalReference('docker.io/library/x:1')).toEqual({ name: 'docker.io/library/x', tag: '1' });
    expect(parseLocalReference(`team/app@${D}`)).toEqual({ name: 'team/app', digest: D });
    expect(parseLocalReference(`team/app:2@${D}`)).toEqual({ name: 'team/app', tag: '2', digest: D });
    for (const bad of ['1.0', 'app', '../x:1', 'App:1', 'a//b:1', 'x:', `x@sha256:${'A'.repeat(64)}`, 'x/127.0.0.1:5000/y:1']) expect(parseLocalReference(bad), bad).toBeUndefined();
  });
});

describe('OCI layout names', () => {
  it('full references keep their registry; name:tag has none; a bare tag takes the directory\'s name; no ref name is digest-only', async () => {
    const root = await layout('Web', ['localhost/app:1', '127.0.0.1:5000/apps/web:v1', 'app:2', '1.0', undefined, `team/app@${D}`]);
    expect(await openOciLayoutSource(root).listImages()).toEqual([
      { repository: 'localhost/app', tag: '1', digest: D },
      { repository: '127.0.0.1:5000/apps/web', tag: 'v1', digest: D },
      { repository: 'app', tag: '2', digest: D },
      { repository: 'web', tag: '1.0', digest: D },
      { repository: 'web', digest: D },
      { repository: 'team/app', digest: D },
    ]);
  });

  it('a bare tag in a directory whose name is no repository name, and a digest ref naming another digest, are E_NAME_UNSAFE', async () => {
    const spaced = await layout('my images', ['1.0']);
    await expect(openOciLayoutSource(spaced).listImages()).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE') && (e as Error).message.includes('"my images"'));
    // Names given in full need no directory name.
    expect(await openOciLayoutSource(await layout('more images', ['app:1'])).listImages()).toEqual([{ repository: 'app', tag: '1', digest: D }]);
    const lying = await layout('lying', [`app@sha256:${'b'.repeat(64)}`]);
    await expect(openOciLayoutSource(lying).listImages()).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE'));
  });
});

describe('skopeo dir tree names', () => {
  it('a scoped tree (registry first) keeps the registry; an unscoped one has none', async () => {
    const root = join(tmp.path, 'scoped');
    await writeArtifacts(openSkopeoDir(join(root, '127.0.0.1:5000')), [{ repository: 'apps/web', tag: 'v1', artifact: fx.ociImage }]);
    await writeArtifacts(openSkopeoDir(join(root, 'docker.io')), [{ repository: 'library/nginx', tag: '1.25', artifact: fx.dockerImage }]);
    await writeArtifacts(openSkopeoDir(root), [{ repository: 'web', tag: 'v1', artifact: fx.dockerImage }]);
    const images = await openSkopeoDirSource(root).listImages();
    expect(images.map((i) => `${i.repository}:${i.tag}`).sort()).toEqual(['127.0.0.1:5000/apps/web:v1', 'docker.io/library/nginx:1.25', 'web:v1']);
    const src = openSkopeoDirSource(root);
    expect((await src.getManifest('127.0.0.1:5000/apps/web', 'v1')).digest).toBe(fx.ociImage.digest);
  });

  it('a directory that is one image (skopeo copy … dir:DIR) is named after it; without a tag it is digest-only', async () => {
    const parent = join(tmp.path, 'single');
    await writeArtifacts(openSkopeoDir(parent), [{ repository: 'nginx', tag: '1.25', artifact: fx.dockerImage }]);
    expect(await openSkopeoDirSource(join(parent, 'nginx:1.25')).listImages()).toEqual([{ repository: 'nginx', tag: '1.25', digest: fx.dockerImage.digest }]);
    const untagged = join(tmp.path, 'untagged');
    await writeArtifacts(openSkopeoDir(untagged), [{ repository: 'plain', tag: 'x', artifact: fx.ociImage }]);
    // As `skopeo copy … dir:./Plain` leaves it: the image files in the directory itself, no tag in its name.
    const root = join(tmp.path, 'Plain');
    await cp(join(untagged, 'plain:x'), root, { recursive: true });
    const src = openSkopeoDirSource(root);
    expect(await src.listImages()).toEqual([{ repository: 'plain', digest: fx.ociImage.digest }]);
    expect((await src.getManifest('plain', fx.ociImage.digest)).digest).toBe(fx.ociImage.digest);
  });

  it('a path component with a colon below the first is refused (a registry only comes first)', async () => {
    const root = join(tmp.path, 'deep-colon');
    await writeArtifacts(openSkopeoDir(join(root, 'apps', 'x:1')), [{ repository: 'web', tag: 'v1', artifact: fx.ociImage }]);
    await expect(openSkopeoDirSource(root).listImages()).rejects.toSatisfy((e) => isFerryError(e, 'E_NAME_UNSAFE'));
  });
});

describe('--registry-name', () => {
  it('takes a host (dot, colon or localhost) and qualifies only names without one, by the reference grammar', () => {
    for (const ok of ['registry.corp.local', '10.0.0.5:5000', 'localhost', 'docker.io', 'localhost:5000/']) expect(parseRegistryName(ok)).toBe(ok.replace(/\/$/, ''));
    for (const bad of ['myhost', 'a/b', '', 'bad_host.local', 'x.io/path']) expect(() => parseRegistryName(bad), bad).toThrow(expect.objectContaining({ code: 'E_USAGE' }));
    expect(qualifyName('python', 'registry.corp.local')).toBe('registry.corp.local/python');
    expect(qualifyName('team/app', '10.0.0.5:5000')).toBe('10.0.0.5:5000/team/app');
    expect(qualifyName('python', 'docker.io')).toBe('docker.io/library/python');
    expect(qualifyName('quay.io/a/b', 'registry.corp.local')).toBe('quay.io/a/b');
  });
});
