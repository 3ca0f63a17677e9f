import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { type ErrorCode, FerryError } from './errors.js';
import { formatBytes } from './format.js';

/**
 * How much of a file the user hands ferry it reads, and how much memory
 * parsing it may take: the one table of input caps (documented in
 * spec/robustness.md, "Input size limits"). A file over its cap is refused
 * before it is read — by its size when it is a regular file, else by a
 * counting read that stops at the cap (a FIFO, `/dev/zero`, stdin) — with an
 * error naming the file, its size, the cap and what to do.
 *
 * A cap on bytes alone does not bound JSON.parse: `[{},{},…]` costs 64 bytes
 * of heap for every 3 bytes of text, so a few MiB of it exhausts the memory
 * that the whole document of a 20,000-image release needs. `parseJsonInput`
 * therefore estimates, in one pass over the bytes, what JSON.parse would
 * allocate, and refuses a document over JSON_PARSE_BUDGET_BYTES before
 * parsing it. Caps are generous for 20,000 images and 100,000 blobs.
 */

const MiB = 1024 * 1024;

/** An inventory (`ferry inventory` output) given to --since or diff: 100,000 blobs and 20,000 images are ~16 MiB as written. */
export const INVENTORY_MAX_BYTES = 24 * MiB;
/** A repair report given to `export --repair`: every blob of a 100,000-blob bundle, with the images using each. */
export const REPAIR_REPORT_MAX_BYTES = 24 * MiB;
/** An image list (`-f`): 20,000 references of 100 characters are 2 MiB. */
export const IMAGE_LIST_MAX_BYTES = 8 * MiB;
/** A split bundle's `.sha256` volume list: 10,000 volumes are 1 MiB. */
export const VOLUME_LIST_MAX_BYTES = 4 * MiB;
/** ferry's config file (--config, FERRY_CONFIG, ~/.config/ferry/config.json). */
export const CONFIG_FILE_MAX_BYTES = 1 * MiB;
/** docker's config.json, read for credentials: thousands of `auths` entries. */
export const DOCKER_CONFIG_MAX_BYTES = 4 * MiB;
/**
 * What JSON.parse may allocate for one document (the parsed text included),
 * as estimated by `jsonHeapEstimate`. A 20,000-image, 100,000-blob inventory
 * estimates at ~46 MiB; with the bytes read and the runtime, a refused or
 * accepted document keeps a command under 200 MiB.
 */
export const JSON_PARSE_BUDGET_BYTES = 64 * MiB;

/** What kind of input a file is, for its cap and its errors. */
export interface InputLimit {
  /** `an inventory`, `a repair report`: as in "more than the 32 MiB an inventory may be". */
  what: string;
  maxBytes: number;
  code: ErrorCode;
  /** What to do instead. */
  hint: string;
}

/** The inputs and their caps; the bundle metadata sidecar's cap is the bundle format's (METADATA_MAX_BYTES, spec/bundle.md). */
export const INPUT = {
  inventory: {
    what: 'an inventory', maxBytes: INVENTORY_MAX_BYTES, code: 'E_BUNDLE_INVALID',
    hint: 'ferry inventory writes about 16 MiB for 20,000 images and 100,000 blobs; this file is something else or was altered: take the inventory again with `ferry inventory`',
  },
  repairReport: {
    what: 'a repair report', maxBytes: REPAIR_REPORT_MAX_BYTES, code: 'E_USAGE',
    hint: 'give the .repair.json file ferry verify wrote; when most of a bundle is bad, copy the bundle again instead of repairing it',
  },
  imageList: {
    what: 'an image list', maxBytes: IMAGE_LIST_MAX_BYTES, code: 'E_USAGE',
    hint: 'an image list holds one reference a line (20,000 images fit in 2 MiB); check that -f names the image list',
  },
  volumeList: {
    what: 'a volume list (.sha256)', maxBytes: VOLUME_LIST_MAX_BYTES, code: 'E_BUNDLE_INVALID',
    hint: 'give the .sha256 file ferry export wrote beside the volumes, unedited',
  },
  configFile: {
    what: 'a config file', maxBytes: CONFIG_FILE_MAX_BYTES, code: 'E_CONFIG',
    hint: 'the config file holds global flags and per-registry settings (a few KiB); check the path given to --config / FERRY_CONFIG',
  },
  dockerConfig: {
    what: 'a docker config.json', maxBytes: DOCKER_CONFIG_MAX_BYTES, code: 'E_CONFIG',
    hint: 'docker\'s config.json holds a few hundred bytes per registry; check DOCKER_CONFIG (default ~/.docker), or pass the credentials with --username/--password-stdin',
  },
} as const satisfies Record<string, InputLimit>;

