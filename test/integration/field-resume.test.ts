// Resumable export: a run killed (SIGKILL) half-way through a big layer leaves
// the bytes it had written at that layer's place in the bundle's work file, and
// the journal beside it says how many; the next run continues into the same file
// and asks the registry only for the rest (Range: bytes=N-), and the bundle
// verifies. No cache is involved: the bundle's own file is what a rerun resumes.
// Real docker-registry behind a counting proxy on loopback; real CLI as a child.
import { existsSync } from 'node:fs';
import { open, readdir, readFile } from 'node:fs/promises';
import { createServer, request, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, dirname, join } from 'node:path';
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

/** An empty cache folder: nothing is read from (or written to) the tester's ~/.cache/ferry. */
function env(): Record<string, string> {
  return { XDG_CACHE_HOME: join(tmp.path, 'xdg-cache'), FERRY_CACHE: '' };
}

/** The work file an export to `out` is writing (or left behind), and its journal. */
async function workFileOf(out: string): Promise<string | undefined> {
  const names = await readdir(dirname(out)).catch(() => [] as string[]);
  const file = names.find((n) => n.startsWith(`.ferry-resume-${basename(out)}.`) && !n.endsWith('.journal'));
  return file === undefined ? undefined : join(dirname(out), file);
}

/** What the journal says about a blob: its data offset in the work file, and how many of its first bytes are there. */
async function progressOf(out: string, digest: string): Promise<{ offset: number; bytes: number } | undefined> {
  const work = await workFileOf(out);
  if (work === undefined) return undefined;
  const text = await readFile(`${work}.journal`, 'utf8').catch(() => '');
  let found: { offset: number; bytes: number } | undefined;
  for (const line of text.split('\n')) {
    const [kind, offset, hex, n] = line.split(' ');
    if (kind === 'P' && hex === digest.slice(7)) found = { offset: Number(offset), bytes: Number(n) };
  }
  return found;
}

