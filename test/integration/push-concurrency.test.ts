// A bundle file is read at random, so push moves its blobs side by side as
// --jobs says (it used to move one layer at a time, whatever --jobs said: over
// a WAN link, round trips in series). Counted, not timed: a proxy in front of
// the real registry counts blob uploads in flight at once.
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeManyImagesBundle, type WrittenBundle } from '../support/bundles.js';
import { runFerry } from '../support/cli.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

interface UploadCounter {
  host: string;
  /** Most blob uploads (the PUT that completes one) in flight at once since the last reset. */
  maxInFlight(): number;
  reset(): void;
  stop(): Promise<void>;
}

/**
 * Forwards everything; each upload-completing PUT is held 100 ms before it is
 * forwarded, so uploads a client runs side by side are seen side by side (the
 * hold widens the window, it decides nothing: one at a time stays one).
 */
async function startUploadCounter(upstream: string): Promise<UploadCounter> {
  const target = new URL(upstream);
  let inFlight = 0;
  let max = 0;
  const server: Server = createServer((req, res) => {
    const upload = req.method === 'PUT' && /\/blobs\/uploads\//.test(req.url ?? '');
    if (upload) {
      inFlight++;
      max = Math.max(max, inFlight);
      res.once('close', () => inFlight--);
    }
    const forward = (): void => {
      const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      });
      up.on('error', () => res.destroy());
      req.pipe(up);
    };
    if (upload) setTimeout(forward, 100);
    else forward();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    maxInFlight: () => max,
    reset: () => {
      max = inFlight;
    },
    stop: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

describe('push of a bundle file honours --jobs', () => {
  let tmp: TempDir;
  let reg: RegistryHandle;
  let counter: UploadCounter;
  let bundle: WrittenBundle;

  beforeAll(async () => {
    tmp = makeTempDir('ferry-push-jobs-');
    reg = await startRegistry();
    counter = await startUploadCounter(reg.url);
    // 12 images on 3 shared bases, each with a layer of its own: 27 blobs to upload.
    bundle = await writeManyImagesBundle(join(tmp.path, 'b.tar'), join(tmp.path, 'store'), { images: 12, seed: 16, bases: 3, ownLayerBytes: 64 * 1024, repositories: 3 });
  }, 120_000);

  afterAll(async () => {
    await counter?.stop();
    await reg?.stop();
    await tmp?.cleanup();
  });

  for (const [jobs, expectMax] of [[1, (n: number) => expect(n).toBe(1)], [8, (n: number) => { expect(n).toBeGreaterThan(1); expect(n).toBeLessThanOrEqual(8); }]] as const) {
    it(`--jobs ${jobs}: ${jobs === 1 ? 'one upload at a time' : 'several uploads at once, never more than 8'}; every image lands`, async () => {
      counter.reset();
      const r = await runFerry(['push', bundle.path, '--to', `${counter.host}/j${jobs}`, '--plain-http', counter.host, '--jobs', String(jobs), '--json', '--receipt', join(tmp.path, `r${jobs}.json`)]);
      expect(r.code, r.stderr).toBe(0);
      const receipt = JSON.parse(r.stdout) as { images: { status: string }[] };
      expect(receipt.images.filter((i) => i.status === 'done')).toHaveLength(bundle.images);
      expectMax(counter.maxInFlight());
    }, 120_000);
  }
});
