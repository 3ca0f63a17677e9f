// The bundle written once per byte, as export drives it: configs first through the
// real engine, the layout, then every blob written at its offset as the engine hands
// it over. The result must be the same bytes as the spooling writer's (one planner,
// one format), an interrupted run must be continued into the same file fetching only
// what is missing, and the cache must be written only when asked for.
import { readdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchConfigs, layoutRequest } from '../../../src/app/bundle-layout.js';
import { copyImages } from '../../../src/copy/engine.js';
import { type ImageRequest, planCopy } from '../../../src/copy/plan.js';
import { FerryError, isFerryError } from '../../../src/errors.js';
import type { Descriptor } from '../../../src/oci/manifest.js';
import { BundleSource } from '../../../src/transports/bundle/reader.js';
import { BundleDestination, type BundleWriterOptions } from '../../../src/transports/bundle/writer.js';
import { MemorySource } from '../../support/memory-transports.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Corpus, type Entry, originOf, smallCorpus, writeBundle } from './fixture.js';

let tmp: TempDir;
let corpus: Corpus;

beforeAll(async () => {
  tmp = makeTempDir('ferry-single-write-');
  corpus = await smallCorpus(0x51e);
});
afterAll(async () => tmp.cleanup());

let n = 0;
const path = (name: string): string => join(tmp.path, `${++n}-${name}`);

function requestsOf(entries: Entry[]): ImageRequest[] {
  return entries.map((e) => ({
    sourceRepository: e.repository, sourceReference: e.tag ?? e.artifact.digest, targetRepository: e.repository, origin: originOf(e),
    ...(e.tag !== undefined ? { targetTag: e.tag } : {}),
  }));
}

/** A memory source that can be told to stop answering for a blob (the run is then interrupted). */
class StallingSource extends MemorySource {
  stall: string | undefined;
  stalled: (() => void) | undefined;

  override async getBlob(repository: string, desc: Descriptor): Promise<Readable> {
    if (desc.digest === this.stall) {
      this.stalled?.();
      return new Readable({ read() { /* never */ } });
    }
    return super.getBlob(repository, desc);
  }
}

/** What `ferry export` does with a bundle writer, on a memory source. */
async function exportLaidOut(source: MemorySource, opts: Partial<BundleWriterOptions> & { output: string }, signal?: AbortSignal): Promise<BundleDestination> {
  const plan = await planCopy(source, requestsOf(corpus.entries));
  const dest = new BundleDestination({ toolVersion: '0.0.0-test', ...opts });
  try {
    const copyOpts = signal ? { signal } : {};
    await fetchConfigs(source, dest.configSink(), plan, () => false, 'export', copyOpts);
    dest.layOut(layoutRequest(plan));
    await dest.open(copyOpts);
    const report = await copyImages(source, dest, plan, copyOpts);
    if (report.failures.length > 0) throw report.failures[0]!.error;
    await dest.commit(copyOpts);
  } finally {
    await dest.close();
  }
  return dest;
}

const placed = () => corpus.entries.map((e) => ({ repository: e.repository, ...(e.tag !== undefined ? { tag: e.tag } : {}), artifact: e.artifact }));