/** Runs an export that stalls after HALF bytes of the big layer and SIGKILLs it once the journal records those bytes. */
async function killedExport(out: string): Promise<{ offset: number; bytes: number }> {
  proxy.stall = { digest: big.digest, after: HALF };
  try {
    const r = await runFerry(['export', ref, '-o', out, '--plain-http', proxy.host, '-q'], {
      timeoutMs: 60_000,
      env: env(),
      onSpawn: (child) => {
        const poll = setInterval(() => {
          void progressOf(out, big.digest).then((p) => {
            if (p && p.bytes >= HALF) {
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
  const p = await progressOf(out, big.digest);
  expect(p?.bytes).toBe(HALF);
  expect(existsSync(out)).toBe(false);
  return p!;
}

describe('export resumes a cut-off blob from its bundle\'s work file', () => {
  it('continues with a Range request after SIGKILL, fetching only the rest, and the bundle verifies', async () => {
    const out = join(tmp.path, 'resumed.tar');
    await killedExport(out);
    expect(proxy.blobGets(big.digest)).toHaveLength(1);

    const before = proxy.seen.length;
    const r = await ferryOk(['export', ref, '-o', out, '--plain-http', proxy.host, '--json', '--progress', 'json'], { env: env() });
    const second = proxy.seen.slice(before);
    const gets = second.filter((s) => s.method === 'GET' && s.path.endsWith(`/blobs/${big.digest}`));
    expect(gets).toHaveLength(1);
    expect(gets[0]!.range).toBe(`bytes=${HALF}-`);
    expect(gets[0]!.status).toBe(206);
    expect(gets[0]!.bytes).toBe(big.size - HALF);
    // Everything that crossed the wire for blobs in the second run: the rest of the big layer, plus at most the small blobs.
    const blobBytes = second.filter((s) => s.method === 'GET' && s.path.includes('/blobs/')).reduce((n, s) => n + s.bytes, 0);
    expect(blobBytes).toBeLessThan(big.size - HALF + 64 * 1024);
    const result = jsonOf<{ fetchedBytes: number; resumedBytes: number; blobs: number }>(r);
    expect(result.fetchedBytes).toBeLessThan(big.size - HALF + 64 * 1024);
    expect(result.fetchedBytes).toBeGreaterThanOrEqual(big.size - HALF);
    // What the work file gave is named, not dropped: the progress counted it as moved, the summary says where it came from.
    expect(result.resumedBytes).toBe(HALF);
    const events = r.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { type: string; command: string; bytes: { done: number } });
    const moved = events.filter((e) => e.type === 'progress' && e.command === 'export').at(-1)!.bytes.done;
    expect(moved).toBe(result.fetchedBytes + result.resumedBytes);

    // The work file became the bundle; nothing is left beside it, and no cache was written.
    expect(await workFileOf(out)).toBeUndefined();
    expect((await readdir(tmp.path)).filter((n) => n.includes('.journal') || n.startsWith('.ferry-tmp-'))).toEqual([]);
    expect(existsSync(join(tmp.path, 'xdg-cache', 'ferry'))).toBe(false);
    const v = jsonOf<{ blobs: number; bytes: number }>(await ferryOk(['verify', out, '--json']));
    expect(v.bytes).toBeGreaterThanOrEqual(big.size);
  }, 120_000);

  it('says in its text summary what it fetched and what it resumed from the work file', async () => {
    const out = join(tmp.path, 'resumed-text.tar');
    await killedExport(out);
    const r = await ferryOk(['export', ref, '-o', out, '--plain-http', proxy.host], { env: env() });
    expect(r.stdout).toMatch(/ referenced, [\d.]+ (B|KiB|MiB) fetched, 5\.00 MiB resumed from the work file\) in /);
    await ferryOk(['verify', out, '-q']);
  }, 120_000);

  it('starts over when the registry ignores Range (200), and the bundle still verifies', async () => {
    const out = join(tmp.path, 'restarted.tar');
    await killedExport(out);
    proxy.ignoreRange = true;
    try {
      const before = proxy.seen.length;
      const r = await ferryOk(['export', ref, '-o', out, '--plain-http', proxy.host, '--json', '-q'], { env: env() });
      // The prefix was not used: all of the layer was fetched, nothing is said to be resumed.
      const result = jsonOf<{ fetchedBytes: number; resumedBytes: number }>(r);
      expect(result.resumedBytes).toBe(0);
      expect(result.fetchedBytes).toBeGreaterThanOrEqual(big.size);
      const gets = proxy.seen.slice(before).filter((s) => s.method === 'GET' && s.path.endsWith(`/blobs/${big.digest}`));
      expect(gets).toHaveLength(1);
      expect(gets[0]!.range).toBe(`bytes=${HALF}-`);
      expect(gets[0]!.status).toBe(200);
      expect(gets[0]!.bytes).toBe(big.size);
    } finally {
      proxy.ignoreRange = false;
    }
    await ferryOk(['verify', out, '-q']);
    expect(await workFileOf(out)).toBeUndefined();
  }, 120_000);

  it('drops a prefix whose bytes are wrong and fetches the blob whole', async () => {
    const out = join(tmp.path, 'repaired.tar');
    const p = await killedExport(out);
    // The bytes the journal vouches for are altered on disk (a damaged disk, another program).
    const fh = await open((await workFileOf(out))!, 'r+');
    await fh.write(Buffer.alloc(1000, 0x41), 0, 1000, p.offset);
    await fh.close();
    const before = proxy.seen.length;
    const r = await ferryOk(['export', ref, '-o', out, '--plain-http', proxy.host, '--json', '-q'], { env: env() });
    const gets = proxy.seen.slice(before).filter((s) => s.method === 'GET' && s.path.endsWith(`/blobs/${big.digest}`));
    // First the resume (verification fails: the prefix is garbage), then the engine's retry from byte 0.
    expect(gets.map((g) => g.range)).toEqual([`bytes=${HALF}-`, undefined]);
    expect(gets[1]!.bytes).toBe(big.size);
    // The discarded prefix is not said to be resumed: the layer in the bundle came whole from the registry.
    const result = jsonOf<{ fetchedBytes: number; resumedBytes: number }>(r);
    expect(result.resumedBytes).toBe(0);
    expect(result.fetchedBytes).toBeGreaterThanOrEqual(big.size);
    await ferryOk(['verify', out, '-q']);
    expect(await workFileOf(out)).toBeUndefined();
  }, 120_000);
});
