// Interop: the real skopeo 1.9.3 reads an uncompressed ferry bundle as an OCI archive.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { skopeo } from '../support/skopeo.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { validateDirImage } from '../support/validate.js';
import { type Corpus, type Entry, smallCorpus, writeBundle } from '../unit/bundle/fixture.js';

let tmp: TempDir;
let corpus: Corpus;
let bundle: string;
let entries: Entry[];

beforeAll(async () => {
  tmp = makeTempDir('ferry-bundle-skopeo-');
  corpus = await smallCorpus(0x5c0);
  bundle = join(tmp.path, 'release.tar');
  // skopeo 1.9.3 selects only index.json entries with OCI media types (see spec/bundle.md
  // "Reading a bundle with skopeo"), so the digest-only image here is the OCI one again.
  entries = [...corpus.entries, { artifact: corpus.entries[0]!.artifact, repository: 'quay.io/tools/app' }];
  await writeBundle(entries, { output: bundle, storeDir: join(tmp.path, 'store') });
});
afterAll(async () => tmp.cleanup());

async function copyOut(ref: string, all: boolean): Promise<string> {
  const out = join(tmp.path, `out-${Math.random().toString(16).slice(2)}`);
  await mkdir(out);
  const r = await skopeo(['copy', ...(all ? ['--all'] : []), `oci-archive:${bundle}:${ref}`, `dir:${out}`]);
  if (r.code !== 0) throw new Error(`skopeo exited ${r.code}: ${r.stderr}`);
  return out;
}

describe('skopeo reads ferry bundles (oci-archive:)', () => {
  it('copies a tagged single-platform image by <registry>/<repository>:<tag>, keeping its digest', async () => {
    const e = corpus.entries[0]!;
    const out = await copyOut(`${e.repository}:${e.tag}`, false);
    const walked = await validateDirImage(out, { expectDigest: e.artifact.digest });
    expect(walked.digest).toBe(e.artifact.digest);
  });

  it('copies a whole multi-platform index with --all, keeping its digest', async () => {
    const e = corpus.entries[2]!;
    expect(e.artifact.kind).toBe('index');
    const out = await copyOut(`${e.repository}:${e.tag}`, true);
    const walked = await validateDirImage(out, { expectDigest: e.artifact.digest, requireAllChildren: true });
    expect(walked.digest).toBe(e.artifact.digest);
  });

  it('copies a digest-only image by <registry>/<repository>@<digest>', async () => {
    const e = entries[3]!;
    expect(e.tag).toBeUndefined();
    const out = await copyOut(`${e.repository}@${e.artifact.digest}`, false);
    await validateDirImage(out, { expectDigest: e.artifact.digest });
  });

  it('fails for a name the bundle does not hold (the test can fail)', async () => {
    const r = await skopeo(['copy', `oci-archive:${bundle}:docker.io/library/absent:1`, `dir:${join(tmp.path, 'none')}`]);
    expect(r.code).not.toBe(0);
  });
});
