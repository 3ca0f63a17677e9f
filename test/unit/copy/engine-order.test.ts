// The real copy engine, driven through an in-memory source and a recording destination
// that throws on any breach of the destination contract: blobs before the manifests that
// reference them, children before indexes, tags last, once per repository, and a failed
// piece fails exactly the images that need it.
import { Readable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { FerryError, isFerryError } from '../../../src/errors.js';
import type { Digest } from '../../../src/oci/digest.js';
import { VerifyStream } from '../../../src/stream/verify.js';
import { blobsOf, makeImage, makeIndex, makeLayer, Rng, type Image, type Index, type Layer } from '../../support/images.js';
import { copyPlaced, MemorySequentialSource, MemorySource, type Placed, RecordingDestination } from '../../support/memory-transports.js';

let shared: Layer;
let app: Image;
let tool: Image;
let multi: Index;
let placed: Placed[];

beforeAll(async () => {
  const rng = new Rng(0x0de5);
  shared = await makeLayer(rng, { size: 30_000 });
  const own = await makeLayer(rng, { size: 20_000, compressible: false });
  const arm = await makeLayer(rng, { size: 10_000 });
  app = makeImage({ layers: [shared, own], mediaTypes: 'oci', labels: { n: 'app' } });
  tool = makeImage({ layers: [shared], mediaTypes: 'docker', labels: { n: 'tool' } });
  multi = makeIndex([
    makeImage({ layers: [shared, own], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'amd64' }, labels: { n: 'm' } }),
    makeImage({ layers: [arm], mediaTypes: 'oci', platform: { os: 'linux', architecture: 'arm64', variant: 'v8' }, labels: { n: 'm' } }),
  ], 'oci');
  placed = [
    { repository: 'team/app', tag: '1', artifact: app },
    { repository: 'team/tool', tag: '2', artifact: tool },
    { repository: 'team/multi', tag: '3', artifact: multi },
    { repository: 'team/app', tag: 'also', artifact: app },
  ];
});

