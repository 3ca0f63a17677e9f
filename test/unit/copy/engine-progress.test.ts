// The engine's byte accounting when a blob stream fails half-way and the
// engine fetches it again: progress must count each byte of the blob once
// (it used to count the retried bytes twice, "343 KiB of 294 KiB"), and the
// error of a stream that dies names the blob and its image.
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { copyImages } from '../../../src/copy/engine.js';
import { planCopy } from '../../../src/copy/plan.js';
import { FerryError } from '../../../src/errors.js';
import type { Digest } from '../../../src/oci/digest.js';
import { type Descriptor, type Manifest, manifestFromBytes } from '../../../src/oci/manifest.js';
import { VerifySink } from '../../../src/transports/sink/verify-sink.js';
import type { ImageSource } from '../../../src/transports/types.js';

const sha = (b: Buffer): Digest => `sha256:${createHash('sha256').update(b).digest('hex')}` as Digest;

/** One image (a config and a 1 MiB layer) whose layer stream dies after `cutAt` bytes the first `failures` times. */
function flakySource(failures: number, cutAt: number): { source: ImageSource; layer: Buffer; config: Buffer; fetches: () => number } {
  const layer = Buffer.alloc(1 << 20);
  for (let i = 0; i < layer.length; i++) layer[i] = (i * 7919) & 0xff;
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
  const manifest = manifestFromBytes(Buffer.from(JSON.stringify({
    schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }],
  })), 'application/vnd.oci.image.manifest.v1+json');
  let layerFetches = 0;
  const source: ImageSource = {
    description: 'flaky test source',
    async getManifest(): Promise<Manifest> { return manifest; },
    async getBlob(_repo: string, desc: Descriptor): Promise<Readable> {
      if (desc.digest === sha(config)) return Readable.from([config]);
      layerFetches++;
      if (layerFetches > failures) return Readable.from([layer.subarray(0, 300_000), layer.subarray(300_000)]);
      // Bytes flow, then the connection dies, as a stalled registry does.
      return new Readable({
        read() {
          this.push(layer.subarray(0, cutAt));
          this.destroy(new FerryError('E_NETWORK', '127.0.0.1:5000: no data for 2 s', { hint: 'try again' }));
        },
      });
    },
    async close() {},
  };
  return { source, layer, config, fetches: () => layerFetches };
}

const request = { sourceRepository: 'team/app', sourceReference: '1.0', targetRepository: 'team/app', targetTag: '1.0', origin: 'example.com/team/app:1.0' };

describe('copy engine: a blob fetched again', () => {
  it('counts each byte once in progress, however many attempts it took', async () => {
    const { source, layer, config, fetches } = flakySource(2, 700_000);
    const plan = await planCopy(source, [request], { jobs: 1 });
    let counted = 0;
    const report = await copyImages(source, new VerifySink(), plan, { jobs: 1, observer: { bytes: (n) => { counted += n; } } });
    expect(report.failures).toEqual([]);
    expect(fetches()).toBe(3);
    expect(counted).toBe(layer.length + config.length);
  });

  it('a stream that keeps dying fails with the network error, naming the blob and the image', async () => {
    const { source, layer } = flakySource(99, 100_000);
    const plan = await planCopy(source, [request], { jobs: 1 });
    const report = await copyImages(source, new VerifySink(), plan, { jobs: 1 });
    expect(report.failures).toHaveLength(1);
    const error = report.failures[0]!.error;
    expect(error.code).toBe('E_NETWORK');
    expect(error.message).toContain(`blob ${sha(layer)}`);
    expect(error.message).toContain('example.com/team/app:1.0');
    expect(error.message).toContain('no data for 2 s');
    expect(error.hint).toBe('try again');
  });
});
