// What `ferry serve` reads, each checked by pulling every image back through the
// independent deep validator (every manifest and blob fetched over HTTP and hashed):
// a split bundle's volumes in place (a layer cut across volumes read as its parts,
// Range across the cut), a delta over its base, a registry layout and an OCI layout
// through their sources. And what it refuses before listening, with the documented
// exit status: zstd bundles, a missing volume, a delta without its base, two images
// on one served tag, a busy port, bad flags.
import { readdir, rm } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry, type FerryResult } from '../support/cli.js';
import type { Image } from '../support/images.js';
import { startServe, type ServeHandle } from '../support/serve.js';
import { validateRegistryImage } from '../support/validate.js';
import { type CliEnv, entry, expectationsOf, ferryOk, jsonOf, pushExtraImage, startCliEnv, tarOffsets, writeList } from './cli-fixture.js';

let env: CliEnv;
let bundle: string;

beforeAll(async () => {
  env = await startCliEnv(0x5e75);
  bundle = env.path('rel.tar');
  await ferryOk(['export', ...env.corpus.hostRefs, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
}, 120_000);
afterAll(async () => {
  await env?.stop();
});

/** Every corpus image pulled back from the server and checked blob by blob; `names` maps corpus repositories to served ones. */
async function expectAllServed(s: ServeHandle, names: (repo: string) => string = (r) => r, entries = env.corpus.entries): Promise<void> {
  for (const x of expectationsOf(env.corpus, entries)) {
    const walked = await validateRegistryImage(s.url, names(x.repo), x.ref);
    expect(walked.digest, `${x.repo} ${x.ref}`).toBe(x.digest);
  }
}

function errorOf(r: FerryResult): { code: string; message: string; hint?: string; details: Record<string, unknown> } {
  return jsonOf<{ error: { code: string; message: string; hint?: string; details: Record<string, unknown> } }>(r).error;
}

async function refused(args: string[], code: string, status: number): Promise<{ code: string; message: string; hint?: string }> {
  const r = await runFerry(['serve', ...args, '--listen', '127.0.0.1:0', '--json', '--cache', env.path('serve-cache')]);
  const err = errorOf(r);
  expect([r.code, err.code], r.stderr).toEqual([status, code]);
  return err;
}

function rangeOf(url: string, path: string, range: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    request(new URL(path, url), { headers: { Range: range }, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => (res.statusCode === 206 ? resolve(Buffer.concat(chunks)) : reject(new Error(`HTTP ${res.statusCode}`))));
    }).on('error', reject).end();
  });
}

