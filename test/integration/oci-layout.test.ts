import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { openOciLayout, openOciLayoutSource } from '../../src/transports/oci-layout/index.js';
import { openStorageLayout } from '../../src/transports/storage/index.js';
import { blobsOf, manifestsOf } from '../support/images.js';
import { startRegistry } from '../support/registry.js';
import { makeTempDir } from '../support/tmp.js';
import { descOf, type Fixtures, makeFixtures, sha256, sha256OfStream, skopeo, writeArtifacts } from '../unit/transports/helpers.js';

let fx: Fixtures;
beforeAll(async () => {
  fx = await makeFixtures(404);
});

describe('OCI layout destination and source', () => {
  it('writes a layout skopeo oci: reads with original digests; a second run merges index.json', async () => {
    const dir = makeTempDir('ferry-oci-');
    try {
      const [first, ...rest] = fx.placed;
      await writeArtifacts(openOciLayout(dir.path), [first!]);
      await writeArtifacts(openOciLayout(dir.path), rest);
      expect(await readFile(join(dir.path, 'oci-layout'), 'utf8')).toBe('{"imageLayoutVersion":"1.0.0"}');
      const index = JSON.parse(await readFile(join(dir.path, 'index.json'), 'utf8')) as { manifests: Array<{ annotations: Record<string, string> }> };
      expect(index.manifests.map((m) => m.annotations['org.opencontainers.image.ref.name']).sort())
        .toEqual(fx.placed.map((p) => `${p.repository}:${p.tag}`).sort());

      // skopeo 1.9.3 only matches index.json entries whose mediaType is OCI (layout/reference.go skips
      // Docker schema2 entries); those are still stored byte-exact and read back by our source below.
      const ociTyped = fx.placed.filter((p) => p.artifact.mediaType.startsWith('application/vnd.oci.'));
      expect(ociTyped.length).toBeGreaterThanOrEqual(2);
      for (const p of ociTyped) {
        const ref = `oci:${dir.path}:${p.repository}:${p.tag}`;
        const { stdout } = await skopeo(['inspect', '--raw', ref]);
        expect(sha256(stdout)).toBe(p.artifact.digest);
        const out = join(dir.path, '..', `${dir.path.split('/').at(-1)}-copy-${p.tag}`);
        await skopeo(['copy', '--all', ref, `dir:${out}`]);
        expect(sha256(await readFile(join(out, 'manifest.json')))).toBe(p.artifact.digest);
        await import('node:fs/promises').then((f) => f.rm(out, { recursive: true, force: true }));
      }

      const src = openOciLayoutSource(dir.path);
      expect((await src.listImages()).map((i) => `${i.repository}:${i.tag}@${i.digest}`).sort())
        .toEqual(fx.placed.map((p) => `${p.repository}:${p.tag}@${p.artifact.digest}`).sort());
      for (const p of fx.placed) {
        expect((await src.getManifest(p.repository, p.tag!)).bytes).toEqual(p.artifact.bytes);
        for (const b of blobsOf(p.artifact)) expect(await sha256OfStream(await src.getBlob(p.repository, descOf(b)))).toBe(b.digest);
      }
    } finally {
      await dir.cleanup();
    }
  });

  it('reads a layout that real skopeo wrote (bare-tag ref names)', async () => {
    const store = makeTempDir('ferry-oci-store-');
    const dir = makeTempDir('ferry-oci-skopeo-');
    await writeArtifacts(openStorageLayout(store.path), fx.placed);
    const reg = await startRegistry({ storageDir: store.path });
    try {
      const p = fx.placed[0]!;
      await skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${reg.host}/${p.repository}:${p.tag}`, `oci:${dir.path}:${p.tag}`]);
      const src = openOciLayoutSource(dir.path, { repository: 'imported' });
      const listed = await src.listImages();
      expect(listed).toEqual([{ repository: 'imported', tag: p.tag, digest: p.artifact.digest }]);
      const m = await src.getManifest('imported', p.tag!);
      expect(m.digest).toBe(p.artifact.digest);
      for (const child of manifestsOf(p.artifact)) expect((await src.getManifest('imported', child.digest)).digest).toBe(child.digest);
      for (const b of blobsOf(p.artifact)) expect(await sha256OfStream(await src.getBlob('imported', descOf(b)))).toBe(b.digest);
    } finally {
      await reg.stop();
      await dir.cleanup();
      await store.cleanup();
    }
  });
});