export function inputTooLarge(path: string, kind: InputLimit, size: number | undefined): FerryError {
  const is = size === undefined ? 'holds more' : `is ${formatBytes(size)} (${size} bytes), more`;
  return new FerryError(kind.code, `${path}: ${is} than the ${formatBytes(kind.maxBytes)} ${kind.what} may be`, {
    hint: kind.hint,
    details: { file: path, maxBytes: kind.maxBytes, ...(size !== undefined ? { size } : {}) },
  });
}

const CHUNK = 1024 * 1024;

/** Reads a whole file of at most `kind.maxBytes`, refusing a larger one before (regular file) or while (anything else) reading. */
export async function readInputFile(path: string, kind: InputLimit): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const st = await fh.stat();
    if (st.isFile() && st.size > kind.maxBytes) throw inputTooLarge(path, kind, st.size);
    const reader = new CappedReader(path, kind, st.isFile() ? st.size : undefined);
    for (;;) {
      const buf = reader.next();
      const { bytesRead } = await fh.read(buf, 0, buf.length, null);
      if (reader.took(buf, bytesRead)) return reader.result();
    }
  } finally {
    await fh.close();
  }
}

/**
 * The buffers of a counting read. A regular file is read into one buffer of
 * its size (plus one byte, to see it end), so its bytes are held once, not
 * twice as chunks and their concatenation; anything else in 1 MiB chunks.
 */
class CappedReader {
  private readonly chunks: Buffer[] = [];
  private total = 0;

  constructor(private readonly path: string, private readonly kind: InputLimit, private readonly size: number | undefined) {}

  next(): Buffer {
    return Buffer.allocUnsafe(this.chunks.length === 0 && this.size !== undefined ? this.size + 1 : CHUNK);
  }

  /** Records a read; true at the end of the input. */
  took(buf: Buffer, bytesRead: number): boolean {
    if (bytesRead === 0) return true;
    this.total += bytesRead;
    if (this.total > this.kind.maxBytes) throw inputTooLarge(this.path, this.kind, this.size);
    this.chunks.push(buf.subarray(0, bytesRead));
    return false;
  }

  result(): Buffer {
    return this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks, this.total);
  }
}

/** `readInputFile` for the few callers that must stay synchronous (settings read before the command line is parsed). */
export function readInputFileSync(path: string, kind: InputLimit): Buffer {
  const fd = openSync(path, 'r');
  try {
    const st = fstatSync(fd);
    if (st.isFile() && st.size > kind.maxBytes) throw inputTooLarge(path, kind, st.size);
    const reader = new CappedReader(path, kind, st.isFile() ? st.size : undefined);
    for (;;) {
      const buf = reader.next();
      if (reader.took(buf, readSync(fd, buf, 0, buf.length, null))) return reader.result();
    }
  } finally {
    closeSync(fd);
  }
}

/** Reads a stream (stdin) to its end, refusing it once it passes `kind.maxBytes`; `name` stands for the file in messages. */
export async function readInputStream(stream: Readable, name: string, kind: InputLimit): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > kind.maxBytes) throw inputTooLarge(name, kind, undefined);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, total);
}

