import { readFile, stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError } from '../errors.js';
import { expandFileGlobs } from '../fsys/glob.js';
import { type Digest, sha256Digest } from '../oci/digest.js';
import { parseManifest } from '../oci/manifest.js';
import { VerifyStream } from '../stream/verify.js';
import { BundleFile, type IndexedEntry } from '../transports/bundle/entry-index.js';
import { joinStreams } from '../transports/bundle/range-reader.js';
import type { BundleImage, BundleMetadata } from '../transports/bundle/metadata.js';
import { imageRefName } from '../transports/bundle/metadata.js';
import { parseSidecar } from '../transports/bundle/volumes.js';
import type { BlobReader, ServedManifest, StoredBlob } from './content.js';

/**
 * The bundles `ferry serve` was given, read in place (spec/serve.md §2): whole
 * bundles, the volumes of split ones (a cut layer read as its parts in
 * order), and deltas over their bases. Each file is opened once, at startup;
 * nothing else is ever opened.
 */

/** A blob's bytes as consecutive pieces: one entry, or the parts of a layer cut across volumes. */
interface Located extends StoredBlob {
  pieces: { file: BundleFile; entry: IndexedEntry }[];
}

/** One bundle as given: a whole file, or the volumes of a split one that were found. */
export interface GivenBundle {
  metadata: BundleMetadata;
  files: BundleFile[];
  /** Volumes of a split bundle that were not given or not found: numbers are 1-based. */
  missingVolumes: { volume: number; file?: string }[];
  /** Named as a base by another given bundle (a delta): it supplies blobs, its images are not served. */
  isBase: boolean;
}

export interface OpenedBundles {
  bundles: GivenBundle[];
  /** The images of every bundle that is not a base, with the bundle they come from. */
  images: { image: BundleImage; bundle: GivenBundle }[];
  manifests: Map<Digest, ServedManifest>;
  /** Configs hashed at startup. */
  verified: Set<Digest>;
  reader: BlobReader;
}

export async function openBundles(inputs: readonly string[], opts: { cacheDir?: string; signal?: AbortSignal } = {}): Promise<OpenedBundles> {
  const files: BundleFile[] = [];
  try {
    const { paths, listed } = await bundlePaths(inputs);
    for (const path of paths) {
      opts.signal?.throwIfAborted();
      files.push(await BundleFile.open(path, opts.cacheDir ? { cacheDir: opts.cacheDir } : {}));
    }
    const bundles = group(files, listed);
    const bases = new Set(bundles.flatMap((b) => (b.metadata.delta?.bases ?? []).map((x) => x.bundleId as string)));
    for (const b of bundles) b.isBase = bases.has(b.metadata.bundleId) && bundles.some((o) => o !== b && !bases.has(o.metadata.bundleId));
    const located = locate(bundles);
    const served = bundles.filter((b) => !b.isBase);
    const manifests = await readManifests(served, opts.signal);
    checkComplete(served, bundles, located, manifests);
    const images = served.flatMap((bundle) => bundle.metadata.images.map((image) => ({ image, bundle })));
    const reader = new BundleBlobReader(located, files);
    const verified = await verifyConfigs(images, manifests, reader, opts.signal);
    return { bundles, images, manifests, verified, reader };
  } catch (e) {
    await Promise.all(files.map((f) => f.close()));
    throw e;
  }
}

/**
 * Bundle files from the arguments: globs expanded, `.sha256` lists read (each
 * listed file that exists; the list is not hashed: every blob is verified on
 * its first read instead, spec/serve.md §3). `listed` maps each listed path to
 * its list, to name missing volumes.
 */
