// The scale corpus: thousands of small images over hundreds of repositories on 5 shared
// bases (plus shared runtimes), the way a platform's registry looks — a few of them
// multi-arch, a tenth signed with cosign, one in fifty with an SBOM referrer (the
// OCI 1.1 fallback tag, as on distribution 2.8). Written straight into registry storage
// (pushing thousands of images over HTTP takes longer than the benchmark), then served
// by a real docker-registry. Image i depends only on (seed, i), so a corpus of N images
// is the first N of any larger one: one cached tree serves every smaller size.
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateCosignKeys, makeReferrersIndex, makeSignature, makeSubjectArtifact, cosignTag, COSIGN_MT } from '../support/cosign.js';
import { blobsOf, makeImage, makeIndex, makeLayer, manifestsOf, Rng, type Artifact, type Image, type Layer } from '../support/images.js';
import { startRegistry } from '../support/registry.js';
import type { CachedRegistry } from './corpus.js';
import { StorageWriter, type StoredArtifact } from './storage-writer.js';

/** Bump whenever the generated images change, so stale caches are not reused. */
export const SCALE_GENERATOR_VERSION = 1;

const BASES = 5;
const RUNTIMES = 8;
/** Tags per repository: 1,000 images make 200 repositories. */
const TAGS_PER_REPO = 5;

export interface ScaleCorpusInfo {
  generatorVersion: number;
  seed: number;
  images: number;
  /** `repo:tag` of image i, in order (no registry host: its port changes every run). */
  refs: string[];
  /** Blob + manifest bytes that image i adds to images 0..i-1 (its signature and referrers included): prefix sums give any N's unique bytes. */
  newBytes: number[];
  /** Same, counted in blobs and manifests. */
  newObjects: number[];
  /** Indexes of the images that are multi-arch, signed, or have an SBOM referrer. */
  multiArch: number[];
  signed: number[];
  withSbom: number[];
  storageBytes: number;
  generatedSeconds: number;
}

/** What the first `n` images of the corpus hold. */
export interface ScaleSlice {
  images: number;
  repositories: number;
  refs: string[];
  uniqueBytes: number;
  objects: number;
  signed: number;
  withSbom: number;
  multiArch: number;
}

export function repositoryOf(i: number): string {
  const g = Math.floor(i / TAGS_PER_REPO);
  return `team-${String(g % 37).padStart(2, '0')}/svc-${g}`;
}

export function sliceOf(info: ScaleCorpusInfo, n: number): ScaleSlice {
  if (n > info.images) throw new Error(`the corpus holds ${info.images} images, not ${n}`);
  const refs = info.refs.slice(0, n);
  const sum = (xs: number[]): number => xs.slice(0, n).reduce((a, b) => a + b, 0);
  return {
    images: n, repositories: new Set(refs.map((r) => r.split(':')[0])).size, refs,
    uniqueBytes: sum(info.newBytes), objects: sum(info.newObjects),
    signed: info.signed.filter((i) => i < n).length, withSbom: info.withSbom.filter((i) => i < n).length, multiArch: info.multiArch.filter((i) => i < n).length,
  };
}

function stored(a: Artifact, tags: string[]): StoredArtifact {
  return {
    blobs: blobsOf(a).map((b) => ({ digest: b.digest, bytes: b.bytes! })),
    manifests: manifestsOf(a).map((m) => ({ digest: m.digest, bytes: m.bytes })),
    tags,
  };
}