describe('the bundle written once per byte', () => {
  it('is the spooling writer\'s bundle byte for byte: plain, zstd and split', async () => {
    // Room for the head and 16 KiB of layers: the larger layers are cut over volumes.
    const head = await writeBundle(corpus.entries, { output: path('probe.tar'), storeDir: path('probe'), split: 1 }).then(() => 0, (e: unknown) => (e as { details: { headBytes: number } }).details.headBytes);
    expect(head).toBeGreaterThan(0);
    for (const extra of [{}, { compression: 'zstd' as const }, { split: head + 16 * 1024 }]) {
      const spooled = await writeBundle(corpus.entries, { output: path('spooled.tar'), storeDir: path('spool'), ...extra });
      const laid = await exportLaidOut(new MemorySource(placed()), { output: path('laid.tar'), ...extra });
      expect(laid.metadata!.bundleId).toBe(spooled.metadata!.bundleId);
      const files = (d: BundleDestination, fallback: string): string[] => d.volumes?.map((v) => v.path) ?? [fallback];
      const a = files(spooled, spooled.description.replace(/^bundle /, ''));
      const b = files(laid, laid.description.replace(/^bundle /, ''));
      expect(b.length).toBe(a.length);
      for (const [i, f] of a.entries()) expect((await readFile(b[i]!)).equals(await readFile(f)), `${JSON.stringify(extra)} file ${i}`).toBe(true);
      if (laid.volumes) expect(laid.volumes.length).toBeGreaterThan(1);
    }
  });

  it('an interrupted run is continued into the same file: only what is missing is fetched, configs included', async () => {
    const whole = await exportLaidOut(new MemorySource(placed()), { output: path('reference.tar') });
    const layers = whole.metadata!.blobs.filter((b) => b.kind === 'layer');
    const out = path('resumed.tar');
    const first = new StallingSource(placed());
    first.stall = layers.find((l) => l.size > 40_000)!.digest;
    const abort = new AbortController();
    // The other blobs land while this one hangs; then the run is interrupted.
    first.stalled = () => setTimeout(() => abort.abort(new FerryError('E_ABORTED', 'interrupted')), 300);
    const err = await exportLaidOut(first, { output: out }, abort.signal).then(() => undefined, (e: unknown) => e);
    expect(isFerryError(err, 'E_ABORTED'), String(err)).toBe(true);
    const left = (await readdir(tmp.path)).filter((f) => f.startsWith(`.ferry-resume-${n}-resumed.tar.`));
    expect(left.some((f) => f.endsWith('.journal'))).toBe(true);
    // Nothing at the final name, and no temp files (the config spool is gone).
    await expect(stat(out)).rejects.toThrow();
    expect((await readdir(tmp.path)).filter((f) => f.startsWith('.ferry-tmp-'))).toEqual([]);

    const second = new MemorySource(placed());
    await exportLaidOut(second, { output: out });
    expect(second.fetched).toEqual([first.stall]);
    expect((await readFile(out)).equals(await readFile(`${whole.description.replace(/^bundle /, '')}`))).toBe(true);
    expect((await readdir(tmp.path)).filter((f) => f.startsWith(`.ferry-resume-${n}-`))).toEqual([]);
  });

  it('a work file of other images is not continued: it is removed', async () => {
    const out = path('other.tar');
    const first = new StallingSource(placed());
    first.stall = corpus.entries[0]!.artifact.kind === 'manifest' ? corpus.entries[0]!.artifact.layers[1]!.digest : undefined;
    const abort = new AbortController();
    first.stalled = () => setTimeout(() => abort.abort(new FerryError('E_ABORTED', 'interrupted')), 200);
    await exportLaidOut(first, { output: out }, abort.signal).catch(() => undefined);
    // Another release to the same name: one image fewer, another layout.
    const fewer = corpus.entries.slice(1);
    const second = new MemorySource(fewer.map((e) => ({ repository: e.repository, ...(e.tag !== undefined ? { tag: e.tag } : {}), artifact: e.artifact })));
    const plan = await planCopy(second, requestsOf(fewer));
    const dest = new BundleDestination({ output: out, toolVersion: '0.0.0-test' });
    await fetchConfigs(second, dest.configSink(), plan, () => false, 'export', {});
    dest.layOut(layoutRequest(plan));
    await dest.open();
    await copyImages(second, dest, plan);
    await dest.commit();
    await dest.close();
    expect((await readdir(tmp.path)).filter((f) => f.includes('other.tar') && f.startsWith('.ferry-'))).toEqual([]);
    const src = await BundleSource.open(out);
    expect(src.metadata.images).toHaveLength(fewer.length);
    await src.close();
  });

  it('writes the cache only when asked; reads it either way, hashing what it takes', async () => {
    const cache = path('cache');
    const keep = new MemorySource(placed());
    await exportLaidOut(keep, { output: path('keep.tar'), storeDir: cache, cacheWrite: true });
    const cached = (await readdir(join(cache, 'blobs', 'sha256'))).sort();
    // Every config and layer, and the manifests.
    expect(cached.length).toBe(corpus.blobs.size + corpus.entries.reduce((k, e) => k + (e.artifact.kind === 'index' ? e.artifact.manifests.length + 1 : 1), 0));
    const mtimes = await Promise.all(cached.map(async (f) => (await stat(join(cache, 'blobs', 'sha256', f))).mtimeMs));

    // A run that only reads: nothing fetched, nothing written to the cache.
    const reader = new MemorySource(placed());
    const read = path('read.tar');
    await exportLaidOut(reader, { output: read, storeDir: cache });
    expect(reader.fetched).toEqual([]);
    expect((await readdir(join(cache, 'blobs', 'sha256'))).sort()).toEqual(cached);
    expect(await Promise.all(cached.map(async (f) => (await stat(join(cache, 'blobs', 'sha256', f))).mtimeMs))).toEqual(mtimes);

    // A damaged cache entry is not bundled: fetched instead (and, read only, left alone).
    const layer = [...corpus.blobs.values()].find((b) => b.size > 1000 && !b.mediaType.includes('config'))!;
    const file = join(cache, 'blobs', 'sha256', layer.digest.slice(7));
    const bad = Buffer.from(await readFile(file));
    bad[7] = bad[7]! ^ 0xff;
    await (await import('node:fs/promises')).writeFile(file, bad);
    const third = new MemorySource(placed());
    const out = path('damaged-cache.tar');
    await exportLaidOut(third, { output: out, storeDir: cache });
    expect(third.fetched).toEqual([layer.digest]);
    expect((await readFile(out)).equals(await readFile(read))).toBe(true);
  });
});
