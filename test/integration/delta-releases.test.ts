// Delta bundles end to end against the real docker-registry and skopeo: two
// releases built by seeded code, r2 changing top layers of some images, adding
// one image and dropping one. Everything goes through the built CLI.
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { type Artifact, blobsOf, makeImage, makeIndex, makeLayer, manifestsOf, Rng, type Layer } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { type RegistryHandle, startRegistry } from '../support/registry.js';
import { skopeoInspectDigest } from '../support/skopeo.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { validateDirImage, validateRegistryImage } from '../support/validate.js';
import { targetOf } from '../support/http.js';
import { readMetadataSync } from '../support/bundle-metadata.js';

interface Release {
  /** repository → artifact, all tagged `stable` */
  images: Map<string, Artifact>;
}

const TAG = 'stable';

function sha256File(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path).on('data', (c) => h.update(c)).on('end', () => resolve(`sha256:${h.digest('hex')}`)).on('error', reject);
  });
}

function blobDigests(r: Release): Map<string, number> {
  const out = new Map<string, number>();
  for (const a of r.images.values()) for (const b of blobsOf(a)) out.set(b.digest, b.size);
  return out;
}

async function buildReleases(seed: number): Promise<{ r1: Release; r2: Release }> {
  const rng = new Rng(seed);
  // Random (incompressible) content: sizes in the bundle are what they are on the wire.
  const layer = (size: number): Promise<Layer> => makeLayer(rng, { size, compressible: false, files: 2 });
  const base = await layer(600_000);
  const web1 = await layer(400_000);
  const web2 = await layer(1_200_000);
  const api = await layer(300_000);
  const cli = await layer(200_000);
  const amd = await layer(250_000);
  const arm1 = await layer(350_000);
  const arm2 = await layer(1_100_000);
  const svc = await layer(1_300_000);
  const arch = (armLayer: Layer, label: string) => makeIndex([
    makeImage({ layers: [base, amd], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'amd64' } }),
    makeImage({ layers: [armLayer], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, labels: { release: label } }),
  ], 'oci');
  const apiImage = makeImage({ layers: [base, api], mediaTypes: 'docker' });
  const r1: Release = {
    images: new Map<string, Artifact>([
      ['apps/web', makeImage({ layers: [base, web1], mediaTypes: 'docker', labels: { release: '1' } })],
      ['apps/api', apiImage],
      ['tools/cli', makeImage({ layers: [cli], mediaTypes: 'oci' })],
      ['multi/arch', arch(arm1, '1')],
    ]),
  };
  const r2: Release = {
    images: new Map<string, Artifact>([
      ['apps/web', makeImage({ layers: [base, web2], mediaTypes: 'docker', labels: { release: '2' } })],
      ['apps/api', apiImage],
      ['multi/arch', arch(arm2, '2')],
      // Shares nothing with r1: complete in the delta on its own.
      ['new/svc', makeImage({ layers: [svc], mediaTypes: 'oci', labels: { release: '2' } })],
    ]),
  };
  return { r1, r2 };
}

async function ferry(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const r = await runFerry(args, { timeoutMs: 120_000 });
  return { code: r.code, stdout: r.stdout, stderr: r.stderr };
}

async function ferryOk(args: string[]): Promise<string> {
  const r = await ferry(args);
  if (r.code !== 0) throw new Error(`ferry ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}`);
  return r.stdout;
}

interface Meta {
  bundleId: string;
  images: { repository: string; tag?: string | undefined; digest: string }[];
  blobs: { digest: string; size: number; kind: string }[];
  delta?: { bases: { bundleId: string; metadataDigest: string }[]; omittedBlobs: { digest: string; size: number; kind: string }[] } | undefined;
}

function sidecar(bundle: string): Meta {
  return readMetadataSync(`${bundle}.ferry.json`);
}

function storedBlobs(m: Meta): Map<string, number> {
  return new Map(m.blobs.filter((b) => b.kind === 'config' || b.kind === 'layer').map((b) => [b.digest, b.size]));
}

function sorted(m: Map<string, number>): string[] {
  return [...m.keys()].sort();
}

let src: RegistryHandle;
let work: TempDir;
let r1: Release;
let r2: Release;
let expectedNew: Map<string, number>;
let expectedOmitted: Map<string, number>;
const file = (name: string) => join(work.path, name);
const list = (r: Release) => [...r.images.keys()].map((repo) => `${src.host}/${repo}:${TAG}`).join('\n') + '\n';

