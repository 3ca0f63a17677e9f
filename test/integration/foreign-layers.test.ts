// Foreign (non-distributable) layers: a layer whose publisher forbids registries to store it
// (Windows base layers) is named in the manifest with `urls`; distribution 2.8 accepts such a
// manifest without the blob (when its validation.manifests.urls.allow permits the URL) and
// answers 404 for the blob. Before, `ferry export` of such an image failed on that 404 and
// wrote no bundle. Now the descriptor travels and the bytes do not, as skopeo does, with a
// note; every reader treats the layer as absent by design (spec/bundle.md §2.2); and
// --include-foreign fetches the bytes from the URLs (a tiny local HTTP server here) through
// the engine's one verifier.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { BUNDLE_METADATA_ID, cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { clientFor } from '../support/http.js';
import { makeImage, makeLayer, Rng, type Image, type Layer } from '../support/images.js';
import { pushArtifact, pushBlob, pushManifest } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeoInspectDigest, skopeoOk } from '../support/skopeo.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { validateRegistryImage } from '../support/validate.js';
import { ferryOk, jsonOf, readBundleTar } from './cli-fixture.js';
import { readMetadata } from '../support/bundle-metadata.js';

const FOREIGN = { docker: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip', oci: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip' } as const;
const ALLOW = ['^http://127\\.0\\.0\\.1:'];
const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface ForeignImage {
  repo: string;
  tag: string;
  digest: string;
  bytes: Buffer;
  mediaType: string;
  config: { digest: string; size: number; bytes: Buffer };
  base: Layer;
  foreign: Layer;
}

let tmp: TempDir;
let reg: RegistryHandle;
let server: Server;
let serverHost: string;
/** What the server answers for /blobs/<hex>: the right bytes, or the same size with one bit flipped. */
let serveMode: 'good' | 'corrupt' = 'good';
let served = 0;
const blobsByHex = new Map<string, Buffer>();
let images: ForeignImage[];
let plain: Image;
let n = 0;
const path = (name: string) => join(tmp.path, `${String(++n).padStart(3, '0')}-${name}`);

