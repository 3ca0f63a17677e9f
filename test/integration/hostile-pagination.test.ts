// A registry whose catalog or tag list pages without end: a next-page link to itself, two
// pages that point at each other, or a link that changes its URL but never its content.
// `ferry inventory --registry` through a fault proxy in front of the real registry must stop
// at once with E_REGISTRY naming the registry, write no inventory, and work once the proxy
// behaves (the rerun). Ferry runs in this process: what is proved is the error, the pages
// read and what was written, not the process (a loop not seen would read past 3 pages).
import { existsSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { targetOf } from '../support/http.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { type FaultHandler, runInProcess, startFaultProxy } from './hostile-fixture.js';

let reg: RegistryHandle;
let tmp: TempDir;
let n = 0;

beforeAll(async () => {
  tmp = makeTempDir('ferry-hostile-pages-');
  reg = await startRegistry();
  const rng = new Rng(0x9a6e);
  for (const repo of ['pages/a', 'pages/b']) {
    const img = makeImage({ layers: [await makeLayer(rng, { size: 2_000 })], mediaTypes: 'oci' });
    await pushArtifact(targetOf(reg), repo, img, ['1', '2']);
  }
});
afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

const pathOf = (req: IncomingMessage) => (req.url ?? '').split('?')[0]!;

/** Answers with the registry's real body and status, and a Link header of our choosing. */
function withLink(res: ServerResponse, up: { status: number; headers: IncomingMessage['headers']; body: Buffer }, link: string): true {
  res.writeHead(up.status, { ...up.headers, link });
  res.end(up.body);
  return true;
}

async function inventoryThrough(handler: FaultHandler) {
  const proxy = await startFaultProxy(reg.url, handler);
  try {
    const out = join(tmp.path, `inv-${++n}.json`);
    const r = await runInProcess(['inventory', '--registry', proxy.host, '--plain-http', proxy.host, '-o', out, '--json'], { timeoutMs: 60_000 });
    return { r, out, log: proxy.log, host: proxy.host };
  } finally {
    await proxy.stop();
  }
}

describe('a registry that paginates without end', () => {
  const loops: Array<[string, FaultHandler, (log: Array<{ path: string }>) => number]> = [
    ['the catalog links to itself', async (req, res, { fetch }) => pathOf(req) === '/v2/_catalog' && withLink(res, await fetch(), `<${req.url}>; rel="next"`),
      (log) => log.filter((l) => l.path.startsWith('/v2/_catalog')).length],
    ['two catalog pages link to each other (query in another order)', async (req, res, { fetch }) => {
      if (pathOf(req) !== '/v2/_catalog') return false;
      return withLink(res, await fetch(), (req.url ?? '').includes('last=') ? '</v2/_catalog?n=1000>; rel="next"' : '</v2/_catalog?n=1000&last=pages%2Fb>; rel="next"');
    }, (log) => log.filter((l) => l.path.startsWith('/v2/_catalog')).length],
    ['the catalog links to a new URL every time, with the same names', async (req, res, { fetch, n: k }) => pathOf(req) === '/v2/_catalog' && withLink(res, await fetch(), `</v2/_catalog?n=1000&page=${k}>; rel="next"`),
      (log) => log.filter((l) => l.path.startsWith('/v2/_catalog')).length],
    ['a tag list links to itself', async (req, res, { fetch }) => pathOf(req) === '/v2/pages/a/tags/list' && withLink(res, await fetch(), `<${req.url}>; rel="next"`),
      (log) => log.filter((l) => l.path.startsWith('/v2/pages/a/tags/list')).length],
  ];

  for (const [what, handler, pagesRead] of loops) {
    it(`${what}: E_REGISTRY at once, naming the registry; no inventory`, async () => {
      const { r, out, log, host } = await inventoryThrough(handler);
      expect(r.error?.code, `exit ${r.code}\n${r.stderr}\n${r.stdout}`).toBe('E_REGISTRY');
      expect(r.code).toBe(3);
      expect(r.error!.message).toContain(host);
      expect(r.error!.message).toMatch(/page|loop/);
      expect(r.error!.hint).toBeTruthy();
      expect(pagesRead(log), 'pages read before the loop was seen').toBeLessThanOrEqual(3);
      expect(existsSync(out)).toBe(false);
    });
  }

  it('a next page on another host or with another scheme: E_REGISTRY, nothing fetched there', async () => {
    for (const link of ['<http://localhost:1/v2/_catalog?last=x>; rel="next"', '<ftp://127.0.0.1/v2/_catalog?last=x>; rel="next"']) {
      const { r } = await inventoryThrough(async (req, res, { fetch }) => pathOf(req) === '/v2/_catalog' && withLink(res, await fetch(), link));
      expect(r.error?.code, `${link}: exit ${r.code}\n${r.stderr}\n${r.stdout}`).toBe('E_REGISTRY');
    }
  });

  it('the rerun through a well-behaved proxy lists every repository and tag', async () => {
    const { r, out } = await inventoryThrough(() => false);
    expect(r.code, r.stderr).toBe(0);
    const inv = JSON.parse(await import('node:fs/promises').then((fs) => fs.readFile(out, 'utf8'))) as { images: Array<{ repository: string; tag: string }> };
    expect(inv.images.map((i) => `${i.repository}:${i.tag}`).sort()).toEqual(['pages/a:1', 'pages/a:2', 'pages/b:1', 'pages/b:2']);
  });

  it('a referrers list that links to itself: export fails with E_REGISTRY instead of carrying a partial set of signatures', async () => {
    const index = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }));
    const proxy = await startFaultProxy(reg.url, (req, res) => {
      if (!pathOf(req).includes('/referrers/')) return false;
      res.writeHead(200, { 'content-type': 'application/vnd.oci.image.index.v1+json', 'content-length': String(index.length), link: `<${req.url}>; rel="next"` });
      res.end(index);
      return true;
    });
    try {
      const out = join(tmp.path, 'referrers.tar');
      const r = await runInProcess(['export', `${proxy.host}/pages/a:1`, '-o', out, '--plain-http', proxy.host, '--cache', join(tmp.path, 'ref-cache'), '--json'], { timeoutMs: 60_000 });
      expect(r.error?.code, `exit ${r.code}\n${r.stderr}\n${r.stdout}`).toBe('E_REGISTRY');
      expect(r.error!.message).toMatch(/referrers/);
      expect(proxy.log.filter((l) => l.path.includes('/referrers/')).length).toBeLessThanOrEqual(2);
      expect(existsSync(out)).toBe(false);
    } finally {
      await proxy.stop();
    }
  });
});
