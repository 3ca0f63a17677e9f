// A bundle file read at random keeps no manifest bytes after open (spec/robustness.md,
// "Bundles of 10,000 images"): each is read again when asked for, and checked again.
import { open, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../../src/errors.js';
import { sha256Digest } from '../../../src/oci/digest.js';
import { FileBundleSource } from '../../../src/transports/bundle/file-source.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';
import { type Corpus, originOf, smallCorpus, writeBundle } from './fixture.js';

let tmp: TempDir;
let corpus: Corpus;
let bundle: string;

beforeAll(async () => {
  tmp = makeTempDir('ferry-file-manifests-');
  corpus = await smallCorpus(61);
  bundle = join(tmp.path, 'b.tar');
  await writeBundle(corpus.entries, { output: bundle, storeDir: join(tmp.path, 'store') });
});
afterAll(async () => tmp.cleanup());

describe('manifests of a bundle file', () => {
  it('are the exported bytes, read again each time they are asked for', async () => {
    const src = await FileBundleSource.open(bundle);
    try {
      for (const e of corpus.entries) {
        const m = await src.getManifest(e.repository, e.tag ?? e.artifact.digest);
        expect(m.digest, originOf(e)).toBe(e.artifact.digest);
        expect(sha256Digest(m.bytes)).toBe(e.artifact.digest);
        expect(m.bytes).not.toBe(m.bytes);
        expect(src.parsedManifest(m.digest)).toBeDefined();
      }
    } finally {
      await src.close();
    }
  });

  it('fail with E_DIGEST_MISMATCH, naming the file and the manifest, when the file changed after open; after close, E_INTERNAL', async () => {
    const copy = join(tmp.path, 'changed.tar');
    const bytes = await readFile(bundle);
    await writeFile(copy, bytes);
    const src = await FileBundleSource.open(copy);
    const e = corpus.entries[0]!;
    const m = await src.getManifest(e.repository, e.tag!);
    const good = m.bytes;
    // The same number of bytes, one of them changed: only a digest check tells.
    const at = bytes.indexOf(good);
    expect(at).toBeGreaterThan(0);
    const h = await open(copy, 'r+');
    await h.write(Buffer.from([good[10]! ^ 1]), 0, 1, at + 10);
    await h.close();
    try {
      let caught: unknown;
      try {
        void m.bytes;
      } catch (err) {
        caught = err;
      }
      expect(isFerryError(caught, 'E_DIGEST_MISMATCH')).toBe(true);
      expect((caught as Error).message).toContain(copy);
      expect((caught as Error).message).toContain(e.artifact.digest);
    } finally {
      await src.close();
    }
    expect(() => m.bytes).toThrow(/after the bundle was closed/);
  });
});