async function bundlePaths(inputs: readonly string[]): Promise<{ paths: string[]; listed: Map<string, string> }> {
  const paths: string[] = [];
  const listed = new Map<string, string>();
  const add = (p: string) => {
    const abs = resolve(p);
    if (!paths.includes(abs)) paths.push(abs);
  };
  for (const input of await expandFileGlobs(inputs)) {
    if (input === '-') throw new FerryError('E_USAGE', 'ferry serve reads bundles at random offsets: it cannot read one from stdin', { hint: 'give the bundle file' });
    if (!input.endsWith('.sha256')) {
      add(input);
      continue;
    }
    const text = await readFile(input, 'utf8').catch((e: NodeJS.ErrnoException) => {
      throw new FerryError(e.code === 'ENOENT' ? 'E_NOT_FOUND' : 'E_IO', `${input}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`, { hint: 'give the .sha256 list export wrote beside the volumes', details: { file: input } });
    });
    for (const entry of parseSidecar(text, input)) {
      listed.set(resolve(entry.path), input);
      const exists = await stat(entry.path).then((st) => st.isFile(), () => false);
      if (exists) add(entry.path);
    }
  }
  if (paths.length === 0) throw new FerryError('E_USAGE', 'no bundle given', { hint: 'name a bundle file, the volumes of a split bundle, or their .sha256 list' });
  return { paths, listed };
}

/** Files of one bundle together; volumes of one split bundle checked against each other. */
function group(files: BundleFile[], listed: Map<string, string>): GivenBundle[] {
  const byId = new Map<string, BundleFile[]>();
  for (const f of files) byId.set(f.metadata.bundleId, [...(byId.get(f.metadata.bundleId) ?? []), f]);
  const out: GivenBundle[] = [];
  for (const list of byId.values()) {
    const first = list[0]!;
    const vol = first.metadata.volume;
    if (!vol) {
      const volumeFile = list.find((f) => f.metadata.volume);
      if (volumeFile) throw new FerryError('E_USAGE', `${volumeFile.path} is a volume of bundle ${first.metadata.bundleId}, and ${first.path} is that bundle whole`, { hint: 'give either the whole bundle or its volumes' });
      out.push({ metadata: first.metadata, files: [first], missingVolumes: [], isBase: false });
      continue;
    }
    const byIndex = new Map<number, BundleFile>();
    for (const f of list) {
      const v = f.metadata.volume;
      if (!v || v.count !== vol.count) throw new FerryError('E_USAGE', `${f.path} and ${first.path} are of bundle ${first.metadata.bundleId} but disagree on its volumes`, { hint: 'give the volumes of one export only' });
      const twin = byIndex.get(v.index);
      if (twin) throw new FerryError('E_USAGE', `${f.path} and ${twin.path} are both volume ${v.index + 1} of ${v.count}`, { hint: 'give each volume once' });
      byIndex.set(v.index, f);
    }
    const missingVolumes: GivenBundle['missingVolumes'] = [];
    for (let i = 0; i < vol.count; i++) {
      if (byIndex.has(i)) continue;
      const guess = [...listed.keys()].find((p) => /\.(\d+)\.tar$/.exec(p)?.[1] !== undefined && Number(/\.(\d+)\.tar$/.exec(p)![1]) === i);
      missingVolumes.push({ volume: i + 1, ...(guess ? { file: guess } : {}) });
    }
    out.push({ metadata: first.metadata, files: [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([, f]) => f), missingVolumes, isBase: false });
  }
  return out;
}

/**
 * Where every blob's bytes are: the first bundle holding it whole, served
 * bundles before bases; a cut layer only when all its parts are here and
 * follow on from one another.
 */