describe('the copy engine keeps the destination contract', () => {
  it('blobs, then children, then indexes, then tags; each blob once per repository; commit last', async () => {
    const dest = new RecordingDestination();
    const report = await copyPlaced(new MemorySource(placed), dest, placed, { jobs: 3 });
    expect(report.failures).toEqual([]);
    expect(report.images.map((i) => i.status)).toEqual(['done', 'done', 'done', 'done']);
    const calls = dest.calls;
    expect(calls.at(-1)).toEqual({ op: 'commit' });
    const firstTag = calls.findIndex((c) => c.op === 'putImage');
    expect(calls.slice(firstTag, -1).every((c) => c.op === 'putImage'), 'tags come after every blob and manifest').toBe(true);
    const puts = calls.filter((c) => c.op === 'putBlob').map((c) => `${c.repository}@${c.digest}`);
    expect(new Set(puts).size).toBe(puts.length);
    // The shared layer is needed in three repositories: it lands in each (no mounts offered).
    expect(puts.filter((p) => p.endsWith(shared.digest))).toHaveLength(3);
    // Two tags on one manifest: the manifest is written once.
    expect(calls.filter((c) => c.op === 'putManifest' && c.digest === app.digest)).toHaveLength(1);
  });

  it('from a bundle file (a source giving file ranges), the largest blobs go first: no large blob is left to hash alone at the end', async () => {
    class FileLike extends MemorySource {
      blobFile(): undefined {
        return undefined;
      }
    }
    const dest = new RecordingDestination();
    const report = await copyPlaced(new FileLike(placed), dest, placed, { jobs: 1 });
    expect(report.failures).toEqual([]);
    const sizes = new Map<string, number>();
    for (const p of placed) for (const b of blobsOf(p.artifact)) sizes.set(b.digest, b.size);
    const first = [...new Set(dest.calls.filter((c) => c.op === 'putBlob').map((c) => c.digest))].map((d) => sizes.get(d)!);
    expect(first.length).toBeGreaterThan(3);
    expect(first).toEqual([...first].sort((a, b) => b - a));
  });

  it('mounts instead of sending again where the destination can, and sends nothing it already has', async () => {
    const dest = new RecordingDestination({ canMount: true, present: [`team/tool@${shared.digest}`] });
    const source = new MemorySource(placed);
    await copyPlaced(source, dest, placed, { jobs: 1 });
    expect(dest.calls.filter((c) => c.op === 'putBlob' && c.digest === shared.digest)).toEqual([]);
    expect(dest.calls.flatMap((c) => (c.op === 'mountBlob' && c.digest === shared.digest ? [c.repository] : [])).sort()).toEqual(['team/app', 'team/multi']);
    expect(source.fetched.filter((d) => d === shared.digest)).toEqual([]);
  });

  it('a damaged blob fails exactly the images that need it; the others land and are tagged', async () => {
    const armLayer = multi.manifests[1]!.layers[0]!;
    const source = new MemorySource(placed, (d) => (d === armLayer.digest ? Buffer.alloc(armLayer.size, 1) : undefined));
    const dest = new RecordingDestination();
    const report = await copyPlaced(source, dest, placed, { jobs: 2 });
    expect(report.images.filter((i) => i.status === 'failed').map((i) => i.origin)).toEqual(['team/multi:3']);
    expect(report.failures.map((f) => f.error.code)).toEqual(['E_DIGEST_MISMATCH']);
    expect(report.failures[0]!.error.message).toContain(armLayer.digest);
    expect(dest.calls.filter((c) => c.op === 'putImage').map((c) => c.tag).sort()).toEqual(['1', '2', 'also']);
    expect(dest.calls.some((c) => c.op === 'putBlob' && c.digest === armLayer.digest)).toBe(false);
  });

  it('a destination that refuses a blob (disk full) fails the images needing it, and nothing is tagged for them', async () => {
    const own = app.layers[1]!;
    const dest = new RecordingDestination({ failBlobs: [own.digest] });
    const report = await copyPlaced(new MemorySource(placed), dest, placed, { jobs: 2 });
    expect(report.images.filter((i) => i.status === 'failed').map((i) => i.origin).sort()).toEqual(['team/app:1', 'team/app:also', 'team/multi:3']);
    expect(report.images.find((i) => i.origin === 'team/tool:2')!.status).toBe('done');
    expect(dest.calls.filter((c) => c.op === 'putImage').map((c) => c.tag)).toEqual(['2']);
  });

  it('a sequential source: layers read once in stored order, damaged ones fail only their images, omitted ones must be at the destination', async () => {
    const layers = [...new Set(placed.flatMap((p) => blobsOf(p.artifact)).filter((b) => !b.mediaType.includes('config')).map((b) => b.digest))];
    const armLayer = multi.manifests[1]!.layers[0]!.digest;
    // A delta that leaves the shared layer out: the destination holds it already in one repository.
    const source = new MemorySequentialSource(placed, layers.filter((d) => d !== shared.digest).reverse(), [shared.digest], (d) => (d === armLayer ? Buffer.alloc(10, 0) : undefined));
    const dest = new RecordingDestination({ canMount: true, present: [`team/app@${shared.digest}`] });
    const report = await copyPlaced(source, dest, placed, { jobs: 4 });
    expect(report.images.filter((i) => i.status === 'failed').map((i) => i.origin)).toEqual(['team/multi:3']);
    expect(report.blobs['present-in-base']).toBe(1);
    expect(dest.calls.flatMap((c) => (c.op === 'mountBlob' && c.digest === shared.digest ? [c.repository] : [])).sort()).toEqual(['team/multi', 'team/tool']);
  });

  it('an omitted blob the destination lacks fails with E_BASE_MISSING naming the blob and its images', async () => {
    const layers = [...new Set(placed.flatMap((p) => blobsOf(p.artifact)).filter((b) => !b.mediaType.includes('config')).map((b) => b.digest))];
    const source = new MemorySequentialSource(placed, layers.filter((d) => d !== shared.digest), [shared.digest]);
    const report = await copyPlaced(source, new RecordingDestination({ canMount: true }), placed, { jobs: 2 });
    expect(new Set(report.failures.map((f) => f.error.code))).toEqual(new Set(['E_BASE_MISSING']));
    expect(report.failures[0]!.error.message).toContain(shared.digest);
    expect(report.images.every((i) => i.status === 'failed')).toBe(true);
  });

  it('a sequential source into a destination that cannot link a blob into a second repository: that image fails with E_REGISTRY saying why, never E_INTERNAL', async () => {
    const layers = [...new Set(placed.flatMap((p) => blobsOf(p.artifact)).filter((b) => !b.mediaType.includes('config')).map((b) => b.digest))];
    const report = await copyPlaced(new MemorySequentialSource(placed, layers), new RecordingDestination(), placed, { jobs: 2 });
    expect(report.failures.length).toBeGreaterThan(0);
    expect(new Set(report.failures.map((f) => f.error.code))).toEqual(new Set(['E_REGISTRY']));
    expect(report.failures[0]!.error.hint).toContain('as a file');
  });

  it('an abort stops the copy with E_ABORTED, not as a failure of some images', async () => {
    const controller = new AbortController();
    const source = new MemorySource(placed);
    const slow = new RecordingDestination();
    const put = slow.putBlob.bind(slow);
    slow.putBlob = async (r, d, s, o) => {
      controller.abort(new FerryError('E_ABORTED', 'interrupted by SIGINT'));
      return put(r, d, s, o);
    };
    await expect(copyPlaced(source, slow, placed, { jobs: 1, signal: controller.signal })).rejects.toSatisfy((e: unknown) => isFerryError(e, 'E_ABORTED'));
    expect(slow.calls.some((c) => c.op === 'putImage')).toBe(false);
  });
});