describe('ferry serve: a split bundle, read where its volumes lie', () => {
  let dir: string;
  beforeAll(async () => {
    dir = env.path('split');
    // Small enough that the 300 KB base layer is cut into parts across volumes.
    await ferryOk(['export', ...env.corpus.hostRefs, '-o', join(dir, 'rel.tar'), '--split', '160K', '--cache', env.path('cache'), ...env.net, '-q']);
  });

  it('serves every image from the .sha256 list, a cut layer whole and by ranges across the cut', async () => {
    const files = (await readdir(dir)).filter((f) => /^rel\.\d+\.tar$/.test(f)).sort();
    expect(files.length).toBeGreaterThan(2);
    const offsets = await Promise.all(files.map((f) => tarOffsets(join(dir, f))));
    const cut = [...offsets.flatMap((o) => [...o.keys()])].find((n) => n.startsWith('ferry-parts/'))!;
    expect(cut, 'a layer is cut across volumes').toBeDefined();
    const s = await startServe([join(dir, 'rel.sha256'), '--cache', env.path('serve-cache')]);
    try {
      expect(s.started.bundles![0]!.files).toHaveLength(files.length);
      expect(s.openFiles()).toEqual(files.map((f) => join(dir, f)).sort());
      await expectAllServed(s);
      const digest = `sha256:${/ferry-parts\/sha256\/([a-f0-9]{64})\./.exec(cut)![1]}`;
      const base = entry(env.corpus, 'library/base-os').artifact as Image;
      const layer = base.layers.find((l) => l.digest === digest)!;
      const first = offsets.flatMap((o) => [...o]).find(([n]) => n === `ferry-parts/sha256/${digest.slice(7)}.0`)![1];
      const got = await rangeOf(s.url, `/v2/library/base-os/blobs/${digest}`, `bytes=${first.size - 100}-${first.size + 99}`);
      expect(got.equals(layer.bytes!.subarray(first.size - 100, first.size + 100))).toBe(true);
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
  });

  it('volumes given one by one work the same; a missing volume is refused before listening, naming it (E_BLOB_MISSING, 6)', async () => {
    const files = (await readdir(dir)).filter((f) => /^rel\.\d+\.tar$/.test(f)).sort().map((f) => join(dir, f));
    const s = await startServe([...files].reverse());
    try {
      await expectAllServed(s, undefined, [entry(env.corpus, 'multi/arch')]);
    } finally {
      await s.stop();
    }
    const err = await refused(files.slice(1), 'E_BLOB_MISSING', 6);
    expect(err.message).toContain(`volume 1 of ${files.length}`);
  });
});

describe('ferry serve: a delta over its base', () => {
  it('serves release 2 from delta + base (the base supplies what the delta leaves out); the delta alone is E_BASE_MISSING (7)', async () => {
    const extra = await pushExtraImage(env.reg.url, 'apps/new', '2.0', 0x5e76);
    const r2 = await writeList(env.path('r2.list'), [...env.corpus.hostRefs, `${env.corpus.host}/apps/new:2.0`].join('\n'));
    const delta = env.path('delta.tar');
    await ferryOk(['export', '-f', r2, '--since', bundle, '-o', delta, '--cache', env.path('cache'), ...env.net, '-q']);
    const s = await startServe([bundle, delta, '--cache', env.path('serve-cache')]);
    try {
      expect(s.started.bundles!.map((b) => b.role).sort()).toEqual(['base', 'served']);
      await expectAllServed(s);
      const walked = await validateRegistryImage(s.url, 'apps/new', '2.0');
      expect(walked.digest).toBe(extra.digest);
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
    const err = await refused([delta], 'E_BASE_MISSING', 7);
    expect(err.hint).toContain('base');
  });
});

describe('ferry serve --layout / --oci', () => {
  it('serves a registry storage layout through its source, and an OCI layout', async () => {
    const layout = env.path('layout');
    await ferryOk(['import', bundle, '--to', 'registry-layout', layout, '-q']);
    let s = await startServe(['--layout', layout]);
    try {
      expect(s.started.source).toEqual({ kind: 'registry-layout', paths: [layout] });
      await expectAllServed(s);
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
    const oci = env.path('oci');
    await ferryOk(['import', bundle, '--to', 'oci', oci, '-q']);
    s = await startServe(['--oci', oci]);
    try {
      const tagged = env.corpus.entries.filter((e) => e.tags.length > 0);
      const served = new Map(s.started.images.map((i) => [`${i.repository}:${i.tag}`, i.digest]));
      for (const e of tagged) for (const t of e.tags) expect(served.get(`${e.repo}:${t}`), `${e.repo}:${t}`).toBe(e.digest);
      await expectAllServed(s, undefined, tagged);
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
  });
});

describe('ferry serve: names', () => {
  it('--prefix and --rename map names as on import; two images on one served tag are refused, listed (E_USAGE, 2)', async () => {
    const host = env.corpus.host;
    const s = await startServe([bundle, '--prefix', 'mirror', '--rename', `${host}/apps=applications`, '--cache', env.path('serve-cache')]);
    try {
      const refs = s.started.images.map((i) => i.reference.slice(s.host.length + 1));
      expect(refs).toContain('mirror/applications/web:v1');
      expect(refs).toContain('mirror/library/base-os:1.0');
      await expectAllServed(s, (r) => `mirror/${r.replace(/^apps\//, 'applications/')}`, [entry(env.corpus, 'apps/web'), entry(env.corpus, 'multi/arch')]);
    } finally {
      await s.stop();
    }
    const err = await refused([bundle, '--rename', `${host}/library/base-os=same`, '--rename', `${host}/multi/arch=same`], 'E_USAGE', 2);
    expect(err.message).toContain('same:1.0');
  });
});

describe('ferry serve refuses before listening', () => {
  it('a zstd bundle (E_USAGE, 2: serve the .tar, or zstd -d once), a missing file (5), bad --listen (2), a busy port (E_NETWORK, 3)', async () => {
    const zst = env.path('rel.tar.zst');
    await ferryOk(['export', ...env.corpus.hostRefs, '-o', zst, '--cache', env.path('cache'), ...env.net, '-q']);
    const z = await refused([zst], 'E_USAGE', 2);
    expect(`${z.message} ${z.hint}`).toContain('zstd -d');
    await refused([env.path('nope.tar')], 'E_NOT_FOUND', 5);
    for (const listen of ['5000', 'localhost', '127.0.0.1:99999', 'a b:1']) {
      const r = await runFerry(['serve', bundle, '--listen', listen, '--json']);
      expect([listen, r.code, errorOf(r).code]).toEqual([listen, 2, 'E_USAGE']);
    }
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    try {
      const port = (busy.address() as AddressInfo).port;
      const r = await runFerry(['serve', bundle, '--listen', `127.0.0.1:${port}`, '--json', '--cache', env.path('serve-cache')]);
      expect([r.code, errorOf(r).code]).toEqual([3, 'E_NETWORK']);
      expect(errorOf(r).message).toContain('in use');
    } finally {
      busy.close();
    }
    await refused(['--layout', env.path('no-layout')], 'E_NOT_FOUND', 5);
    const both = await runFerry(['serve', bundle, '--layout', env.path('x'), '--json']);
    expect([both.code, errorOf(both).code]).toEqual([2, 'E_USAGE']);
    await rm(zst);
  });

  it('by default listens on loopback port 5000 only', async () => {
    // Port 5000 may be taken on a shared machine: the busy-port answer names the default address then.
    const r = await runFerry(['serve', bundle, '--json', '--cache', env.path('serve-cache')], { timeoutMs: 3000 });
    const text = r.stdout;
    const doc = JSON.parse(text) as { address?: string; error?: { details: { listen: string } } };
    if (doc.error) expect(doc.error.details.listen).toBe('127.0.0.1:5000');
    else expect(doc.address).toBe('127.0.0.1:5000');
  });
});

