import { createHash } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { Transform } from 'node:stream';
import { FerryError } from '../../errors.js';
import { writeFileAtomic } from '../../fsys/atomic.js';
import { BLOCK, padding } from './tar.js';
import { type BundleBlob, type BundleMetadata, serialiseMetadata } from './metadata.js';

/**
 * Splitting a bundle into volumes for file shares (spec/bundle.md "Volumes"):
 * the size syntax, the file names, the cut at blob boundaries, and the
 * `sha256sum -c` sidecar. Each volume is a whole bundle file of its own.
 */

export interface VolumeFile {
  index: number;
  path: string;
  /** Uncompressed tar bytes (what the cap bounds). */
  tarBytes: number;
  layers: number;
  sha256: string;
}

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 };

/**
 * `--split` sizes in binary units, the same reading as `ferry plan --split`:
 * `2G`, `2GiB` and `2GB` all mean 2×1024³ bytes, `1.5G` is allowed, a bare
 * number is bytes. (No SI reading: plan and export must agree on the cut.)
 */
export function parseSize(text: string, where = '--split'): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(text);
  const unit = UNITS[(m?.[2] ?? '').toUpperCase()];
  const n = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new FerryError('E_USAGE', `${where} ${JSON.stringify(text.slice(0, 40))} is not a size`, {
      hint: 'give bytes or a number with K, M, G or T (binary: K = 1024 bytes; KB and KiB mean the same), e.g. --split 2G',
    });
  }
  return n;
}

/** `release.tar.zst` → `release`: the stem volume names, the sidecar and the metadata copy are built from. */
export function volumeStem(output: string): string {
  return output.replace(/\.tar\.zst$|\.tar$|\.zst$/, '');
}

/** Volume `index` of `count`: `release.000.tar.zst` — each volume is a bundle of its own, so it keeps the bundle's extension. */
export function volumeName(stem: string, index: number, count: number, compressed: boolean): string {
  const width = Math.max(3, String(count - 1).length);
  return `${stem}.${String(index).padStart(width, '0')}.tar${compressed ? '.zst' : ''}`;
}

const entryBytes = (size: number): number => BLOCK + size + padding(size);

/**
 * Cuts the stored layers into consecutive runs so that every volume's tar —
 * metadata, layout files, every manifest and config, its layers, the
 * end-of-archive marker — stays within `maxBytes`. Greedy in stored order, so
 * the same bundle and cap always give the same cut.
 */
export function planVolumes<B extends BundleBlob>(meta: BundleMetadata, stored: readonly B[], indexJsonBytes: number, maxBytes: number, description: string): B[][] {
  const head = stored.filter((b) => b.kind !== 'layer');
  const layers = stored.filter((b) => b.kind === 'layer');
  // An upper bound of any volume's ferry.json: every digest listed, the widest index and count.
  const metaMax = serialiseMetadata({ ...meta, volume: { index: Number.MAX_SAFE_INTEGER, count: Number.MAX_SAFE_INTEGER, bundleId: meta.bundleId, blobs: stored.map((b) => b.digest) } }).length;
  const fixed = entryBytes(metaMax) + entryBytes(30) + entryBytes(indexJsonBytes) + 2 * BLOCK + head.reduce((n, b) => n + entryBytes(b.size), 0) + 2 * BLOCK;
  if (fixed > maxBytes) {
    throw new FerryError('E_USAGE', `${description}: --split ${maxBytes} bytes is too small: every volume carries the metadata, manifests and configs, ${fixed} bytes`, {
      hint: `give a larger --split (more than ${fixed} bytes plus the largest layer)`, details: { split: maxBytes, headBytes: fixed },
    });
  }
  const volumes: B[][] = [];
  let current: B[] = [];
  let used = fixed;
  for (const l of layers) {
    const e = entryBytes(l.size);
    if (fixed + e > maxBytes) {
      throw new FerryError('E_USAGE', `${description}: layer ${l.digest} (${l.size} bytes) does not fit in a ${maxBytes}-byte volume beside the ${fixed} bytes of metadata, manifests and configs; blobs are not cut across volumes`, {
        hint: `give --split more than ${fixed + e} bytes`, details: { digest: l.digest, size: l.size, split: maxBytes },
      });
    }
    if (used + e > maxBytes && current.length > 0) {
      volumes.push(current);
      current = [];
      used = fixed;
    }
    current.push(l);
    used += e;
  }
  volumes.push(current);
  return volumes;
}

