import { execFile } from 'node:child_process';
import { readdir, readFile, stat, access } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import type { Digest } from '../../src/oci/digest.js';
import { openStorageLayout, openStorageLayoutSource } from '../../src/transports/storage/index.js';
import { blobDataPath, layerLinkPath } from '../../src/transports/storage/paths.js';
import { blobsOf, manifestsOf } from '../support/images.js';
import { startRegistry, REGISTRY_BIN, type RegistryHandle } from '../support/registry.js';
import { makeTempDir } from '../support/tmp.js';
import {
  descOf, type Fixtures, makeFixtures, pushArtifact, servedDigest, sha256, sha256OfStream, skopeo, writeArtifacts, type Placed,
} from '../unit/transports/helpers.js';

const run = promisify(execFile);

let fx: Fixtures;
let release2: Fixtures;
beforeAll(async () => {
  fx = await makeFixtures(101);
  release2 = await makeFixtures(202);
});

async function exists(p: string): Promise<boolean> {
  return access(p).then(() => true, () => false);
}

async function walkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const visit = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await visit(join(d, e.name));
      else out.push(join(d, e.name));
    }
  };
  await visit(dir);
  return out;
}

/** Parses `docker-registry garbage-collect --dry-run`'s summary line. */
async function gcDryRun(configFile: string): Promise<{ marked: number; blobs: number; manifests: number; output: string }> {
  const { stdout, stderr } = await run(REGISTRY_BIN, ['garbage-collect', '--dry-run', configFile], { maxBuffer: 16 * 1024 * 1024 });
  const output = stdout + stderr;
  const m = /(\d+) blobs marked, (\d+) blobs and (\d+) manifests eligible for deletion/.exec(output);
  if (!m) throw new Error(`no summary in garbage-collect output:\n${output}`);
  return { marked: Number(m[1]), blobs: Number(m[2]), manifests: Number(m[3]), output };
}

async function expectServed(reg: RegistryHandle, placed: Placed[]): Promise<void> {
  for (const p of placed) {
    expect(await servedDigest(reg.host, p.repository, p.tag!), `${p.repository}:${p.tag}`).toBe(p.artifact.digest);
  }
}