beforeAll(async () => {
  work = makeTempDir('ferry-delta-');
  ({ r1, r2 } = await buildReleases(20240501));
  const b1 = blobDigests(r1);
  const b2 = blobDigests(r2);
  expectedNew = new Map([...b2].filter(([d]) => !b1.has(d)));
  expectedOmitted = new Map([...b2].filter(([d]) => b1.has(d)));
  src = await startRegistry();
  // Release 1 is pushed and exported, then release 2 moves the same tags.
  for (const [repo, a] of r1.images) await pushArtifact(src.url, repo, a, [TAG]);
  await import('node:fs/promises').then((fs) => Promise.all([fs.writeFile(file('r1.list'), list(r1)), fs.writeFile(file('r2.list'), list(r2))]));
  await ferryOk(['export', '-f', file('r1.list'), '-o', file('r1.tar'), '--cache', file('cache-r1'), '-q']);
  for (const [repo, a] of r2.images) await pushArtifact(src.url, repo, a, [TAG]);
  await ferryOk(['export', '-f', file('r2.list'), '-o', file('r2.tar'), '--cache', file('cache-r2'), '-q']);
}, 240_000);

afterAll(async () => {
  await src?.stop();
  await work?.cleanup();
});

describe('delta export (--since)', () => {
  it('from a prior bundle: stores exactly r2\'s blobs minus r1\'s, names the base, never fetches omitted blobs', async () => {
    // The registry loses the omitted blobs' data for the run: a fetch of any of them would fail the export.
    const hidden = [...expectedOmitted.keys()].map((d) => join(src.v2Dir, 'blobs', 'sha256', d.slice(7, 9), d.slice(7), 'data'));
    for (const p of hidden) renameSync(p, `${p}.hidden`);
    let out: string;
    try {
      out = await ferryOk(['export', '-f', file('r2.list'), '--since', file('r1.tar'), '-o', file('d.tar'), '--cache', file('cache-d'), '--json']);
    } finally {
      for (const p of hidden) renameSync(`${p}.hidden`, p);
    }
    const result = JSON.parse(out) as { fetchedBytes: number; delta: { omittedBlobs: number } };
    const meta = sidecar(file('d.tar'));
    expect(sorted(storedBlobs(meta))).toEqual(sorted(expectedNew));
    expect(meta.delta!.omittedBlobs.map((b) => b.digest).sort()).toEqual(sorted(expectedOmitted));
    // Every manifest of the release is in the delta.
    const manifests = new Set(meta.blobs.filter((b) => b.kind === 'manifest' || b.kind === 'index').map((b) => b.digest));
    for (const a of r2.images.values()) for (const m of manifestsOf(a)) expect(manifests.has(m.digest)).toBe(true);
    const r1meta = sidecar(file('r1.tar'));
    expect(meta.delta!.bases).toEqual([{ bundleId: r1meta.bundleId, metadataDigest: `sha256:${createHash('sha256').update(readFileSync(file('r1.tar.ferry.json'))).digest('hex')}` }]);
    // Only the new blobs crossed the network.
    expect(result.fetchedBytes).toBe([...expectedNew.values()].reduce((n, s) => n + s, 0));
    // The reader accepts it.
    await ferryOk(['verify', file('d.tar'), '-q']);

    // Figures for the report: delta vs full r2 vs bytes of truly new blobs.
    const deltaSize = statSync(file('d.tar')).size;
    const fullSize = statSync(file('r2.tar')).size;
    const newBytes = [...expectedNew.values()].reduce((n, s) => n + s, 0);
    const overhead = (deltaSize - newBytes) / newBytes;
    console.log(`[delta figures] full r2 bundle ${fullSize} B; delta ${deltaSize} B; new blob bytes ${newBytes} B; overhead ${(overhead * 100).toFixed(3)} %`);
    expect(overhead).toBeLessThan(0.01);
    expect(deltaSize).toBeLessThan(fullSize);
  });

  it('from the sidecar metadata alone: the same delta, byte for byte', async () => {
    await ferryOk(['export', '-f', file('r2.list'), '--since', file('r1.tar.ferry.json'), '-o', file('d-meta.tar'), '--cache', file('cache-d'), '-q']);
    expect(await sha256File(file('d-meta.tar'))).toBe(await sha256File(file('d.tar')));
  });

  it('from an inventory of a registry layout and of a live registry holding r1', async () => {
    const layout = file('inv-layout');
    await ferryOk(['import', file('r1.tar'), '--to', 'registry-layout', layout, '-q', '--receipt', file('receipt-inv.json')]);
    await ferryOk(['inventory', '--layout', layout, '-o', file('layout.inventory.json')]);
    const inv = JSON.parse(readFileSync(file('layout.inventory.json'), 'utf8')) as { format: string; id: string; images: unknown[]; blobs: { digest: string; size: number }[] };
    expect(inv.format).toBe('ferry-inventory');
    expect(inv.images).toHaveLength(r1.images.size);
    expect(inv.blobs.map((b) => b.digest).sort()).toEqual(sorted(blobDigests(r1)));
    await ferryOk(['export', '-f', file('r2.list'), '--since', file('layout.inventory.json'), '-o', file('d-inv.tar'), '--cache', file('cache-d'), '-q']);
    const m = sidecar(file('d-inv.tar'));
    expect(sorted(storedBlobs(m))).toEqual(sorted(expectedNew));
    expect(m.delta!.bases[0]!.bundleId).toBe(inv.id);

    const live = await startRegistry({ storageDir: layout });
    try {
      const stdout = await ferryOk(['inventory', '--registry', live.host]);
      const liveInv = JSON.parse(stdout) as { id: string; source: { kind: string }; images: unknown[] };
      expect(liveInv.source.kind).toBe('registry');
      // Same names, digests and blobs as the layout it serves: same content id.
      expect(liveInv.id).toBe(inv.id);
      await import('node:fs/promises').then((fs) => fs.writeFile(file('live.inventory.json'), stdout));
      await ferryOk(['export', '-f', file('r2.list'), '--since', file('live.inventory.json'), '-o', file('d-live.tar'), '--cache', file('cache-d'), '-q']);
      expect(sorted(storedBlobs(sidecar(file('d-live.tar'))))).toEqual(sorted(expectedNew));
    } finally {
      await live.stop();
    }
  });
});

