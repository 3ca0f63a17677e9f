import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { imageDirName, openSkopeoDir, openSkopeoDirSource } from '../../src/transports/dir/index.js';
import { openStorageLayout } from '../../src/transports/storage/index.js';
import type { Digest } from '../../src/oci/digest.js';
import { blobsOf, manifestsOf } from '../support/images.js';
import { startRegistry } from '../support/registry.js';
import { makeTempDir } from '../support/tmp.js';
import {
  descOf, type Fixtures, makeFixtures, servedDigest, sha256, sha256OfStream, skopeo, writeArtifacts,
} from '../unit/transports/helpers.js';

let fx: Fixtures;
beforeAll(async () => {
  fx = await makeFixtures(303);
});

describe('skopeo dir tree destination and source', () => {
  it('writes dir images skopeo pushes to a real registry with their original digests; shared blobs are hard links', async () => {
    const out = makeTempDir('ferry-dir-');
    const reg = await startRegistry();
    try {
      const dest = openSkopeoDir(out.path);
      await writeArtifacts(dest, fx.placed);
      const top = await readdir(out.path);
      expect(top.filter((n) => n.startsWith('.'))).toEqual([]);
      expect(top.sort()).toEqual(['a', 'multi', 'plain:also-latest', 'plain:latest']);
      expect((await readdir(join(out.path, 'a/b'))).sort()).toEqual(['c:oci']);

      const ociDir = join(out.path, 'multi/oci:1.0');
      expect(await readFile(join(ociDir, 'version'), 'utf8')).toBe('Directory Transport Version: 1.1\n');
      const names = (await readdir(ociDir)).sort();
      const idx = fx.ociIndex;
      expect(names).toEqual([
        'manifest.json', 'version',
        ...(idx.kind === 'index' ? idx.manifests.map((m) => `${m.digest.slice(7)}.manifest.json`) : []),
        ...blobsOf(idx).map((b) => b.digest.slice(7)),
      ].sort());
      expect(sha256(await readFile(join(ociDir, 'manifest.json')))).toBe(idx.digest);

      // the shared base layer is one inode across all image directories
      const hex = fx.shared.digest.slice(7);
      const inodes = new Set<number>();
      for (const p of fx.placed) inodes.add((await stat(join(out.path, imageDirName(p.repository, p.tag, p.artifact.digest as Digest), hex))).ino);
      expect(inodes.size).toBe(1);
      expect((await stat(join(ociDir, hex))).nlink).toBe(fx.placed.length);

      for (const p of fx.placed) {
        const dir = join(out.path, imageDirName(p.repository, p.tag, p.artifact.digest as Digest));
        await skopeo(['copy', '--all', '--dest-tls-verify=false', `dir:${dir}`, `docker://${reg.host}/${p.repository}:${p.tag}`]);
        expect(await servedDigest(reg.host, p.repository, p.tag!)).toBe(p.artifact.digest);
      }

      // our own source reads the tree back
      const src = openSkopeoDirSource(out.path);
      expect((await src.listImages()).map((i) => `${i.repository}:${i.tag}@${i.digest}`).sort())
        .toEqual(fx.placed.map((p) => `${p.repository}:${p.tag}@${p.artifact.digest}`).sort());
    } finally {
      await reg.stop();
      await out.cleanup();
    }
  });

  it('writes digest-only images as <repository>@sha256:<hex> and re-runs into existing image dirs', async () => {
    const out = makeTempDir('ferry-dir-digest-');
    try {
      await writeArtifacts(openSkopeoDir(out.path), [{ repository: 'x/y', artifact: fx.ociImage }]);
      expect(await readdir(join(out.path, 'x'))).toEqual([`y@${fx.ociImage.digest}`]);
      // second run: the directory has a version file, so it is emptied and rewritten
      await writeArtifacts(openSkopeoDir(out.path), [{ repository: 'x/y', artifact: fx.ociImage }]);
      const src = openSkopeoDirSource(out.path);
      expect(await src.listImages()).toEqual([{ repository: 'x/y', digest: fx.ociImage.digest }]);
    } finally {
      await out.cleanup();
    }
  });

  it('refuses to write into a non-empty directory that has no version file, and cleans its staging dir', async () => {
    const out = makeTempDir('ferry-dir-refuse-');
    try {
      await mkdir(join(out.path, 'plain:latest'), { recursive: true });
      await writeFile(join(out.path, 'plain:latest', 'precious.txt'), 'keep me');
      const dest = openSkopeoDir(out.path);
      await expect(writeArtifacts(dest, [fx.placed.find((p) => p.tag === 'latest')!])).rejects.toSatisfy((e) => isFerryError(e, 'E_USAGE'));
      await dest.close();
      expect(await readFile(join(out.path, 'plain:latest', 'precious.txt'), 'utf8')).toBe('keep me');
      expect((await readdir(out.path)).sort()).toEqual(['plain:latest']);
    } finally {
      await out.cleanup();
    }
  });

  it('reads dir images that real skopeo wrote (copy --all docker://… dir:)', async () => {
    const store = makeTempDir('ferry-dir-src-');
    const out = makeTempDir('ferry-dir-skopeo-');
    await writeArtifacts(openStorageLayout(store.path), fx.placed);
    const reg = await startRegistry({ storageDir: store.path });
    try {
      for (const p of fx.placed) {
        const dir = join(out.path, imageDirName(p.repository, p.tag, p.artifact.digest as Digest));
        await mkdir(join(dir, '..'), { recursive: true });
        await skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${reg.host}/${p.repository}:${p.tag}`, `dir:${dir}`]);
      }
      const src = openSkopeoDirSource(out.path);
      expect((await src.listImages()).map((i) => `${i.repository}:${i.tag}@${i.digest}`).sort())
        .toEqual(fx.placed.map((p) => `${p.repository}:${p.tag}@${p.artifact.digest}`).sort());
      for (const p of fx.placed) {
        const m = await src.getManifest(p.repository, p.tag!);
        expect(m.digest).toBe(p.artifact.digest);
        expect(m.mediaType).toBe(p.artifact.mediaType);
        for (const child of manifestsOf(p.artifact)) expect((await src.getManifest(p.repository, child.digest)).bytes).toEqual(child.bytes);
        for (const b of blobsOf(p.artifact)) expect(await sha256OfStream(await src.getBlob(p.repository, descOf(b)))).toBe(b.digest);
      }
      await expect(src.getManifest('plain', 'missing')).rejects.toSatisfy((e) => isFerryError(e, 'E_NOT_FOUND'));
    } finally {
      await reg.stop();
      await out.cleanup();
      await store.cleanup();
    }
  });
});