function locate(bundles: GivenBundle[]): Map<Digest, Located> {
  const located = new Map<Digest, Located>();
  const ordered = [...bundles.filter((b) => !b.isBase), ...bundles.filter((b) => b.isBase)];
  for (const b of ordered) {
    const sizes = new Map(b.metadata.blobs.map((x) => [x.digest, x.size]));
    for (const file of b.files) {
      for (const entry of file.entries.values()) {
        if (entry.part || located.has(entry.blob.digest)) continue;
        located.set(entry.blob.digest, { digest: entry.blob.digest, size: entry.size, pieces: [{ file, entry }] });
      }
    }
    const parts = new Map<Digest, { file: BundleFile; entry: IndexedEntry }[]>();
    for (const file of b.files) for (const entry of file.partEntries()) parts.set(entry.blob.digest, [...(parts.get(entry.blob.digest) ?? []), { file, entry }]);
    for (const [digest, pieces] of parts) {
      if (located.has(digest)) continue;
      pieces.sort((x, y) => x.entry.part!.index - y.entry.part!.index);
      let offset = 0;
      const whole = pieces.length === pieces[0]!.entry.part!.count && pieces.every((p, i) => {
        const ok = p.entry.part!.index === i && p.entry.part!.offset === offset;
        offset += p.entry.size;
        return ok;
      });
      if (whole && offset === sizes.get(digest)) located.set(digest, { digest, size: offset, pieces });
    }
  }
  return located;
}

/** Reads every manifest of the served bundles, each checked against its digest and parsed (manifests are never left out of a delta). */
async function readManifests(served: GivenBundle[], signal?: AbortSignal): Promise<Map<Digest, ServedManifest>> {
  const manifests = new Map<Digest, ServedManifest>();
  for (const b of served) {
    // Every volume holds every manifest: the first file has them all.
    const file = b.files[0]!;
    for (const blob of b.metadata.blobs) {
      signal?.throwIfAborted();
      if ((blob.kind !== 'manifest' && blob.kind !== 'index') || manifests.has(blob.digest)) continue;
      const bytes = await file.readWhole(file.wholeEntry(blob.digest)!);
      const actual = sha256Digest(bytes);
      if (actual !== blob.digest) {
        throw new FerryError('E_DIGEST_MISMATCH', `${file.path}: ${blob.kind} ${blob.digest} hashes to ${actual}`, {
          hint: 'the bundle is damaged or was altered; copy it again from the exporting side', details: { file: file.path, digest: blob.digest, actual },
        });
      }
      manifests.set(blob.digest, { digest: blob.digest, mediaType: blob.mediaType, bytes, parsed: parseManifest(bytes, blob.mediaType, `${file.path}: manifest ${blob.digest}`) });
    }
  }
  return manifests;
}

/** The configs and layers an image needs, through its index children. */
export function blobsOfImage(top: Digest, manifests: ReadonlyMap<Digest, ServedManifest>): { digest: Digest; size: number; kind: 'config' | 'layer' }[] {
  const out = new Map<Digest, { digest: Digest; size: number; kind: 'config' | 'layer' }>();
  const visit = (d: Digest, depth: number): void => {
    const m = manifests.get(d);
    if (!m || depth > 8) return;
    for (const c of m.parsed.manifests) visit(c.digest, depth + 1);
    if (m.parsed.config) out.set(m.parsed.config.digest, { digest: m.parsed.config.digest, size: m.parsed.config.size, kind: 'config' });
    for (const l of m.parsed.layers) if (!out.has(l.digest)) out.set(l.digest, { digest: l.digest, size: l.size, kind: 'layer' });
  };
  visit(top, 0);
  return [...out.values()];
}