describe('delta import and push', () => {
  it('imports into a layout holding r1; docker-registry serves r2 with its digests (skopeo)', async () => {
    const layout = file('layout-r1');
    await ferryOk(['import', file('r1.tar'), '--to', 'registry-layout', layout, '-q', '--receipt', file('receipt-1.json')]);
    const out = await ferryOk(['import', file('d.tar'), '--to', 'registry-layout', layout, '--json', '--receipt', file('receipt-2.json')]);
    const receipt = JSON.parse(out) as { blobs: Record<string, number> };
    expect(receipt.blobs['present-in-base']).toBe(expectedOmitted.size);
    const reg = await startRegistry({ storageDir: layout });
    try {
      for (const [repo, a] of r2.images) {
        expect(await skopeoInspectDigest(`${reg.host}/${repo}:${TAG}`)).toBe(a.digest);
        const walked = await validateRegistryImage(targetOf(reg), repo, TAG);
        expect(walked.digest).toBe(a.digest);
      }
    } finally {
      await reg.stop();
    }
  });

  it('pushes into a registry holding r1', async () => {
    const reg = await startRegistry();
    try {
      await ferryOk(['push', file('r1.tar'), '--to', reg.host, '-q', '--receipt', file('receipt-p1.json')]);
      await ferryOk(['push', file('d.tar'), '--to', reg.host, '-q', '--receipt', file('receipt-p2.json')]);
      for (const [repo, a] of r2.images) {
        expect(await skopeoInspectDigest(`${reg.host}/${repo}:${TAG}`)).toBe(a.digest);
        await validateRegistryImage(targetOf(reg), repo, TAG);
      }
    } finally {
      await reg.stop();
    }
  });

  it('into an empty layout: E_BASE_MISSING (exit 7) naming the images and the base; the complete image still lands', async () => {
    const layout = file('layout-empty');
    const r = await ferry(['import', file('d.tar'), '--to', 'registry-layout', layout, '--receipt', file('receipt-e.json')]);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toContain('E_BASE_MISSING');
    for (const repo of ['apps/web', 'apps/api', 'multi/arch']) expect(r.stderr).toContain(`${src.host}/${repo}:${TAG}`);
    expect(r.stderr).toContain(sidecar(file('r1.tar')).bundleId);
    const reg = await startRegistry({ storageDir: layout });
    try {
      expect(await skopeoInspectDigest(`${reg.host}/new/svc:${TAG}`)).toBe(r2.images.get('new/svc')!.digest);
    } finally {
      await reg.stop();
    }
  });

  it('to skopeo dirs: fails without the base, complete with --base r1', async () => {
    const bare = await ferry(['import', file('d.tar'), '--to', 'skopeo-dir', file('dirs-bare'), '--receipt', file('receipt-d0.json')]);
    expect(bare.code, bare.stderr).toBe(7);
    expect(bare.stderr).toContain('E_BASE_MISSING');
    await ferryOk(['import', file('d.tar'), '--to', 'skopeo-dir', file('dirs'), '--base', file('r1.tar'), '-q', '--receipt', file('receipt-d1.json')]);
    // One dir per image, named <repository path>:<tag> below the output.
    for (const [repo, a] of r2.images) {
      const walked = await validateDirImage(join(file('dirs'), `${repo}:${TAG}`));
      expect(walked.digest).toBe(a.digest);
    }
  });
});