export interface WriteVolumesInput<B extends BundleBlob> {
  output: string;
  maxBytes: number;
  meta: BundleMetadata;
  stored: B[];
  compressed: boolean;
  description: string;
  indexJsonBytes: number;
  /** Writes one bundle file holding `blobs`; `tap` must see the file's bytes. */
  writeOne: (file: string, meta: BundleMetadata, blobs: B[], tap: Transform) => Promise<void>;
}

/**
 * Writes `STEM.NNN.tar[.zst]` for each volume, then `STEM.ferry.json` (the
 * whole bundle's metadata) and last `STEM.sha256`, so a sidecar exists only
 * for a complete set.
 */
export async function writeVolumes<B extends BundleBlob>(input: WriteVolumesInput<B>): Promise<VolumeFile[]> {
  const { meta, stored } = input;
  const cut = planVolumes(meta, stored, input.indexJsonBytes, input.maxBytes, input.description);
  const head = stored.filter((b) => b.kind !== 'layer');
  const stem = volumeStem(input.output);
  const files: VolumeFile[] = [];
  for (const [index, layers] of cut.entries()) {
    const blobs = [...head, ...layers];
    const volMeta: BundleMetadata = { ...meta, volume: { index, count: cut.length, bundleId: meta.bundleId, blobs: blobs.map((b) => b.digest) } };
    const path = volumeName(stem, index, cut.length, input.compressed);
    const hash = createHash('sha256');
    const tap = new Transform({
      transform(chunk: Buffer, _enc, cb) {
        hash.update(chunk);
        cb(null, chunk);
      },
    });
    await input.writeOne(path, volMeta, blobs, tap);
    const tarBytes = entryBytes(serialiseMetadata(volMeta).length) + entryBytes(30) + entryBytes(input.indexJsonBytes) + 2 * BLOCK + blobs.reduce((n, b) => n + entryBytes(b.size), 0) + 2 * BLOCK;
    files.push({ index, path, tarBytes, layers: layers.length, sha256: hash.digest('hex') });
  }
  await writeFileAtomic(`${stem}.ferry.json`, serialiseMetadata(meta));
  await writeFileAtomic(`${stem}.sha256`, files.map((f) => `${f.sha256}  ${basename(f.path)}\n`).join(''));
  return files;
}

export interface SidecarEntry {
  sha256: string;
  /** Resolved beside the sidecar. */
  path: string;
}

/**
 * A `sha256sum` list (`<hex>  <name>` or `<hex> *<name>`, one a line). Names
 * must be plain file names: the list names files beside it, nothing else.
 */
export function parseSidecar(text: string, sidecarPath: string): SidecarEntry[] {
  const out: SidecarEntry[] = [];
  text.split('\n').forEach((line, i) => {
    if (line.trim() === '') return;
    const m = /^([0-9a-f]{64}) [ *]([^/\\\0]+)$/.exec(line.replace(/\r$/, ''));
    if (!m || m[2] === '.' || m[2] === '..') {
      throw new FerryError('E_BUNDLE_INVALID', `${sidecarPath} line ${i + 1}: not "<sha256>  <file name>" naming a file beside the list`, {
        hint: 'give the .sha256 file ferry export wrote with the volumes, unedited', details: { file: sidecarPath, line: i + 1 },
      });
    }
    out.push({ sha256: m[1]!, path: join(dirname(sidecarPath), m[2]!) });
  });
  if (out.length === 0) throw new FerryError('E_BUNDLE_INVALID', `${sidecarPath}: lists no volumes`, { hint: 'give the .sha256 file ferry export wrote with the volumes', details: { file: sidecarPath } });
  return out;
}