async function generate(root: string, images: number, seed: number, log: (l: string) => void): Promise<Omit<ScaleCorpusInfo, 'generatedSeconds'>> {
  const rng = new Rng(seed);
  const writer = new StorageWriter(root);
  const shared = new Map<string, Layer>();
  const sharedLayer = async (label: string, size: number, compressible: boolean | 'mixed'): Promise<Layer> => {
    let l = shared.get(label);
    if (!l) {
      l = await makeLayer(rng.fork(label), { size, compressible, files: 3 });
      shared.set(label, l);
    }
    return l;
  };
  const base = async (b: number, arch: string): Promise<Layer[]> => [
    await sharedLayer(`base-${b}-${arch}-os`, 48_000, 'mixed'),
    await sharedLayer(`base-${b}-${arch}-libs`, 24_000, false),
  ];
  const key = generateCosignKeys().privateKey;
  const seen = new Set<string>();
  const info: Omit<ScaleCorpusInfo, 'generatedSeconds'> = {
    generatorVersion: SCALE_GENERATOR_VERSION, seed, images, refs: [], newBytes: [], newObjects: [], multiArch: [], signed: [], withSbom: [], storageBytes: 0,
  };

  for (let i = 0; i < images; i++) {
    const repo = repositoryOf(i);
    const tag = `1.${i % TAGS_PER_REPO}.0`;
    const r = rng.fork(`image-${i}`);
    const mediaTypes = Math.floor(i / TAGS_PER_REPO) % 2 === 0 ? 'oci' : 'docker';
    const app = (arch: string): Promise<Layer> => makeLayer(r.fork(`app-${arch}`), { size: r.fork(`size-${arch}`).int(3_000, 12_000), compressible: 'mixed', files: 2 });
    const runtime = i % 3 === 0 ? [] : [await sharedLayer(`runtime-${i % RUNTIMES}`, 16_000, 'mixed')];
    const labels = { name: repo, build: String(i) };
    const one = async (arch: string, b: number): Promise<Image> =>
      makeImage({ layers: [...(await base(b, arch)), ...runtime, await app(arch)], mediaTypes, labels, platform: arch === 'amd64' ? { os: 'linux', architecture: 'amd64' } : { os: 'linux', architecture: 'arm64', variant: 'v8' } });
    let artifact: Artifact;
    if (i % 25 === 12) {
      artifact = makeIndex([await one('amd64', i % BASES), await one('arm64', (i + 1) % BASES)], mediaTypes);
      info.multiArch.push(i);
    } else {
      artifact = await one('amd64', i % BASES);
    }
    const placed: StoredArtifact[] = [stored(artifact, [tag])];
    if (i % 10 === 3) {
      const sig = makeSignature(`registry.example/${repo}`, artifact.digest, [key]);
      placed.push(stored(sig.manifest, [sig.tag]));
      info.signed.push(i);
    }
    if (i % 50 === 7) {
      const subject = { mediaType: artifact.mediaType, digest: artifact.digest, size: artifact.size };
      const sbom = makeSubjectArtifact(subject, `${repo}-${i}`);
      const index = makeReferrersIndex([sbom], COSIGN_MT.spdx);
      placed.push(stored(sbom, []), { blobs: [], manifests: [{ digest: index.digest, bytes: index.bytes }], tags: [cosignTag(artifact.digest, '')] });
      info.withSbom.push(i);
    }
    let bytes = 0;
    let objects = 0;
    for (const p of placed) {
      writer.put(repo, p);
      for (const o of [...p.blobs, ...p.manifests]) {
        if (seen.has(o.digest)) continue;
        seen.add(o.digest);
        bytes += o.bytes.length;
        objects++;
      }
    }
    info.refs.push(`${repo}:${tag}`);
    info.newBytes.push(bytes);
    info.newObjects.push(objects);
    if ((i + 1) % 500 === 0) log(`corpus: ${i + 1}/${images} images written`);
  }
  info.storageBytes = writer.bytes;
  return info;
}

/** Where a corpus of `images` images lives. */
function dirFor(resultsDir: string, images: number, seed: number): string {
  return join(resultsDir, `corpus-scale-n${images}-s${seed}-g${SCALE_GENERATOR_VERSION}`);
}

/** The smallest complete cached corpus of at least `images` images, if any. */
function findCached(resultsDir: string, images: number, seed: number): string | undefined {
  if (!existsSync(resultsDir)) return undefined;
  const re = new RegExp(`^corpus-scale-n(\\d+)-s${seed}-g${SCALE_GENERATOR_VERSION}$`);
  return readdirSync(resultsDir)
    .flatMap((name) => {
      const m = re.exec(name);
      return m && Number(m[1]) >= images && existsSync(join(resultsDir, name, 'info.json')) ? [{ name, n: Number(m[1]) }] : [];
    })
    .sort((a, b) => a.n - b.n)
    .map((x) => join(resultsDir, x.name))[0];
}

/**
 * A registry serving a scale corpus of at least `images` images, generated (and cached
 * for later runs, `info.json` written last marks it complete) when none is there yet.
 */
export async function openScaleCorpus(resultsDir: string, images: number, seed: number, log: (l: string) => void): Promise<CachedRegistry<ScaleCorpusInfo>> {
  let dir = findCached(resultsDir, images, seed);
  if (dir) {
    log(`corpus: reusing ${dir}`);
  } else {
    dir = dirFor(resultsDir, images, seed);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(join(dir, 'storage'), { recursive: true });
    const t0 = Date.now();
    log(`corpus: generating ${images} images (seed ${seed}) straight into registry storage; cached for later runs`);
    const info: ScaleCorpusInfo = { ...(await generate(join(dir, 'storage'), images, seed, log)), generatedSeconds: (Date.now() - t0) / 1000 };
    log(`corpus: ${images} images, ${(info.storageBytes / 1e6).toFixed(1)} MB in ${info.generatedSeconds.toFixed(0)} s`);
    writeFileSync(join(dir, 'info.json.tmp'), JSON.stringify(info) + '\n');
    renameSync(join(dir, 'info.json.tmp'), join(dir, 'info.json'));
  }
  const info = JSON.parse(readFileSync(join(dir, 'info.json'), 'utf8')) as ScaleCorpusInfo;
  const registry = await startRegistry({ storageDir: join(dir, 'storage') });
  return { info, registry, host: registry.host };
}