describe('registry storage layout destination (real docker-registry)', () => {
  it('writes a layout the real registry serves with original digests, skopeo copies fully, and GC finds nothing to delete', async () => {
    const dir = makeTempDir('ferry-storage-');
    const dest = openStorageLayout(dir.path);
    await writeArtifacts(dest, fx.placed);

    // formats: link files are exactly the digest, modes 0644/0755
    const files = await walkFiles(join(dir.path, 'docker/registry/v2'));
    for (const f of files.filter((f) => f.endsWith('/link'))) {
      const text = await readFile(f, 'utf8');
      expect(text, relative(dir.path, f)).toMatch(/^sha256:[a-f0-9]{64}$/);
      expect((await stat(f)).mode & 0o777).toBe(0o644);
    }
    expect(files.some((f) => f.includes('.ferry-tmp-'))).toBe(false);
    expect((await stat(join(dir.path, 'docker/registry/v2/repositories/a/b/c/_manifests'))).mode & 0o777).toBe(0o755);

    const reg = await startRegistry({ storageDir: dir.path });
    try {
      await expectServed(reg, fx.placed);
      // index children by digest too
      for (const p of fx.placed) for (const m of manifestsOf(p.artifact)) {
        expect(await servedDigest(reg.host, p.repository, m.digest)).toBe(m.digest);
      }
      const catalog = (await (await fetch(`${reg.url}/v2/_catalog`)).json()) as { repositories: string[] };
      expect(catalog.repositories.sort()).toEqual(['a/b/c', 'multi/docker', 'multi/oci', 'plain']);
      const tags = (await (await fetch(`${reg.url}/v2/plain/tags/list`)).json()) as { tags: string[] };
      expect(tags.tags.sort()).toEqual(['also-latest', 'latest']);

      const out = makeTempDir('ferry-storage-copy-');
      try {
        for (const p of fx.placed) {
          const target = join(out.path, `${p.repository.replaceAll('/', '_')}-${p.tag}`);
          // skopeo verifies every blob digest while copying; --all fetches every instance of an index
          await skopeo(['copy', '--all', '--src-tls-verify=false', `docker://${reg.host}/${p.repository}:${p.tag}`, `dir:${target}`]);
          expect(sha256(await readFile(join(target, 'manifest.json')))).toBe(p.artifact.digest);
        }
      } finally {
        await out.cleanup();
      }

      const gc = await gcDryRun(reg.configFile);
      expect(gc.blobs, gc.output).toBe(0);
      expect(gc.manifests, gc.output).toBe(0);
      const distinct = new Set(fx.placed.flatMap((p) => [...blobsOf(p.artifact), ...manifestsOf(p.artifact)].map((b) => b.digest)));
      expect(gc.marked).toBe(distinct.size);
    } finally {
      await reg.stop();
      await dir.cleanup();
    }
  });

  it('merges into a layout the registry populated: reuses existing data, registry serves both releases, source reads it back', async () => {
    const dir = makeTempDir('ferry-storage-merge-');
    const reg = await startRegistry({ storageDir: dir.path });
    try {
      for (const p of fx.placed) await pushArtifact(reg.url, p);

      // the source reads what the real registry wrote
      const src = openStorageLayoutSource(dir.path);
      const listed = (await src.listImages()).map((i) => `${i.repository}:${i.tag}@${i.digest}`).sort();
      expect(listed).toEqual(fx.placed.map((p) => `${p.repository}:${p.tag}@${p.artifact.digest}`).sort());
      for (const p of fx.placed) {
        const m = await src.getManifest(p.repository, p.tag!);
        expect(m.digest).toBe(p.artifact.digest);
        expect(sha256(m.bytes)).toBe(p.artifact.digest);
        expect(m.mediaType).toBe(p.artifact.mediaType);
        for (const child of manifestsOf(p.artifact)) expect((await src.getManifest(p.repository, child.digest)).digest).toBe(child.digest);
        for (const b of blobsOf(p.artifact)) expect(await sha256OfStream(await src.getBlob(p.repository, descOf(b)))).toBe(b.digest);
      }
      await expect(src.getManifest('plain', 'nope')).rejects.toSatisfy((e) => isFerryError(e, 'E_NOT_FOUND'));
      // a blob of another repository is not served through this one (per-repository links)
      await expect(src.getBlob('a/b/c', descOf(fx.dockerImage.layers[1]!))).rejects.toSatisfy((e) => isFerryError(e, 'E_BLOB_MISSING'));

      const sharedPath = blobDataPath(dir.path, fx.shared.digest as Digest);
      const before = await stat(sharedPath);
      // release 2 shares nothing but reuses repositories; add a layer release 1 already has to check reuse
      const r2 = release2.placed.map((p) => ({ ...p, tag: `r2-${p.tag}` }));
      const dest = openStorageLayout(dir.path);
      await writeArtifacts(dest, [...r2, { repository: 'plain', tag: 'r1-again', artifact: fx.ociImage }]);
      const after = await stat(sharedPath);
      expect(after.ino).toBe(before.ino);
      expect(after.mtimeMs).toBe(before.mtimeMs);

      await expectServed(reg, fx.placed);
      await expectServed(reg, r2);
      expect(await servedDigest(reg.host, 'plain', 'r1-again')).toBe(fx.ociImage.digest);
      const gc = await gcDryRun(reg.configFile);
      expect(gc.blobs + gc.manifests, gc.output).toBe(0);
    } finally {
      await reg.stop();
      await dir.cleanup();
    }
  });

  it('an interrupted blob leaves no data and no link; rerunning completes', async () => {
    const dir = makeTempDir('ferry-storage-int-');
    try {
      const dest = openStorageLayout(dir.path);
      const layer = fx.dockerImage.layers[1]!;
      const half = layer.bytes!.subarray(0, Math.floor(layer.size / 2));
      const broken = new Readable({
        read() {
          this.push(half);
          this.destroy(new Error('connection reset'));
        },
      });
      await expect(dest.putBlob('plain', descOf(layer), broken)).rejects.toThrow(/connection reset/);
      expect(await exists(blobDataPath(dir.path, layer.digest as Digest))).toBe(false);
      expect(await exists(layerLinkPath(dir.path, 'plain', layer.digest as Digest))).toBe(false);
      expect((await walkFiles(dir.path)).filter((f) => f.includes('.ferry-tmp-'))).toEqual([]);
      expect(await dest.hasBlob('plain', descOf(layer))).toBe(false);

      const p = fx.placed.find((x) => x.tag === 'latest')!;
      await writeArtifacts(openStorageLayout(dir.path), [p]);
      const reg = await startRegistry({ storageDir: dir.path });
      try {
        await expectServed(reg, [p]);
      } finally {
        await reg.stop();
      }
    } finally {
      await dir.cleanup();
    }
  });

  it('--prune leaves exactly the imported images, removing stale links the registry left', async () => {
    const dir = makeTempDir('ferry-storage-prune-');
    const reg = await startRegistry({ storageDir: dir.path });
    try {
      for (const p of fx.placed) await pushArtifact(reg.url, p);
      await pushArtifact(reg.url, { repository: 'old/stuff', tag: 'x', artifact: fx.dockerList });
      await pushArtifact(reg.url, { repository: 'a/b', tag: 'parent', artifact: fx.dockerImage });
      const keep = [...release2.placed, { repository: 'a/b/c', tag: 'keep-r1', artifact: fx.ociImage }];
      const dest = openStorageLayout(dir.path, { prune: true });
      await writeArtifacts(dest, keep);
      expect(dest.lastPrune?.repositories.sort()).toEqual(['a/b', 'old/stuff']);
      expect(await exists(join(dir.path, 'docker/registry/v2/repositories/old'))).toBe(false);

      const src = openStorageLayoutSource(dir.path);
      const listed = (await src.listImages()).map((i) => `${i.repository}:${i.tag}@${i.digest}`).sort();
      expect(listed).toEqual(keep.map((p) => `${p.repository}:${p.tag}@${p.artifact.digest}`).sort());

      // every data file is referenced by a kept image, and every link points at a kept object of that repository
      const wanted = new Set(keep.flatMap((p) => [...blobsOf(p.artifact), ...manifestsOf(p.artifact)].map((b) => b.digest)));
      const files = await walkFiles(join(dir.path, 'docker/registry/v2'));
      const data = files.filter((f) => f.endsWith('/data') && f.includes('/blobs/')).map((f) => `sha256:${f.split('/').at(-2)}`);
      expect(new Set(data)).toEqual(wanted);
      for (const p of keep) {
        const repoWanted = new Set([...blobsOf(p.artifact)].map((b) => b.digest));
        const linkDir = join(dir.path, 'docker/registry/v2/repositories', p.repository, '_layers/sha256');
        const links = (await readdir(linkDir)).map((h) => `sha256:${h}`);
        const repoAll = new Set(keep.filter((k) => k.repository === p.repository).flatMap((k) => blobsOf(k.artifact).map((b) => b.digest)));
        for (const l of links) expect(repoAll.has(l), l).toBe(true);
        for (const w of repoWanted) expect(links).toContain(w);
      }
      await expectServed(reg, keep);
      const gc = await gcDryRun(reg.configFile);
      expect(gc.blobs + gc.manifests, gc.output).toBe(0);
      expect(gc.marked).toBe(wanted.size);
      await expect(servedDigest(reg.host, 'old/stuff', 'x')).rejects.toThrow(/manifest unknown|not found|name unknown/i);
    } finally {
      await reg.stop();
      await dir.cleanup();
    }
  });
});