/**
 * An upper estimate of the heap JSON.parse allocates for these bytes, the
 * decoded text included, in one pass without parsing. Measured on Node 20
 * (64-bit) for the costliest shapes: an object up to 64 bytes plus 24 a
 * member (a dictionary entry), an array 48, a heap number 16, a string 24
 * plus its characters (twice that when the text holds a character beyond
 * Latin-1), every value 8 more for its slot. Within 15% of the real heap for
 * `[{},…]`, `[[…]]`, `{"k1":{},…}` and unique strings; up to 3× above it for
 * shapes V8 stores compactly (small integers). A key already seen (up to
 * 100,000 of them) is not counted again: V8 keeps one copy. It assumes the
 * bytes are JSON: JSON.parse itself refuses what is not.
 */
export function jsonHeapEstimate(bytes: Uint8Array): number {
  const n = bytes.length;
  let wide = false;
  let heap = 0;
  let strings = 0;
  /** Short keys seen: V8 keeps one copy of a key, however many objects repeat it. */
  const keys = new Set<string>();
  for (let i = 0; i < n; i++) {
    const c = bytes[i]!;
    if (c === 0x22) {
      // A string: to its closing quote, escapes skipped.
      const start = i;
      for (i++; i < n; i++) {
        const d = bytes[i]!;
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
        else if (d >= 0xc4) wide = true;
      }
      const length = i - start;
      let j = i + 1;
      while (j < n && (bytes[j] === 0x20 || bytes[j] === 0x0a || bytes[j] === 0x0d || bytes[j] === 0x09)) j++;
      if (bytes[j] === 0x3a && length <= 64) {
        const key = Buffer.from(bytes.buffer, bytes.byteOffset + start, length).toString('latin1');
        if (keys.has(key)) continue;
        // Unique keys are counted as strings; the set only needs to know a key repeats, and stops growing past a bound.
        if (keys.size < 100_000) keys.add(key);
      }
      strings += length;
      heap += 32;
    } else if (c === 0x7b) heap += 72;
    else if (c === 0x5b) heap += 56;
    else if (c === 0x3a) heap += 24;
    else if (c === 0x2d || (c >= 0x30 && c <= 0x39)) {
      while (i + 1 < n && ((bytes[i + 1]! >= 0x30 && bytes[i + 1]! <= 0x39) || bytes[i + 1] === 0x2e || bytes[i + 1] === 0x65 || bytes[i + 1] === 0x45 || bytes[i + 1] === 0x2b || bytes[i + 1] === 0x2d)) i++;
      heap += 24;
    } else if (c === 0x74 || c === 0x66 || c === 0x6e) {
      // true, false, null
      while (i + 1 < n && bytes[i + 1]! >= 0x61 && bytes[i + 1]! <= 0x7a) i++;
      heap += 8;
    }
  }
  const perChar = wide ? 2 : 1;
  return heap + strings * perChar + n * perChar;
}

/** Refuses, with `kind`'s code and naming the file, a JSON document whose parse would exceed JSON_PARSE_BUDGET_BYTES. */
export function checkJsonBudget(bytes: Uint8Array, path: string, kind: InputLimit): void {
  const estimate = jsonHeapEstimate(bytes);
  if (estimate <= JSON_PARSE_BUDGET_BYTES) return;
  throw new FerryError(kind.code, `${path}: parsing it would take about ${formatBytes(estimate)} of memory, more than the ${formatBytes(JSON_PARSE_BUDGET_BYTES)} ferry allows for ${kind.what} (${formatBytes(bytes.length)} of JSON in very many small values)`, {
    hint: kind.hint,
    details: { file: path, size: bytes.length, estimatedBytes: estimate, budgetBytes: JSON_PARSE_BUDGET_BYTES },
  });
}

/**
 * Parses a JSON input after checking what parsing would cost: a document over
 * the budget is refused with `kind`'s code, naming the file. A syntax error is
 * left to the caller (`undefined` is never returned for valid JSON; errors
 * from JSON.parse propagate as SyntaxError).
 */
export function parseJsonInput(bytes: Uint8Array, path: string, kind: InputLimit): unknown {
  checkJsonBudget(bytes, path, kind);
  return JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8')) as unknown;
}
