// Hostile or broken registries: a fault proxy in front of the real registry, ferry export
// through it. Every case ends in a retry that succeeds or a clear error, and never in a
// bundle with wrong content: whenever a bundle exists it is `ferry verify`-ed and its
// blobs compared with the source's. Ferry runs in this process (exit status and error
// document are main()'s, what bin/ferry exits with), except where memory is the claim:
// the oversized manifest runs as a child under /usr/bin/time for its peak RSS.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { targetOf } from '../support/http.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { readBundleTar } from './cli-fixture.js';
import { type FaultHandler, RSS_CEILING_KIB, runInProcess, runTimed, startFaultProxy, type TimedResult } from './hostile-fixture.js';

let reg: RegistryHandle;
let tmp: TempDir;
let image: Image;
let n = 0;
const REPO = 'hostile/app';
/** Short idle timeout (FERRY_IDLE_TIMEOUT, seconds) so that a stalled body fails in seconds, not minutes. */
const ENV = { FERRY_IDLE_TIMEOUT: '2' };

beforeAll(async () => {
  tmp = makeTempDir('ferry-hostile-reg-');
  reg = await startRegistry({ auth: 'htpasswd' });
  const rng = new Rng(0xfa17);
  image = makeImage({ layers: [await makeLayer(rng, { size: 300_000, compressible: false }), await makeLayer(rng, { size: 120_000 })], mediaTypes: 'oci' });
  await pushArtifact(targetOf(reg), REPO, image, ['1']);
});
afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

const layerPath = (i: number) => `/v2/${REPO}/blobs/${image.blobs.filter((b) => b.mediaType.includes('layer'))[i]!.digest}`;
const isGet = (req: IncomingMessage, path: string) => req.method === 'GET' && (req.url ?? '').split('?')[0] === path;

/** Exports the image through a proxy with `handler` (`peakRss`: as a child under /usr/bin/time); returns the run and the bundle path. */
async function exportThrough(handler: FaultHandler, opts: { ref?: string; timeoutMs?: number; args?: string[]; env?: Record<string, string>; peakRss?: boolean } = {}): Promise<{ r: TimedResult; out: string; proxyLog: Array<{ method: string; path: string; headers: IncomingMessage['headers'] }> }> {
  const proxy = await startFaultProxy(reg.url, handler);
  try {
    const out = join(tmp.path, `b-${++n}.tar`);
    const ref = `${proxy.host}/${REPO}${opts.ref ?? ':1'}`;
    const r = await (opts.peakRss ? runTimed : runInProcess)(['export', ref, '-o', out, '--compression', 'none', '--cache', join(tmp.path, `cache-${n}`), '--plain-http', proxy.host,
      '--username', 'ferry', '--password-stdin', '--no-referrers', '--json', ...(opts.args ?? [])], { input: `${reg.users['ferry']}\n`, env: opts.env ?? ENV, timeoutMs: opts.timeoutMs ?? 90_000 });
    return { r, out, proxyLog: proxy.log };
  } finally {
    await proxy.stop();
  }
}

/** A bundle that exists must verify and hold exactly the source's blobs and manifest. */
async function expectFaithful(out: string): Promise<void> {
  const v = await runInProcess(['verify', out, '--json']);
  expect(v.code, v.stderr + v.stdout).toBe(0);
  const blobs = (await readBundleTar(out)).filter((e) => e.name.startsWith('blobs/sha256/') && e.type === 'file');
  const want = new Map([...image.blobs.map((b) => [b.digest, b.size] as const), [image.digest, image.size] as const]);
  expect(new Map(blobs.map((b) => [`sha256:${b.name.slice(13)}`, b.size]))).toEqual(want);
  for (const b of blobs) expect(b.digest, b.name).toBe(`sha256:${b.name.slice(13)}`);
}