/** An image with one ordinary layer and one foreign layer whose descriptor points at the test server. */
function foreignImage(types: 'docker' | 'oci', repo: string, base: Layer, foreign: Layer): ForeignImage {
  const oci = types === 'oci';
  const config = Buffer.from(JSON.stringify({
    architecture: 'amd64', os: 'windows', created: '2024-01-01T00:00:00Z',
    config: { Cmd: ['cmd'] }, rootfs: { type: 'layers', diff_ids: [base.diffId, foreign.diffId] },
  }));
  const manifest = {
    schemaVersion: 2,
    mediaType: oci ? 'application/vnd.oci.image.manifest.v1+json' : 'application/vnd.docker.distribution.manifest.v2+json',
    config: { mediaType: oci ? 'application/vnd.oci.image.config.v1+json' : 'application/vnd.docker.container.image.v1+json', digest: sha(config), size: config.length },
    layers: [
      { mediaType: oci ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.docker.image.rootfs.diff.tar.gzip', digest: base.digest, size: base.size },
      // A query string, as signed CDN URLs have: never shown by ferry.
      { mediaType: FOREIGN[types], digest: foreign.digest, size: foreign.size, urls: [`http://${serverHost}/blobs/${foreign.digest.slice(7)}?token=SECRET-TOKEN`] },
    ],
  };
  const bytes = Buffer.from(JSON.stringify(manifest, null, 3));
  return { repo, tag: '1', digest: sha(bytes), bytes, mediaType: manifest.mediaType, config: { digest: sha(config), size: config.length, bytes: config }, base, foreign };
}

async function push(target: string, img: ForeignImage): Promise<void> {
  await pushBlob(target, img.repo, img.base);
  await pushBlob(target, img.repo, { digest: img.config.digest, size: img.config.size, bytes: img.config.bytes, open: () => { throw new Error('in memory'); } });
  // The foreign layer's blob is NOT pushed: the registry accepts the manifest without it.
  await pushManifest(target, img.repo, img.tag, img.bytes, img.mediaType);
}

beforeAll(async () => {
  tmp = makeTempDir('ferry-foreign-');
  server = createServer((req, res) => {
    const hex = /^\/blobs\/([a-f0-9]{64})/.exec(req.url ?? '')?.[1];
    const body = hex ? blobsByHex.get(hex) : undefined;
    if (!body) {
      res.writeHead(404).end();
      return;
    }
    served++;
    const out = Buffer.from(body);
    if (serveMode === 'corrupt') out[out.length >> 1] = out[out.length >> 1]! ^ 1;
    res.writeHead(200, { 'content-length': String(out.length) }).end(out);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  serverHost = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  reg = await startRegistry({ foreignLayerUrls: ALLOW });
  const rng = new Rng(0xf0e1);
  const base = await makeLayer(rng.fork('base'), { size: 6_000 });
  const foreignA = await makeLayer(rng.fork('foreign-a'), { size: 20_000 });
  const foreignB = await makeLayer(rng.fork('foreign-b'), { size: 12_000 });
  for (const l of [foreignA, foreignB]) blobsByHex.set(l.digest.slice(7), l.bytes!);
  images = [foreignImage('docker', 'win/docker', base, foreignA), foreignImage('oci', 'win/oci', base, foreignB)];
  for (const img of images) await push(reg.url, img);
  plain = makeImage({ layers: [base], mediaTypes: 'oci', labels: { n: 'plain' } });
  await pushArtifact(reg.url, 'plain', plain, ['1']);
  // What the test rests on: distribution 2.8 holds the manifests, not the foreign blobs.
  for (const img of images) {
    expect((await clientFor(reg.url).request('HEAD', `/v2/${img.repo}/blobs/${img.foreign.digest}`)).status).toBe(404);
    expect(await skopeoInspectDigest(`${reg.host}/${img.repo}:1`)).toBe(img.digest);
  }
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  await new Promise((resolve) => server?.close(resolve));
  await tmp?.cleanup();
});

const refs = () => [...images.map((i) => `${reg.host}/${i.repo}:1`), `${reg.host}/plain:1`];
const net = () => ['--plain-http', reg.host];

const metaOf = async (file: string) => readMetadata(`${file}.ferry.json`);

describe('foreign (non-distributable) layers', () => {
  let bundle: string;

  it('export carries the descriptors, not the bytes, and says so; the URLs are never contacted nor shown with their query', async () => {
    bundle = path('release.tar');
    const r = await runFerry(['export', ...refs(), '-o', bundle, '--cache', path('cache'), ...net(), '--json']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const result = jsonOf<{ foreign: { carried: boolean; layers: { digest: string; size: number; urls: string[]; images: string[] }[] } }>(r);
    expect(describeErrors(schemaErrors(cliSchemaRef('exportResult'), result))).toBe('');
    expect(result.foreign.carried).toBe(false);
    expect(result.foreign.layers.map((l) => [l.digest, l.size, l.images])).toEqual(images.map((i) => [i.foreign.digest, i.foreign.size, [`${reg.host}/${i.repo}:1`]]));
    expect(result.foreign.layers[0]!.urls).toEqual([`http://${serverHost}/blobs/${images[0]!.foreign.digest.slice(7)}?…`]);
    expect(r.stdout).not.toContain('SECRET-TOKEN');
    expect(served).toBe(0);
    const meta = await metaOf(bundle);
    expect(describeErrors(schemaErrors(BUNDLE_METADATA_ID, JSON.parse(await readFile(`${bundle}.ferry.json`, 'utf8'))))).toBe('');
    expect(meta.foreignBlobs).toEqual(images.map((i) => ({ digest: i.foreign.digest, size: i.foreign.size, mediaType: i.bytes.includes('docker.distribution') ? FOREIGN.docker : FOREIGN.oci, kind: 'layer' })));
    expect(meta.blobs.map((b) => b.digest)).not.toContain(images[0]!.foreign.digest);
    // Referenced (the image's size), not stored.
    const winDocker = meta.images.find((i) => i.repository.endsWith('/win/docker'))!;
    expect(winDocker.size).toBe(images[0]!.bytes.length + images[0]!.config.size + images[0]!.base.size + images[0]!.foreign.size);
    const entries = (await readBundleTar(bundle)).map((e) => e.name);
    for (const img of images) expect(entries).not.toContain(`blobs/sha256/${img.foreign.digest.slice(7)}`);
    // The human form says it too.
    const human = await runFerry(['export', ...refs(), '-o', path('again.tar'), '--cache', path('cache'), ...net()]);
    expect(human.stdout).toMatch(/2 foreign \(non-distributable\) layers .* of 2 images not carried/);
  });

  it('verify and inspect take the layers as absent by design', async () => {
    const v = jsonOf<{ foreignBlobs: number }>(await ferryOk(['verify', bundle, '--json']));
    expect(describeErrors(schemaErrors(cliSchemaRef('verifyResult'), v))).toBe('');
    expect(v.foreignBlobs).toBe(2);
    const i = jsonOf<{ foreign: { blobs: number; bytes: number } }>(await ferryOk(['inspect', bundle, '--json']));
    expect(describeErrors(schemaErrors(cliSchemaRef('inspectResult'), i))).toBe('');
    expect(i.foreign).toEqual({ blobs: 2, bytes: images[0]!.foreign.size + images[1]!.foreign.size });
  });

  it('import writes the manifests without the foreign blobs: a registry layout served by docker-registry, an OCI layout and dir trees skopeo reads; a docker archive leaves those images out with the reason', async () => {
    const layout = path('layout');
    const r = jsonOf<{ foreign: { layers: number } }>(await ferryOk(['import', bundle, '--to', `registry-layout:${layout}`, '--json']));
    expect(describeErrors(schemaErrors(cliSchemaRef('importReceipt'), r))).toBe('');
    expect(r.foreign.layers).toBe(2);
    const served2 = await startRegistry({ storageDir: layout });
    try {
      for (const img of images) {
        expect(await skopeoInspectDigest(`${served2.host}/${img.repo}:1`)).toBe(img.digest);
        const c = clientFor(served2.url);
        expect((await c.request('HEAD', `/v2/${img.repo}/blobs/${img.config.digest}`)).status).toBe(200);
        expect((await c.request('HEAD', `/v2/${img.repo}/blobs/${img.foreign.digest}`)).status).toBe(404);
      }
      expect((await validateRegistryImage(served2.url, 'plain', '1')).digest).toBe(plain.digest);
    } finally {
      await served2.stop();
    }
    const oci = path('oci');
    await ferryOk(['import', bundle, '--to', `oci:${oci}`, '-q']);
    const raw = await skopeoOk(['inspect', '--raw', `oci:${oci}:win/oci:1`]);
    expect(sha(raw.stdoutBytes)).toBe(images[1]!.digest);
    expect(existsSync(join(oci, 'blobs', 'sha256', images[1]!.foreign.digest.slice(7)))).toBe(false);
    const dirs = path('dirs');
    await ferryOk(['import', bundle, '--to', `skopeo-dir:${dirs}`, '-q']);
    for (const img of images) {
      const d = join(dirs, `${img.repo}:1`);
      expect(sha((await skopeoOk(['inspect', '--raw', `dir:${d}`])).stdoutBytes)).toBe(img.digest);
      expect((await readdir(d)).sort()).toEqual([img.base.digest.slice(7), img.config.digest.slice(7), 'manifest.json', 'version'].sort());
    }
    const archive = await runFerry(['import', bundle, '--to', `docker-archive:${path('archive.tar')}`, '--json']);
    expect(archive.code, archive.stdout).toBe(0);
    const receipt = jsonOf<{ images: { repository: string; status: string; reason?: string }[] }>(archive);
    for (const img of images) expect(receipt.images.find((i) => i.repository.endsWith(img.repo))).toMatchObject({ status: 'skipped', reason: expect.stringContaining('--include-foreign') });
    expect(receipt.images.find((i) => i.repository.endsWith('/plain'))!.status).toBe('done');
  });

  it('push lands them where the registry allows the URLs; one that allows none (distribution\'s default) refuses those manifests, the rest lands, the exit status says so', async () => {
    const allowing = await startRegistry({ foreignLayerUrls: ALLOW });
    const strict = await startRegistry();
    try {
      await ferryOk(['push', bundle, '--to', allowing.host, '--plain-http', allowing.host, '-q']);
      for (const img of images) expect(await skopeoInspectDigest(`${allowing.host}/${img.repo}:1`)).toBe(img.digest);
      const r = await runFerry(['push', bundle, '--to', strict.host, '--plain-http', strict.host, '--json']);
      expect(r.code).toBe(3);
      const err = jsonOf<{ error: { code: string; details: { failures: { image: string }[] } } }>(r).error;
      expect(err.code).toBe('E_REGISTRY');
      expect(err.details.failures.map((f) => f.image).sort()).toEqual(images.map((i) => `${reg.host}/${i.repo}:1`).sort());
      expect(await skopeoInspectDigest(`${strict.host}/plain:1`)).toBe(plain.digest);
    } finally {
      await Promise.all([allowing.stop(), strict.stop()]);
    }
  });

  it('--include-foreign: plain http only to --plain-http hosts (refused before the first byte); bytes that do not match fail with no bundle; once served right, the layers are carried and land everywhere', async () => {
    const cache = path('cache-include');
    const out = path('with-foreign.tar');
    const refused = await runFerry(['export', ...refs(), '-o', out, '--cache', cache, ...net(), '--include-foreign', '--json']);
    // Known from the manifests: refused before the first blob.
    expect(refused.code).toBe(2);
    const refusal = jsonOf<{ error: { code: string; message: string } }>(refused).error;
    expect(refusal.code).toBe('E_USAGE');
    expect(refusal.message).toContain('--plain-http');
    expect(refusal.message).toContain(images[0]!.foreign.digest);
    expect(refusal.message).not.toContain('SECRET-TOKEN');
    expect(served).toBe(0);
    expect(existsSync(out)).toBe(false);
    const cached = existsSync(cache) ? (await readdir(cache, { recursive: true })).filter((f) => /[a-f0-9]{64}$/.test(String(f))) : [];
    expect(cached).toEqual([]);

    serveMode = 'corrupt';
    const bad = await runFerry(['export', ...refs(), '-o', out, '--cache', cache, ...net(), '--plain-http', serverHost, '--include-foreign', '--json']);
    expect(bad.code).toBe(6);
    expect(jsonOf<{ error: { code: string; message: string } }>(bad).error.code).toBe('E_DIGEST_MISMATCH');
    expect(served).toBeGreaterThan(0);
    expect(existsSync(out)).toBe(false);

    serveMode = 'good';
    const r = await runFerry(['export', ...refs(), '-o', out, '--cache', cache, ...net(), '--plain-http', serverHost, '--include-foreign', '--json']);
    expect(r.code, r.stdout).toBe(0);
    expect(jsonOf<{ foreign: { carried: boolean } }>(r).foreign.carried).toBe(true);
    const meta = await metaOf(out);
    expect(meta.foreignBlobs).toBeUndefined();
    for (const img of images) expect(meta.blobs.map((b) => b.digest)).toContain(img.foreign.digest);
    await ferryOk(['verify', out, '-q']);
    const layout = path('layout-full');
    await ferryOk(['import', out, '--to', `registry-layout:${layout}`, '-q']);
    const served3 = await startRegistry({ storageDir: layout });
    try {
      // Every blob there and hashing right, the foreign ones included.
      for (const img of images) expect((await validateRegistryImage(served3.url, img.repo, '1')).digest).toBe(img.digest);
    } finally {
      await served3.stop();
    }
  });

  it('merge of a base and a delta keeps the foreign layers as descriptors: the same bundle a full export writes', async () => {
    const base = path('base.tar');
    await ferryOk(['export', `${reg.host}/win/docker:1`, '-o', base, '--cache', path('cache-m'), ...net(), '-q']);
    const delta = path('delta.tar');
    await ferryOk(['export', ...refs(), '--since', base, '-o', delta, '--cache', path('cache-m'), ...net(), '-q']);
    const merged = path('merged.tar');
    await ferryOk(['merge', base, delta, '-o', merged, '-q']);
    const full = path('full.tar');
    await ferryOk(['export', ...refs(), '-o', full, '--cache', path('cache-m'), ...net(), '-q']);
    expect((await metaOf(merged)).bundleId).toBe((await metaOf(full)).bundleId);
    expect((await metaOf(merged)).foreignBlobs).toHaveLength(2);
    const a = await readFile(merged);
    expect(a.equals(await readFile(full))).toBe(true);
    // diff: foreign layers are neither side's blobs, so an identical pair differs in nothing.
    const d = jsonOf<{ blobs: { onlyA: { count: number }; onlyB: { count: number } } }>(await ferryOk(['diff', full, merged, '--json']));
    expect([d.blobs.onlyA.count, d.blobs.onlyB.count]).toEqual([0, 0]);
  });
});
