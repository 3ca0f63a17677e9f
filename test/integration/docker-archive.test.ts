import { readdir, readFile } from 'node:fs/promises';
import { createReadStream } from 'node:fs';
import { join } from 'node:path';
import tar from 'tar-stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { openDockerArchive } from '../../src/transports/docker-archive/index.js';
import type { Image } from '../support/images.js';
import { makeTempDir } from '../support/tmp.js';
import { type Fixtures, makeFixtures, sha256, skopeo, writeArtifacts } from '../unit/transports/helpers.js';

let fx: Fixtures;
beforeAll(async () => {
  fx = await makeFixtures(505);
});

let archiveManifest = '';
async function tarNames(file: string): Promise<string[]> {
  const names: string[] = [];
  const ex = tar.extract();
  const done = new Promise<void>((resolve, reject) => {
    ex.on('entry', (h, stream, next) => {
      names.push(h.name);
      const chunks: Buffer[] = [];
      stream.on('data', (c: unknown) => { if (h.name === 'manifest.json') chunks.push(c as Buffer); });
      stream.on('end', () => {
        if (h.name === 'manifest.json') archiveManifest = Buffer.concat(chunks).toString('utf8');
        next();
      });
    });
    ex.on('finish', resolve);
    ex.on('error', reject);
  });
  createReadStream(file).pipe(ex);
  await done;
  return names;
}

function amd64(p: { artifact: Image | { kind: 'index'; manifests: Image[] } }): Image {
  return p.artifact.kind === 'index' ? p.artifact.manifests.find((m) => m.platform.architecture === 'amd64')! : p.artifact;
}

describe('docker archive destination', () => {
  it('writes one archive skopeo docker-archive: reads back: configs byte-exact, layers once, diff IDs intact', async () => {
    const dir = makeTempDir('ferry-darchive-');
    try {
      const file = join(dir.path, 'images.tar');
      await writeArtifacts(openDockerArchive(file), fx.placed);
      expect((await readdir(dir.path)).sort()).toEqual(['images.tar']);
      const names = await tarNames(file);
      expect(new Set(names).size).toBe(names.length);
      expect(names.filter((n) => n === `${fx.shared.digest.slice(7)}.tar`)).toHaveLength(1);

      const entries = JSON.parse(archiveManifest) as Array<{ Config: string; RepoTags: string[] | null; Layers: string[] }>;
      // plain:latest and plain:also-latest are one image: one entry with both tags
      expect(entries).toHaveLength(fx.placed.length - 1);
      expect(entries.find((e) => e.RepoTags?.includes('plain:latest'))?.RepoTags?.sort()).toEqual(['plain:also-latest', 'plain:latest']);
      for (const e of entries) for (const f of [e.Config, ...e.Layers]) expect(names).toContain(f);
      for (const p of fx.placed) {
        const img = amd64(p);
        const out = join(dir.path, `out-${p.tag}`);
        await skopeo(['copy', `docker-archive:${file}:${p.repository}:${p.tag}`, `dir:${out}`]);
        const m = JSON.parse(await readFile(join(out, 'manifest.json'), 'utf8')) as { config: { digest: string }; layers: Array<{ digest: string }> };
        expect(m.config.digest).toBe(img.config.digest);
        expect(sha256(await readFile(join(out, img.config.digest.slice(7))))).toBe(img.config.digest);
        const diffIds = (JSON.parse(img.config.bytes.toString()) as { rootfs: { diff_ids: string[] } }).rootfs.diff_ids;
        expect(m.layers.map((l) => l.digest)).toEqual(diffIds);
      }
    } finally {
      await dir.cleanup();
    }
  });

  it('refuses an index without the chosen platform and leaves no archive', async () => {
    const dir = makeTempDir('ferry-darchive-plat-');
    try {
      const file = join(dir.path, 'x.tar');
      const dest = openDockerArchive(file, { platform: { os: 'linux', architecture: 's390x' } });
      await expect(writeArtifacts(dest, [fx.placed[0]!])).rejects.toSatisfy((e) => isFerryError(e, 'E_NOT_FOUND') && /s390x/.test((e as Error).message));
      await dest.close();
      expect(await readdir(dir.path)).toEqual([]);
    } finally {
      await dir.cleanup();
    }
  });
});
