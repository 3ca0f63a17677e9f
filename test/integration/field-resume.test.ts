// Resumable export: a run killed (SIGKILL) half-way through a big layer leaves
// the bytes it had in the cache's partial file; the next run asks the registry
// only for the rest (Range: bytes=N-) and the bundle verifies. Real
// docker-registry behind a counting proxy on loopback; real CLI as a child.
import { existsSync } from 'node:fs';
import { readdir, stat, writeFile, mkdir } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import { makeImage, makeLayer, makeStreamLayer, Rng, type Image, type Layer } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { ferryOk, jsonOf } from './cli-fixture.js';

interface Seen {
  method: string;
  path: string;
  range: string | undefined;
  status: number;
  /** Response body bytes the proxy passed on. */
  bytes: number;
}

/** Forwards to the registry, counting every response's bytes; can stall a blob after N bytes, or drop Range headers. */
interface CountingProxy {
  host: string;
  seen: Seen[];
  /** Forward at most this many body bytes of GETs for this digest, then go silent (the connection stays open). */
  stall?: { digest: string; after: number };
  /** Behave like a registry without Range support. */
  ignoreRange?: boolean;
  blobGets(digest: string): Seen[];
  stop(): Promise<void>;
}

async function startCountingProxy(upstream: string): Promise<CountingProxy> {
  const target = new URL(upstream);
  const proxy: CountingProxy = {
    host: '', seen: [],
    blobGets: (digest) => proxy.seen.filter((s) => s.method === 'GET' && s.path.endsWith(`/blobs/${digest}`)),
    stop: () => new Promise<void>((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
  const server: Server = createServer((req: IncomingMessage, res) => {
    const path = req.url ?? '/';
    const entry: Seen = { method: req.method ?? '', path, range: req.headers.range, status: 0, bytes: 0 };
    proxy.seen.push(entry);
    const headers = { ...req.headers };
    if (proxy.ignoreRange) delete headers.range;
    const stall = proxy.stall && req.method === 'GET' && path.endsWith(`/blobs/${proxy.stall.digest}`) ? proxy.stall.after : undefined;
    const up = request({ host: target.hostname, port: target.port, method: req.method, path, headers }, (upRes) => {
      entry.status = upRes.statusCode ?? 0;
      res.writeHead(upRes.statusCode ?? 502, upRes.headers);
      upRes.on('data', (chunk: Buffer) => {
        if (stall !== undefined) {
          const room = stall - entry.bytes;
          if (room <= 0) return;
          if (chunk.length > room) chunk = chunk.subarray(0, room);
        }
        entry.bytes += chunk.length;
        res.write(chunk);
      });
      upRes.on('end', () => { if (stall === undefined) res.end(); });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  return proxy;
}

let tmp: TempDir;
let reg: RegistryHandle;
let proxy: CountingProxy;
let big: Layer;
let image: Image;
let ref: string;
const HALF = 5 * 1024 * 1024;

beforeAll(async () => {
  tmp = makeTempDir('ferry-field-resume-');
  reg = await startRegistry();
  // Random bytes: gzip cannot shrink them, so the layer is really ~12 MB on the wire.
  big = await makeStreamLayer({ seed: 0x5e5e, size: 12 * 1024 * 1024, compressible: false, files: 1 });
  const small = await makeLayer(new Rng(7), { size: 4096 });
  image = makeImage({ layers: [small, big], mediaTypes: 'oci' });
  await pushArtifact(reg.url, 'field/big', image, ['1.0']);
  proxy = await startCountingProxy(reg.url);
  ref = `${proxy.host}/field/big:1.0`;
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  await reg?.stop();
  await tmp?.cleanup();
});

function partialOf(cache: string, digest: string): string {
  return join(cache, 'partial', digest.slice('sha256:'.length));
}

async function sizeOf(path: string): Promise<number> {
  try {
    return (await stat(path)).size;
  } catch {
    return -1;
  }
}

/** Runs an export that stalls after HALF bytes of the big layer and SIGKILLs it once those bytes reached the partial file. */
async function killedExport(cache: string, out: string): Promise<void> {
  proxy.stall = { digest: big.digest, after: HALF };
  const partial = partialOf(cache, big.digest);
  try {
    const r = await runFerry(['export', ref, '-o', out, '--cache', cache, '--plain-http', proxy.host, '-q'], {
      timeoutMs: 60_000,
      onSpawn: (child) => {
        const poll = setInterval(() => {
          void sizeOf(partial).then((n) => {
            if (n >= HALF) {
              clearInterval(poll);
              child.kill('SIGKILL');
            }
          });
        }, 50);
        child.on('close', () => clearInterval(poll));
      },
    });
    expect(r.signal, r.stderr).toBe('SIGKILL');
  } finally {
    delete proxy.stall;
  }
  expect(await sizeOf(partial)).toBe(HALF);
  expect(existsSync(out)).toBe(false);
}

describe('export resumes a cut-off blob from the cache', () => {
  it('continues with a Range request after SIGKILL, fetching only the rest, and the bundle verifies', async () => {
    const cache = join(tmp.path, 'cache-1');
    const out = join(tmp.path, 'resumed.tar');
    await killedExport(cache, out);
    expect(proxy.blobGets(big.digest)).toHaveLength(1);

    const before = proxy.seen.length;
    const r = await ferryOk(['export', ref, '-o', out, '--cache', cache, '--plain-http', proxy.host, '--json']);
    const second = proxy.seen.slice(before);
    const gets = second.filter((s) => s.method === 'GET' && s.path.endsWith(`/blobs/${big.digest}`));
    expect(gets).toHaveLength(1);
    expect(gets[0]!.range).toBe(`bytes=${HALF}-`);
    expect(gets[0]!.status).toBe(206);
    expect(gets[0]!.bytes).toBe(big.size - HALF);
    // Everything that crossed the wire for blobs in the second run: the rest of the big layer, plus at most the small blobs.
    const blobBytes = second.filter((s) => s.method === 'GET' && s.path.includes('/blobs/')).reduce((n, s) => n + s.bytes, 0);
    expect(blobBytes).toBeLessThan(big.size - HALF + 64 * 1024);
    const result = jsonOf<{ fetchedBytes: number; blobs: number }>(r);
    expect(result.fetchedBytes).toBeLessThan(big.size - HALF + 64 * 1024);
    expect(result.fetchedBytes).toBeGreaterThanOrEqual(big.size - HALF);

    // The partial file served its purpose; the blob is in the cache under its digest.
    expect(await readdir(join(cache, 'partial'))).toEqual([]);
    expect(await sizeOf(join(cache, 'blobs', 'sha256', big.digest.slice(7)))).toBe(big.size);
    const v = jsonOf<{ blobs: number; bytes: number }>(await ferryOk(['verify', out, '--json']));
    expect(v.bytes).toBeGreaterThanOrEqual(big.size);
  }, 120_000);

  it('starts over when the registry ignores Range (200), and the bundle still verifies', async () => {
    const cache = join(tmp.path, 'cache-2');
    const out = join(tmp.path, 'restarted.tar');
    await killedExport(cache, out);
    proxy.ignoreRange = true;
    try {
      const before = proxy.seen.length;
      await ferryOk(['export', ref, '-o', out, '--cache', cache, '--plain-http', proxy.host, '-q']);
      const gets = proxy.seen.slice(before).filter((s) => s.method === 'GET' && s.path.endsWith(`/blobs/${big.digest}`));
      expect(gets).toHaveLength(1);
      expect(gets[0]!.range).toBe(`bytes=${HALF}-`);
      expect(gets[0]!.status).toBe(200);
      expect(gets[0]!.bytes).toBe(big.size);
    } finally {
      proxy.ignoreRange = false;
    }
    await ferryOk(['verify', out, '-q']);
    expect(await readdir(join(cache, 'partial'))).toEqual([]);
  }, 120_000);

  it('drops a partial file whose bytes are wrong and fetches the blob whole', async () => {
    const cache = join(tmp.path, 'cache-3');
    const out = join(tmp.path, 'repaired.tar');
    await mkdir(join(cache, 'partial'), { recursive: true });
    await writeFile(partialOf(cache, big.digest), Buffer.alloc(1000, 0x41));
    const before = proxy.seen.length;
    await ferryOk(['export', ref, '-o', out, '--cache', cache, '--plain-http', proxy.host, '-q']);
    const gets = proxy.seen.slice(before).filter((s) => s.method === 'GET' && s.path.endsWith(`/blobs/${big.digest}`));
    // First the resume (verification fails: the prefix is garbage), then the engine's retry from byte 0.
    expect(gets.map((g) => g.range)).toEqual(['bytes=1000-', undefined]);
    expect(gets[1]!.bytes).toBe(big.size);
    await ferryOk(['verify', out, '-q']);
    expect(await readdir(join(cache, 'partial'))).toEqual([]);
  }, 120_000);
});
