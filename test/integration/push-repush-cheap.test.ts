// Re-push of what a registry holds already (issue #16, "Scale"): one cheap question per
// image, not one per blob and manifest and a tag PUT each. The requests are counted by
// a loopback pass-through in front of the real docker-registry, which sees and answers
// everything; ferry talks to the pass-through as its registry.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { type CliEnv, ferryOk, imagesList, jsonOf, pushExtraImage, startCliEnv, writeList } from './cli-fixture.js';

interface Receipt {
  images: { repository: string; tag?: string; digest: string; status: string }[];
  blobs: { copied: number; skipped: number; mounted: number; bytesCopied: number };
  manifests: number;
}

let env: CliEnv;
let bundle: string;
let target: RegistryHandle;
let proxy: Server;
let host: string;
/** `METHOD kind` of each request since the last reset: kind is blob, upload, manifest-by-digest, manifest-by-tag or other. */
let seen: string[] = [];

beforeAll(async () => {
  env = await startCliEnv(0x3e);
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  target = await startRegistry();
  const upstream = new URL(target.url);
  proxy = createServer((req, res) => {
    seen.push(`${req.method} ${kindOf(req.url ?? '')}`);
    const fwd = request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers: req.headers }, (up) => {
      res.writeHead(up.statusCode ?? 502, up.headers);
      up.pipe(res);
    });
    fwd.on('error', () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
  await target?.stop();
  await env?.stop();
});

function kindOf(url: string): string {
  if (/\/blobs\/uploads\//.test(url)) return 'upload';
  if (/\/blobs\/sha256:/.test(url)) return 'blob';
  if (/\/manifests\/sha256:/.test(url)) return 'manifest-by-digest';
  if (/\/manifests\//.test(url)) return 'manifest-by-tag';
  return 'other';
}

const push = async (name: string): Promise<Receipt> =>
  jsonOf<Receipt>(await ferryOk(['push', bundle, '--to', host, '--plain-http', host, '--receipt', env.path(name), '--json']));

const count = (what: string): number => seen.filter((s) => s === what).length;

describe('push of images a registry holds already', () => {
  it('asks one HEAD per image and sends nothing; an image whose tag moved away is pushed again, whole', async () => {
    const first = await push('r1.json');
    expect(first.images.every((i) => i.status === 'done')).toBe(true);
    const tagged = first.images.filter((i) => i.tag !== undefined);
    const byDigest = first.images.length - tagged.length;
    expect(tagged.length).toBeGreaterThan(1);
    // The first push asked per blob (and uploaded): the count below is the shortcut's, not the corpus's.
    expect(count('POST upload')).toBeGreaterThan(0);

    seen = [];
    const again = await push('r2.json');
    expect(again.images.every((i) => i.status === 'done')).toBe(true);
    expect(again.blobs).toMatchObject({ copied: 0, skipped: 0, mounted: 0, bytesCopied: 0 });
    expect(again.manifests).toBe(0);
    // One question per image: by tag, or by digest for a digest-only image; no blob asked, nothing written.
    expect(count('HEAD manifest-by-tag')).toBe(tagged.length);
    expect(count('HEAD manifest-by-digest')).toBe(byDigest);
    expect(seen.filter((s) => !s.startsWith('HEAD manifest') && s !== 'GET other')).toEqual([]);

    // A tag moved to another image: that image is not whole there any more and gets the ordinary path.
    const moved = tagged[0]!;
    await pushExtraImage(target.url, moved.repository, moved.tag!, 0x77);
    seen = [];
    const third = await push('r3.json');
    expect(third.images.every((i) => i.status === 'done')).toBe(true);
    expect(count('PUT manifest-by-tag')).toBe(1);
    expect(count('HEAD blob')).toBeGreaterThan(0);
    const head = await fetch(`${target.url}/v2/${moved.repository}/manifests/${moved.tag!}`, {
      method: 'HEAD', headers: { accept: 'application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json' },
    });
    expect(head.headers.get('docker-content-digest')).toBe(moved.digest);
  });
});