function expectFailed(r: TimedResult, out: string, codes: string[]): void {
  expect(r.error, `exit ${r.code}\n${r.stderr}\n${r.stdout}`).toBeDefined();
  expect(codes, `${r.error!.code}: ${r.error!.message}`).toContain(r.error!.code);
  expect(r.code).toBe(EXIT_STATUS[r.error!.code as keyof typeof EXIT_STATUS]);
  expect(r.error!.message).toMatch(new RegExp(`${REPO}|sha256:`));
  expect(r.error!.hint).toBeTruthy();
  // Export writes a bundle only when every image made it.
  expect(existsSync(out), 'a bundle was written although the export failed').toBe(false);
}

/** Sends `body` with a Content-Length of `declared` and then either ends or resets the connection. */
function sendRaw(res: ServerResponse, headers: IncomingMessage['headers'], body: Buffer, opts: { declared?: number; reset?: boolean; stall?: boolean } = {}): void {
  const h = { ...headers, 'content-length': String(opts.declared ?? body.length) };
  res.writeHead(200, h);
  res.write(body);
  if (opts.reset) setTimeout(() => res.socket?.destroy(), 20);
  else if (!opts.stall) res.end();
}

describe('a hostile or broken registry: a retry that succeeds or a clear error, never a wrong bundle', () => {
  it('through the untouched proxy the export works (the baseline)', async () => {
    const { r, out } = await exportThrough(() => false);
    expect(r.code, r.stderr).toBe(0);
    await expectFaithful(out);
  });

  it('manifest bytes that do not match the digest asked for (and Docker-Content-Digest): E_DIGEST_MISMATCH, no bundle', async () => {
    const handler: FaultHandler = async (req, res, { fetch }) => {
      if (req.method !== 'GET' || !(req.url ?? '').includes('/manifests/')) return false;
      const up = await fetch();
      const altered = Buffer.from(up.body.toString('utf8').replace('"schemaVersion": 2', '"schemaVersion":2'));
      res.writeHead(up.status, { ...up.headers, 'content-length': String(altered.length) });
      res.end(altered);
      return true;
    };
    for (const ref of [`@${image.digest}`, ':1']) {
      const { r, out } = await exportThrough(handler, { ref });
      expectFailed(r, out, ['E_DIGEST_MISMATCH']);
      expect(r.error!.message).toContain(image.digest);
    }
  });

  it('a blob longer or shorter than declared, once: retried, the bundle is faithful; always: E_SIZE_MISMATCH/E_NETWORK, no bundle', async () => {
    for (const mode of ['longer', 'shorter'] as const) {
      for (const times of [1, 99]) {
        const { r, out } = await exportThrough(async (req, res, { n: k, fetch }) => {
          if (!isGet(req, layerPath(0)) || k > times) return false;
          const up = await fetch();
          const body = mode === 'longer' ? Buffer.concat([up.body, Buffer.alloc(4096, 1)]) : up.body.subarray(0, up.body.length - 1000);
          sendRaw(res, up.headers, body);
          return true;
        });
        if (times === 1) {
          expect(r.code, `${mode} once: ${r.stderr}`).toBe(0);
          await expectFaithful(out);
        } else expectFailed(r, out, ['E_SIZE_MISMATCH', 'E_DIGEST_MISMATCH', 'E_NETWORK']);
      }
    }
  }, 120_000);

  it('a blob body whose Content-Length lies (says more than it sends, then the socket closes): retried', async () => {
    const { r, out } = await exportThrough(async (req, res, { n: k, fetch }) => {
      if (!isGet(req, layerPath(0)) || k > 1) return false;
      const up = await fetch();
      sendRaw(res, up.headers, up.body.subarray(0, 50_000), { declared: up.body.length, reset: true });
      return true;
    });
    expect(r.code, r.stderr).toBe(0);
    await expectFaithful(out);
  });

  it('slow-loris: a body that stalls mid-blob times out (FERRY_IDLE_TIMEOUT) and is retried; stalling every time is E_NETWORK in bounded time', async () => {
    const stall = (times: number): FaultHandler => async (req, res, { n: k, fetch }) => {
      if (!isGet(req, layerPath(0)) || k > times) return false;
      const up = await fetch();
      // The whole length declared, a part sent: the connection stays open, waiting for the rest.
      sendRaw(res, up.headers, up.body.subarray(0, 100_000), { stall: true, declared: up.body.length });
      return true;
    };
    // The flag, not the variable: with the default 120 s this run would outlast the test.
    const t1 = Date.now();
    const once = await exportThrough(stall(1), { args: ['--idle-timeout', '2'], env: {} });
    expect(Date.now() - t1, '--idle-timeout 2 was honoured').toBeLessThan(30_000);
    expect(once.r.code, once.r.stderr).toBe(0);
    await expectFaithful(once.out);
    const t0 = Date.now();
    const always = await exportThrough(stall(99), { timeoutMs: 80_000 });
    // A hang would end at the run's timeout, in another error than E_NETWORK.
    // Every attempt, resumed ones included, ends in "no data for 2 s": bounded, clear, no bundle.
    expectFailed(always.r, always.out, ['E_NETWORK']);
    expect(always.r.error!.message).toMatch(/no data for 2 s/);
    expect(Date.now() - t0).toBeLessThan(60_000);
  }, 120_000);

  it('a trickle (a byte every 100 ms, never silent long enough for the idle timeout): --min-rate fails the attempt with E_NETWORK naming blob and registry; once → retried, faithful; always → bounded', async () => {
    const timers = new Set<NodeJS.Timeout>();
    const trickle = (times: number): FaultHandler => async (req, res, { n: k, fetch }) => {
      if (!isGet(req, layerPath(0)) || k > times) return false;
      const up = await fetch();
      res.writeHead(200, { ...up.headers, 'content-length': String(up.body.length) });
      let sent = 0;
      const t = setInterval(() => {
        if (res.destroyed || sent >= up.body.length) { clearInterval(t); timers.delete(t); return; }
        res.write(up.body.subarray(sent, ++sent));
      }, 100);
      timers.add(t);
      res.on('close', () => { clearInterval(t); timers.delete(t); });
      return true;
    };
    try {
      // Averaged over the idle timeout (3 s): 8 KiB/s means 24 KiB per window; the trickle brings 30 bytes.
      const flags = ['--idle-timeout', '3', '--min-rate', '8K'];
      const once = await exportThrough(trickle(1), { args: flags, env: {} });
      expect(once.r.code, once.r.stderr).toBe(0);
      await expectFaithful(once.out);
      const t0 = Date.now();
      // The variable works as the flag does.
      const always = await exportThrough(trickle(99), { args: ['--idle-timeout', '3'], env: { FERRY_MIN_RATE: '8KiB' }, timeoutMs: 80_000 });
      // A hang would end at the run's timeout, in another error than E_NETWORK.
      expectFailed(always.r, always.out, ['E_NETWORK']);
      expect(always.r.error!.message).toMatch(/less than 8(\.0+)? KiB\/s/);
      expect(always.r.error!.message).toContain(layerPath(0).split('/').pop()!);
      expect(always.r.error!.message).toContain('127.0.0.1:');
      expect(always.r.error!.hint).toMatch(/--min-rate/);
      expect(Date.now() - t0).toBeLessThan(45_000);
      // Several attempts were made (the engine retries E_NETWORK, resuming where it was).
      expect(always.proxyLog.filter((l) => l.path.startsWith(layerPath(0))).length).toBeGreaterThan(1);
    } finally {
      for (const t of timers) clearInterval(t);
    }
  }, 120_000);

  it('--min-rate is checked before anything runs: a bad value is E_USAGE, nothing is fetched', async () => {
    for (const [args, env] of [[['--min-rate', 'fast'], {}], [['--min-rate=-1K'], {}], [['--min-rate', '5 KB per second'], {}], [[], { FERRY_MIN_RATE: '12 parsecs' }]] as const) {
      const { r, proxyLog } = await exportThrough(() => false, { args: [...args], env: { ...env } });
      expect(['E_USAGE', 'E_CONFIG'], `${JSON.stringify(args)} ${JSON.stringify(env)}: exit ${r.code}\n${r.stderr}${r.stdout}`).toContain(r.error?.code);
      expect(r.code).toBe(2);
      expect(r.error!.message).toMatch(/min-rate|MIN_RATE/);
      expect(proxyLog).toEqual([]);
    }
  });

  it('429 with Retry-After and a burst of 5xx: retried, the bundle is faithful', async () => {
    const t0 = Date.now();
    const { r, out, proxyLog } = await exportThrough(async (req, res, { n: k }) => {
      if (isGet(req, layerPath(0)) && k <= 2) {
        res.writeHead(429, { 'retry-after': '1', 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"TOOMANYREQUESTS","message":"slow down"}]}');
        return true;
      }
      if (isGet(req, layerPath(1)) && k <= 3) {
        res.writeHead([500, 502, 503][k - 1]!, { 'content-type': 'text/plain' });
        res.end('upstream hiccup');
        return true;
      }
      return false;
    });
    expect(r.code, r.stderr).toBe(0);
    await expectFaithful(out);
    expect(proxyLog.filter((l) => l.path.startsWith(layerPath(0))).length).toBeGreaterThanOrEqual(3);
    expect(Date.now() - t0, 'Retry-After: 1 was honoured twice').toBeGreaterThanOrEqual(2000);
  });

  it('5xx on every attempt: E_REGISTRY after a bounded number of tries, no bundle', async () => {
    const { r, out, proxyLog } = await exportThrough((req, res) => {
      if (!isGet(req, layerPath(1))) return false;
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"UNAVAILABLE","message":"maintenance window"}]}');
      return true;
    });
    expectFailed(r, out, ['E_REGISTRY']);
    const tries = proxyLog.filter((l) => l.path.startsWith(layerPath(1))).length;
    expect(tries).toBeGreaterThan(1);
    expect(tries).toBeLessThanOrEqual(20);
  }, 120_000);

  it('a blob redirected to another host: the bytes come from there, the credentials do not follow', async () => {
    const seenThere: IncomingMessage['headers'][] = [];
    const upstreamBlobs = new Map<string, Buffer>();
    const storage: Server = createServer((req, res) => {
      seenThere.push(req.headers);
      const b = upstreamBlobs.get(req.url ?? '');
      if (!b) { res.writeHead(404); res.end(); return; }
      res.writeHead(200, { 'content-length': String(b.length), 'content-type': 'application/octet-stream' });
      res.end(b);
    });
    await new Promise<void>((r) => storage.listen(0, '127.0.0.1', r));
    // Another origin (name and port) than the registry's.
    const other = `http://localhost:${(storage.address() as AddressInfo).port}`;
    try {
      const { r, out, proxyLog } = await exportThrough(async (req, res, { fetch }) => {
        if (!isGet(req, layerPath(0))) return false;
        const up = await fetch();
        if (up.status !== 200) { res.writeHead(up.status, up.headers); res.end(up.body); return true; }
        const key = `/bucket/${Math.random().toString(36).slice(2)}?X-Amz-Signature=abc`;
        upstreamBlobs.set(key, up.body);
        res.writeHead(307, { location: `${other}${key}` });
        res.end();
        return true;
      });
      expect(r.code, r.stderr).toBe(0);
      await expectFaithful(out);
      expect(seenThere.length).toBeGreaterThan(0);
      for (const h of seenThere) {
        expect(h.authorization, 'Authorization sent to the redirect target').toBeUndefined();
        expect(JSON.stringify(h)).not.toContain(reg.users['ferry']!);
      }
      expect(proxyLog.some((l) => l.headers.authorization !== undefined), 'the registry itself did get credentials').toBe(true);
    } finally {
      await new Promise<void>((r) => storage.close(() => r()));
    }
  });

  it('a manifest over 4 MiB: E_MANIFEST_INVALID without reading it all, memory bounded', async () => {
    const { r, out } = await exportThrough((req, res) => {
      if (req.method !== 'GET' || !(req.url ?? '').includes('/manifests/')) return false;
      const size = 64 * 1024 * 1024;
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.manifest.v1+json', 'content-length': String(size), 'docker-content-digest': image.digest });
      const chunk = Buffer.alloc(1 << 20, 0x20);
      let sent = 0;
      const pump = (): void => {
        while (sent < size) {
          sent += chunk.length;
          if (!res.write(chunk)) { res.once('drain', pump); return; }
        }
        res.end();
      };
      res.on('error', () => undefined);
      pump();
      return true;
    }, { peakRss: true });
    expectFailed(r, out, ['E_MANIFEST_INVALID', 'E_REGISTRY']);
    expect(r.peakKiB).toBeLessThan(RSS_CEILING_KIB);
    expect(r.error!.message).toMatch(/4 ?MiB|4194304|too (big|large)|more than/);
  });

  it('a redirect to ftp:, file:, data: or an unparsable Location: E_REGISTRY naming the registry and the scheme, never E_INTERNAL', async () => {
    const cases: Array<[what: string, match: (req: IncomingMessage) => boolean, location: string, scheme: RegExp]> = [
      ['blob → ftp:', (req) => isGet(req, layerPath(0)), 'ftp://files.example/layer?token=abc', /ftp:/],
      ['blob → file:', (req) => isGet(req, layerPath(1)), 'file:///etc/passwd', /file:/],
      ['manifest → data:', (req) => req.method === 'GET' && (req.url ?? '').includes('/manifests/'), 'data:application/json;base64,e30=', /data:/],
      ['blob → unparsable', (req) => isGet(req, layerPath(0)), 'http://[::1', /Location|invalid/i],
    ];
    for (const [what, match, location, scheme] of cases) {
      const { r, out } = await exportThrough((req, res) => {
        if (!match(req)) return false;
        res.writeHead(302, { location });
        res.end();
        return true;
      });
      expect(r.error?.code, `${what}: exit ${r.code}\n${r.stderr}${r.stdout}`).toBe('E_REGISTRY');
      expectFailed(r, out, ['E_REGISTRY']);
      expect(r.error!.message, what).toMatch(scheme);
      expect(r.error!.message, what).toContain('127.0.0.1:');
      expect(r.error!.message, `${what}: the query (where tokens live) is not quoted`).not.toContain('token=abc');
    }
  }, 120_000);

  it('more than 5 redirects (a loop): E_REGISTRY saying so', async () => {
    const { r, out } = await exportThrough((req, res) => {
      if (!isGet(req, layerPath(0))) return false;
      res.writeHead(307, { location: layerPath(0) });
      res.end();
      return true;
    });
    expectFailed(r, out, ['E_REGISTRY']);
    expect(r.error!.message).toMatch(/redirect/);
  });

  it('a token realm with a non-http(s) scheme: E_AUTH naming the registry and the scheme, never E_INTERNAL', async () => {
    for (const realm of ['ftp://auth.example/token', 'file:///etc/passwd', 'data:,{"token":"x"}', 'gopher://x', 'not a url']) {
      const { r, out } = await exportThrough(async (req, res, { fetch }) => {
        const up = await fetch();
        const challenge = up.headers['www-authenticate'];
        // The htpasswd registry asks for Basic; a Bearer challenge with the hostile realm replaces it.
        const headers = { ...up.headers, ...(challenge ? { 'www-authenticate': `Bearer realm="${realm}",service="x"` } : {}) };
        res.writeHead(up.status, headers);
        res.end(req.method === 'HEAD' ? undefined : up.body);
        return true;
      });
      // The realm belongs to the registry, not to an image: the message names the registry (checked below).
      expect(r.error?.code, `${realm}: exit ${r.code}\n${r.stderr}${r.stdout}`).toBe('E_AUTH');
      expect(r.code).toBe(4);
      expect(r.error!.hint).toBeTruthy();
      expect(existsSync(out), 'a bundle was written although the export failed').toBe(false);
      expect(r.error!.message, realm).toContain('127.0.0.1:');
      expect(r.error!.message, realm).toMatch(/realm/);
      if (realm.includes(':/') || realm.startsWith('data:')) expect(r.error!.message, realm).toContain(realm.slice(0, realm.indexOf(':') + 1));
    }
  }, 120_000);
});
