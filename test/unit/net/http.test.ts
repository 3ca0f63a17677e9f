import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { HttpClient, readCapped } from '../../../src/net/http.js';
import { parseRegistryErrors } from '../../../src/net/registry-error.js';
import { parseMinRate } from '../../../src/net/throughput.js';
import { makeTempDir } from '../../support/tmp.js';
import { rejection } from '../../support/rejection.js';

const servers: Array<{ close(): void }> = [];
afterAll(() => servers.forEach((s) => s.close()));

async function listen<T extends Server | ReturnType<typeof createTcpServer>>(server: T): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

describe('HttpClient timeouts', () => {
  it('fails a request to a server that accepts and never answers', async () => {
    const held: Socket[] = [];
    const port = await listen(createTcpServer((s) => held.push(s)));
    const client = new HttpClient({ idleTimeoutMs: 300 });
    const started = Date.now();
    const err = await rejection(client.request({ method: 'GET', url: new URL(`http://127.0.0.1:${port}/v2/`) }));
    client.close();
    held.forEach((s) => s.destroy());
    expect(err.code).toBe('E_NETWORK');
    expect(err.message).toContain(`127.0.0.1:${port}`);
    expect(Date.now() - started).toBeLessThan(5000);
  });

  it('fails the body stream when a server stalls mid-body', async () => {
    const port = await listen(
      createHttpServer((_req, res) => {
        res.writeHead(200, { 'content-length': '1000' });
        res.write(Buffer.alloc(10));
      }),
    );
    // The minimum-rate rule off: averaged over the same 300 ms, it raced the idle timeout (under load it won).
    const client = new HttpClient({ idleTimeoutMs: 300, minBytesPerSecond: 0 });
    const res = await client.request({ method: 'GET', url: new URL(`http://127.0.0.1:${port}/`) });
    const err = await rejection(readCapped(res.body, 10_000));
    client.close();
    expect(err.code).toBe('E_NETWORK');
    expect(err.message).toMatch(/no data/);
  });
});

describe('HttpClient minimum throughput (--min-rate)', () => {
  /** A server that sends `size` bytes, one every `everyMs`, after the headers. */
  const trickler = (size: number, everyMs: number) => createHttpServer((_req, res) => {
    res.writeHead(200, { 'content-length': String(size) });
    let sent = 0;
    const t = setInterval(() => {
      if (sent >= size) { clearInterval(t); res.end(); return; }
      res.write(Buffer.from([sent++ & 0xff]));
    }, everyMs);
    res.on('close', () => clearInterval(t));
  });

  it('fails a body that trickles (never silent for the idle timeout) with E_NETWORK ETIMEDOUT, within about one window', async () => {
    const port = await listen(trickler(10_000, 20));
    const client = new HttpClient({ idleTimeoutMs: 5_000, minBytesPerSecond: 4096, minRateWindowMs: 600 });
    const started = Date.now();
    const res = await client.request({ method: 'GET', url: new URL(`http://127.0.0.1:${port}/`) });
    const err = await rejection(readCapped(res.body, 100_000));
    client.close();
    expect(err.code).toBe('E_NETWORK');
    expect(err.details.errno).toBe('ETIMEDOUT');
    expect(err.message).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}: less than 4(\\.0+)? KiB/s over 0.6 s`));
    // The whole trickle would take 200 s: failing within a bound far below that is the point (the window is 0.6 s).
    expect(Date.now() - started).toBeLessThan(15_000);
  });

  it('0 turns the rule off: the same trickle, short, arrives whole', async () => {
    const port = await listen(trickler(40, 20));
    const client = new HttpClient({ idleTimeoutMs: 5_000, minBytesPerSecond: 0, minRateWindowMs: 300 });
    const res = await client.request({ method: 'GET', url: new URL(`http://127.0.0.1:${port}/`) });
    expect((await readCapped(res.body, 1000))?.length).toBe(40);
    client.close();
  });

  it('does not blame the server while ferry\'s own side holds the stream back (a slow destination)', async () => {
    const size = 4 * 1024 * 1024;
    const port = await listen(createHttpServer((_req, res) => {
      res.writeHead(200, { 'content-length': String(size) });
      res.end(Buffer.alloc(size, 7));
    }));
    // The rule asks 400 KiB per 400 ms of waiting; the reader takes a chunk, then sits for 1.5 s (when at most the
    // socket and stream buffers, well under 400 KiB, can arrive), several times.
    const client = new HttpClient({ idleTimeoutMs: 10_000, minBytesPerSecond: 1024 * 1024, minRateWindowMs: 400 });
    const res = await client.request({ method: 'GET', url: new URL(`http://127.0.0.1:${port}/`) });
    let got = 0;
    let pauses = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      got += chunk.length;
      if (pauses < 3 && got > (pauses + 1) * 64 * 1024) {
        pauses++;
        await new Promise((r) => setTimeout(r, 1_500));
      }
    }
    client.close();
    expect(pauses).toBe(3);
    expect(got).toBe(size);
  });

  it('reads rates as sizes a second, with the units every size has (MB decimal, M and MiB binary); refuses anything else', () => {
    expect(parseMinRate('0')).toBe(0);
    expect(parseMinRate('512')).toBe(512);
    expect(parseMinRate('1K')).toBe(1024);
    expect(parseMinRate('8KiB')).toBe(8192);
    expect(parseMinRate('1.5m')).toBe(1.5 * 1024 * 1024);
    expect(parseMinRate('2MB/s')).toBe(2_000_000);
    expect(parseMinRate('2MiB/s')).toBe(2 * 1024 * 1024);
    for (const bad of ['', 'fast', '-1K', '1 parsec', 'K']) {
      let code = 'accepted';
      try { parseMinRate(bad); } catch (e) { code = (e as { code: string }).code; }
      expect(code, bad).toBe('E_USAGE');
    }
  });
});

