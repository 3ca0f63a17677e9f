// A registry that died behind a proxy or load balancer: every connection is accepted,
// then dropped. Each request spends its retries; once GIVE_UP_AFTER of them in a row
// have, with no answer in between, the client sends nothing more and says why
// (an export through such a proxy went on retrying for over 14 minutes).
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FerryError } from '../../../src/errors.js';
import { GIVE_UP_AFTER, RegistryClient } from '../../../src/transports/registry/client.js';

let server: Server;
let dropping = true;
let dropped = 0;

beforeAll(async () => {
  server = createServer((req, res) => {
    if (req.url === '/v2/' || !dropping) {
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      return;
    }
    dropped++;
    req.socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
});
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())));

const get = (c: RegistryClient, n: number) => c.send({ method: 'GET', url: `/v2/a/manifests/${n}`, scopes: [] });
const failure = (p: Promise<unknown>) => p.then(() => { throw new Error('answered'); }, (e: unknown) => e as FerryError);

describe('a registry that stops answering', () => {
  it(`after ${GIVE_UP_AFTER} requests in a row fail after their retries, the next fails at once, naming the registry and the last failure`, async () => {
    const registry = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new RegistryClient({ registry, plainHttp: true });
    // Side by side, as the engine sends them: each spends its retries (5 attempts).
    const first = await Promise.all(Array.from({ length: GIVE_UP_AFTER }, (_, i) => failure(get(client, i))));
    for (const e of first) expect(e.code).toBe('E_NETWORK');
    const spent = dropped;
    expect(spent).toBe(GIVE_UP_AFTER * 5);

    const next = await failure(get(client, 99));
    expect(next.code).toBe('E_NETWORK');
    expect(next.message).toContain(`registry ${registry} stopped answering: ${GIVE_UP_AFTER} requests in a row failed`);
    expect(next.message).toContain(first[0]!.message.slice(0, 20));
    expect(next.hint).toMatch(/run the same command again/);
    expect(dropped, 'nothing more was sent').toBe(spent);
  });

  it('an answer in between starts the count again', async () => {
    const registry = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const client = new RegistryClient({ registry, plainHttp: true });
    await Promise.all(Array.from({ length: GIVE_UP_AFTER - 1 }, (_, i) => failure(get(client, i))));
    dropping = false;
    expect((await get(client, 50)).status).toBe(200);
    dropping = true;
    const before = dropped;
    await Promise.all(Array.from({ length: GIVE_UP_AFTER - 1 }, (_, i) => failure(get(client, i))));
    expect(dropped - before, 'every request was still sent with its retries').toBe((GIVE_UP_AFTER - 1) * 5);
  });
});