describe('push of a delta to a registry that never had the base', () => {
  it('fails with E_BASE_MISSING (exit 7) alone; with --base r1 every image lands with its digest', async () => {
    const target = await startRegistry();
    try {
      const bare = await ferry(['push', file('d.tar'), '--to', target.host, '--plain-http', target.host, '--receipt', file('receipt-p0.json')]);
      expect(bare.code, bare.stderr).toBe(7);
      expect(bare.stderr).toContain('E_BASE_MISSING');
      await ferryOk(['push', file('d.tar'), '--to', target.host, '--plain-http', target.host, '--base', file('r1.tar'), '-q', '--receipt', file('receipt-p1.json')]);
      for (const [repo, a] of r2.images) expect(await skopeoInspectDigest(`${target.host}/${repo}:${TAG}`), repo).toBe(a.digest);
    } finally {
      await target.stop();
    }
  });
});

describe('merge and diff', () => {
  it('merge r1 + delta equals the full r2 export byte for byte (tar and tar.zst)', async () => {
    await ferryOk(['merge', file('r1.tar'), file('d.tar'), '-o', file('merged.tar'), '-q']);
    expect(await sha256File(file('merged.tar'))).toBe(await sha256File(file('r2.tar')));

    // Compressed: full r2 and the delta as .tar.zst (caches reused, nothing refetched); merge reads a zstd delta and writes zstd.
    await ferryOk(['export', '-f', file('r2.list'), '-o', file('r2.tar.zst'), '--cache', file('cache-r2'), '-q']);
    await ferryOk(['export', '-f', file('r2.list'), '--since', file('r1.tar'), '-o', file('d.tar.zst'), '--cache', file('cache-d'), '-q']);
    await ferryOk(['merge', file('r1.tar'), file('d.tar.zst'), '-o', file('merged.tar.zst'), '-q']);
    expect(await sha256File(file('merged.tar.zst'))).toBe(await sha256File(file('r2.tar.zst')));
  });

  it('merge without the right base: E_BASE_MISSING', async () => {
    const r = await ferry(['merge', file('d-inv.tar'), file('d.tar'), '-o', file('bad-merge.tar')]);
    expect(r.code, r.stderr).toBe(7);
    expect(r.stderr).toContain('E_BASE_MISSING');
  });

  it('diff of two bundles, metadata vs image list, inventory vs bundle', async () => {
    const d = JSON.parse(await ferryOk(['diff', file('r1.tar'), file('r2.tar'), '--json'])) as {
      images: { added: { image: string }[]; removed: { image: string }[]; changed: { image: string; from: string; to: string }[]; unchanged: number };
      blobs: { onlyB: { count: number; bytes: number }; onlyA: { count: number; bytes: number } };
    };
    const name = (repo: string) => `${src.host}/${repo}:${TAG}`;
    expect(d.images.added.map((i) => i.image)).toEqual([name('new/svc')]);
    expect(d.images.removed.map((i) => i.image)).toEqual([name('tools/cli')]);
    expect(d.images.changed.map((i) => i.image)).toEqual([name('apps/web'), name('multi/arch')]);
    expect(d.images.changed[0]!.to).toBe(r2.images.get('apps/web')!.digest);
    expect(d.images.unchanged).toBe(1);
    expect(d.blobs.onlyB).toEqual({ count: expectedNew.size, bytes: [...expectedNew.values()].reduce((n, s) => n + s, 0) });

    // An image list is resolved from the registry (which holds r2 now): same answer as the r2 bundle.
    const viaList = JSON.parse(await ferryOk(['diff', file('r1.tar.ferry.json'), file('r2.list'), '--json'])) as typeof d;
    expect(viaList.images).toEqual(d.images);
    expect(viaList.blobs.onlyB).toEqual(d.blobs.onlyB);

    // Layout inventory names repositories without the host: compared without hosts.
    const human = await ferryOk(['diff', file('layout.inventory.json'), file('d.tar')]);
    expect(human).toContain('new/svc:stable');
    expect(human).toContain('added');
    expect(human).toContain('tools/cli:stable');
  });
});