describe('the one verifier', () => {
  const body = Buffer.from('0123456789');
  const digest = 'sha256:84d89877f0d4041efb6bf91a16f0248f2fd573e6af05c19f96bedb9f882f7882' as Digest;

  async function run(chunks: Buffer[], size: number): Promise<{ passed: number; error?: FerryError; errors: number }> {
    const verify = new VerifyStream({ digest, size }, 'test');
    let passed = 0;
    let errors = 0;
    verify.on('data', (c: Buffer) => { passed += c.length; });
    const done = new Promise<FerryError | undefined>((resolve) => {
      verify.on('error', (e) => { errors++; resolve(e as FerryError); });
      verify.on('end', () => resolve(undefined));
    });
    Readable.from(chunks).pipe(verify);
    const error = await done;
    await new Promise((r) => setImmediate(r));
    return { passed, errors, ...(error ? { error } : {}) };
  }

  it('passes exact bytes through and ends', async () => {
    expect(await run([body.subarray(0, 4), body.subarray(4)], 10)).toEqual({ passed: 10, errors: 0 });
  });

  it('cuts off at the first chunk that goes over the declared size, with exactly one E_SIZE_MISMATCH', async () => {
    // Declared 9: the second chunk would make 10, so only the first 5 bytes ever pass.
    const r = await run([body.subarray(0, 5), body.subarray(5), Buffer.alloc(1 << 20)], 9);
    expect(r.errors).toBe(1);
    expect(r.error?.code).toBe('E_SIZE_MISMATCH');
    expect(r.passed).toBe(5);
  });

  it('fails instead of ending on a short blob or a wrong digest (one error each, never end)', async () => {
    expect((await run([body.subarray(0, 9)], 10)).error?.code).toBe('E_SIZE_MISMATCH');
    const wrong = await run([Buffer.from('0123456780')], 10);
    expect(wrong.error?.code).toBe('E_DIGEST_MISMATCH');
    expect(wrong.errors).toBe(1);
  });
});