describe('HttpClient connection factory', () => {
  const dir = makeTempDir('ferry-http-');
  afterAll(() => dir.cleanup());

  it('opens every connection through the injected factory, with TLS layered on top for https', async () => {
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir.path, 'k.pem'), '-out', join(dir.path, 'c.pem'), '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:registry.tunnel.test'], { stdio: 'ignore' });
    const tlsPort = await listen(createHttpsServer({ key: readFileSync(join(dir.path, 'k.pem')), cert: readFileSync(join(dir.path, 'c.pem')) }, (_q, r) => r.end('over tls')));
    const plainPort = await listen(createHttpServer((_q, r) => r.end('plain')));
    const dialed: string[] = [];
    // The "tunnel": whatever name is asked for, connect to the loopback server of that scheme.
    const factory = ({ host, port }: { host: string; port: number }): Promise<Duplex> => {
      dialed.push(`${host}:${port}`);
      return new Promise((resolve, reject) => {
        const s = connect(port === 443 ? tlsPort : plainPort, '127.0.0.1', () => resolve(s));
        s.once('error', reject);
      });
    };
    const client = new HttpClient({ connect: factory, caFile: join(dir.path, 'c.pem') });
    const tls = await client.request({ method: 'GET', url: new URL('https://registry.tunnel.test/v2/') });
    expect((await readCapped(tls.body, 100))?.toString()).toBe('over tls');
    const plain = await client.request({ method: 'GET', url: new URL('http://registry.tunnel.test/v2/') });
    expect((await readCapped(plain.body, 100))?.toString()).toBe('plain');
    client.close();
    expect(dialed).toEqual(['registry.tunnel.test:443', 'registry.tunnel.test:80']);
  });
});

describe('parseRegistryErrors', () => {
  it('reads distribution error bodies and ignores anything else', () => {
    const body = Buffer.from(JSON.stringify({ errors: [{ code: 'MANIFEST_UNKNOWN', message: 'manifest unknown', detail: { Tag: 'x' } }, { code: 'DENIED' }] }));
    expect(parseRegistryErrors(body)).toEqual([
      { code: 'MANIFEST_UNKNOWN', message: 'manifest unknown' },
      { code: 'DENIED', message: '' },
    ]);
    expect(parseRegistryErrors(Buffer.from('<html>502 Bad Gateway</html>'))).toEqual([]);
    expect(parseRegistryErrors(Buffer.from('{"errors":"nope"}'))).toEqual([]);
    expect(parseRegistryErrors(undefined)).toEqual([]);
  });
});