/** Every blob each served image needs is here (its own bundle, or a base for a delta's omitted blobs), else no start. */
function checkComplete(served: GivenBundle[], all: GivenBundle[], located: Map<Digest, Located>, manifests: ReadonlyMap<Digest, ServedManifest>): void {
  const problems: { image: string; digest: string; why: string; code: 'E_BASE_MISSING' | 'E_BLOB_MISSING' }[] = [];
  for (const b of served) {
    const omitted = new Set((b.metadata.delta?.omittedBlobs ?? []).map((x) => x.digest as string));
    for (const img of b.metadata.images) {
      for (const blob of blobsOfImage(img.digest, manifests)) {
        if (located.has(blob.digest)) continue;
        const name = imageRefName(img);
        if (omitted.has(blob.digest)) {
          const bases = (b.metadata.delta?.bases ?? []).map((x) => x.bundleId).join(', ');
          problems.push({ image: name, digest: blob.digest, code: 'E_BASE_MISSING', why: `left out of delta ${b.files[0]!.path} and held by none of the bundles given with it (its base: ${bases})` });
        } else {
          const vol = b.missingVolumes;
          problems.push({ image: name, digest: blob.digest, code: 'E_BLOB_MISSING', why: vol.length ? `in a volume that was not given: ${vol.map((v) => `volume ${v.volume} of ${b.metadata.volume!.count}${v.file ? ` (${basename(v.file)})` : ''}`).join(', ')}` : 'not in the bundle' });
        }
      }
    }
  }
  if (problems.length === 0) return;
  const code = problems.every((p) => p.code === 'E_BASE_MISSING') ? 'E_BASE_MISSING' : 'E_BLOB_MISSING';
  const images = [...new Set(problems.map((p) => p.image))];
  throw new FerryError(code, `${images.length} image${images.length === 1 ? '' : 's'} cannot be served whole:\n${problems.slice(0, 20).map((p) => `  ${p.image}: blob ${p.digest} is ${p.why}`).join('\n')}${problems.length > 20 ? `\n  … and ${problems.length - 20} more` : ''}`, {
    hint: code === 'E_BASE_MISSING' ? 'give the delta\'s base bundle(s) too: ferry serve BASE.tar DELTA.tar' : 'give every volume (or the .sha256 list beside them)',
    details: { images, missing: problems.slice(0, 100).map((p) => ({ image: p.image, digest: p.digest })), bundles: all.map((x) => x.metadata.bundleId) },
  });
}

/** Hashes every config the served images need, wherever it lies (a delta's may be in its base): they are small, and then served verified. */
async function verifyConfigs(images: { image: BundleImage }[], manifests: ReadonlyMap<Digest, ServedManifest>, reader: BlobReader, signal?: AbortSignal): Promise<Set<Digest>> {
  const verified = new Set<Digest>();
  for (const { image } of images) {
    for (const blob of blobsOfImage(image.digest, manifests)) {
      if (blob.kind !== 'config' || verified.has(blob.digest)) continue;
      signal?.throwIfAborted();
      const stored = reader.blob(blob.digest)!;
      const body = stored.size === 0 ? Readable.from([]) : await reader.read(stored, 0, stored.size - 1);
      await pipeline(body, new VerifyStream({ digest: blob.digest, size: blob.size }, `${reader.description}: config of ${imageRefName(image)}`), new PassThrough().resume());
      verified.add(blob.digest);
    }
  }
  return verified;
}

/** Reads blob ranges out of the bundle files, across the parts of a cut layer. */
class BundleBlobReader implements BlobReader {
  readonly description: string;

  constructor(private readonly located: Map<Digest, Located>, private readonly files: BundleFile[]) {
    this.description = files.length === 1 ? `bundle ${files[0]!.path}` : `bundles ${files.map((f) => basename(f.path)).join(', ')}`;
  }

  blob(digest: Digest): StoredBlob | undefined {
    return this.located.get(digest);
  }

  async read(blob: StoredBlob, start: number, end: number): Promise<Readable> {
    const loc = this.located.get(blob.digest);
    if (!loc) throw new FerryError('E_INTERNAL', `no location for ${blob.digest}`);
    const spans: { file: BundleFile; entry: IndexedEntry; from: number; to: number }[] = [];
    let base = 0;
    for (const p of loc.pieces) {
      const lo = Math.max(start, base);
      const hi = Math.min(end, base + p.entry.size - 1);
      if (lo <= hi) spans.push({ ...p, from: lo - base, to: hi - base });
      base += p.entry.size;
    }
    for (const s of spans) await s.file.checkEntry(s.entry);
    // Parts of a cut layer, one after the other: one stream at a time, never the whole layer in memory.
    return joinStreams(spans.map((s) => () => s.file.read(s.entry, s.from, s.to)));
  }

  async close(): Promise<void> {
    await Promise.all(this.files.map((f) => f.close()));
  }
}
