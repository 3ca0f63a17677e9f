import { createRequire } from 'node:module';
import { Readable, type Transform } from 'node:stream';
import type * as ZstdBinding from 'zstd-napi/binding.js';
import { CompressStream } from 'zstd-napi';
import { FerryError } from '../errors.js';

/**
 * zstd as stream wrappers. Compression uses zstd-napi's CompressStream (its
 * output is never larger than a block beyond its input). Decompression is our
 * own loop over the native context instead of zstd-napi's DecompressStream,
 * because that one pushes every byte one input chunk expands to at once,
 * ignoring back-pressure: a small hostile chunk could expand to gigabytes in
 * memory. Here the consumer pulls one output buffer at a time.
 */

const require = createRequire(import.meta.url);
// `binding.js` is zstd-napi's internal module, outside its public API (0.0.x: any release may
// change it): package.json pins the exact version, so an upgrade is a deliberate change rerun
// through the zstd tests rather than something `npm install` does on its own.
const binding = require('zstd-napi/binding.js') as typeof ZstdBinding;

/** A zstd frame starts with these bytes (RFC 8878 §3.1.1: 0xFD2FB528 little-endian). */
export const ZSTD_MAGIC = Buffer.from([0x28, 0xb5, 0x2f, 0xfd]);

/** The zstd-napi binding's version and the libzstd it was built with (ferry version, bug reports). */
export function zstdVersions(): { binding: string; library: string } {
  const pkg = require('zstd-napi/package.json') as { version: string };
  return { binding: pkg.version, library: binding.versionString() };
}

export function hasZstdMagic(head: Uint8Array): boolean {
  return head.length >= 4 && ZSTD_MAGIC.every((b, i) => head[i] === b);
}

export interface CompressOptions {
  /** zstd level; 3 is zstd's own default, 19 is slow and small. */
  level?: number;
  /** zstd worker threads inside the native library; 0 = compress on the calling thread. */
  workers?: number;
}

export function compressStream(opts: CompressOptions = {}): Transform {
  return new CompressStream({
    compressionLevel: opts.level ?? 3,
    // The frame checksum lets a reader of the bundle notice a damaged file even before digests are compared.
    checksumFlag: true,
    ...(opts.workers ? { nbWorkers: opts.workers } : {}),
  });
}

/**
 * Decompresses `source` (a zstd stream, possibly several concatenated frames).
 * Fails with E_BUNDLE_TRUNCATED if it ends inside a frame, E_BUNDLE_CORRUPT on bad data.
 * @param where names the file, for messages.
 */
export function decompressStream(source: AsyncIterable<Uint8Array>, where = 'zstd stream'): Readable {
  return Readable.from(decompressChunks(source, where), { objectMode: false });
}

async function* decompressChunks(source: AsyncIterable<Uint8Array>, where: string): AsyncGenerator<Buffer> {
  const dctx = new binding.DCtx();
  const outSize = binding.dStreamOutSize();
  let inFrame = false;
  for await (const raw of source) {
    let src = Buffer.isBuffer(raw) ? raw : Buffer.from(raw);
    while (src.length > 0 || inFrame) {
      const dst = Buffer.allocUnsafe(outSize);
      let ret: number;
      let produced: number;
      let consumed: number;
      try {
        [ret, produced, consumed] = dctx.decompressStream(dst, src);
      } catch (e) {
        throw new FerryError('E_BUNDLE_CORRUPT', `${where}: zstd data is corrupt (${(e as Error).message})`, {
          hint: 'the compressed file is damaged; copy it again from the exporting side', cause: e, details: { file: where },
        });
      }
      src = src.subarray(consumed);
      inFrame = ret !== 0;
      if (produced > 0) yield dst.subarray(0, produced);
      // No progress possible without more input: fetch the next chunk.
      if (src.length === 0 && produced < dst.length) break;
    }
  }
  if (inFrame) {
    throw new FerryError('E_BUNDLE_TRUNCATED', `${where}: the zstd stream ends in the middle of a frame`, {
      hint: 'the file was cut short (incomplete copy or interrupted transfer); copy it again', details: { file: where },
    });
  }
}

/**
 * Reads the first `n` bytes of `stream` (fewer if it is shorter) and returns
 * them with a stream that still yields every byte, so the caller can sniff a
 * format and then consume the content whole.
 */
export async function peekBytes(stream: Readable, n: number): Promise<{ head: Buffer; stream: Readable }> {
  const parts: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < n && !ended) {
    const chunk = stream.read() as Buffer | null;
    if (chunk !== null) {
      parts.push(chunk);
      have += chunk.length;
      continue;
    }
    if (stream.readableEnded) break;
    ended = await new Promise<boolean>((resolve, reject) => {
      const cleanup = (): void => {
        stream.off('readable', onReadable);
        stream.off('end', onEnd);
        stream.off('error', onError);
      };
      const onReadable = (): void => { cleanup(); resolve(false); };
      const onEnd = (): void => { cleanup(); resolve(true); };
      const onError = (e: Error): void => { cleanup(); reject(e); };
      stream.once('readable', onReadable);
      stream.once('end', onEnd);
      stream.once('error', onError);
    });
  }
  const all = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
  const head = all.subarray(0, Math.min(n, all.length));
  // A stream that has ended cannot take bytes back; hand out a fresh one holding them.
  if (ended || stream.readableEnded) return { head, stream: Readable.from(all.length > 0 ? [all] : [], { objectMode: false }) };
  if (all.length > 0) stream.unshift(all);
  return { head, stream };
}

/** Returns the stream's content, decompressed if it starts with the zstd magic (never judged by file name). */
export async function maybeDecompress(source: Readable, where = 'stream'): Promise<{ compressed: boolean; stream: Readable }> {
  const { head, stream } = await peekBytes(source, 4);
  if (!hasZstdMagic(head)) return { compressed: false, stream };
  return { compressed: true, stream: decompressStream(stream, where) };
}
