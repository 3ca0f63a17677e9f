// The input caps and the JSON parse budget on their own: a file over its cap is refused by
// its size before it is read, an endless one once the read passes the cap; the estimate of
// what JSON.parse allocates never falls below the text itself, and JSON under the budget
// parses exactly as JSON.parse does.
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../src/errors.js';
import {
  INPUT, type InputLimit, JSON_PARSE_BUDGET_BYTES, jsonHeapEstimate, parseJsonInput, readInputFile, readInputFileSync, readInputStream,
} from '../../src/input-limits.js';
import { rejection } from '../support/rejection.js';
import { makeTempDir } from '../support/tmp.js';

const RUNS = process.env.FERRY_STRESS ? 5000 : 400;
const dir = makeTempDir('ferry-input-limits-');
afterAll(() => dir.cleanup());
const kind: InputLimit = { what: 'a test input', maxBytes: 1000, code: 'E_CONFIG', hint: 'use a smaller one' };

function thrown(f: () => unknown): FerryError {
  try {
    f();
  } catch (e) {
    if (e instanceof FerryError) return e;
    throw e;
  }
  throw new Error('expected a FerryError');
}

describe('reading within a cap', () => {
  it('reads a file up to the cap exactly', async () => {
    const p = join(dir.path, 'ok');
    writeFileSync(p, Buffer.alloc(1000, 0x61));
    expect((await readInputFile(p, kind)).length).toBe(1000);
    expect(readInputFileSync(p, kind).length).toBe(1000);
  });

  it('refuses a larger regular file by its size (sparse: nothing past the head is read), naming file, size and cap', async () => {
    const p = join(dir.path, 'big');
    const fd = openSync(p, 'w');
    ftruncateSync(fd, 3 * 1024 ** 3);
    closeSync(fd);
    for (const err of [await rejection(readInputFile(p, kind)), thrown(() => readInputFileSync(p, kind))]) {
      expect(err.code).toBe('E_CONFIG');
      expect(err.message).toBe(`${p}: is 3.00 GiB (3221225472 bytes), more than the 1000 B a test input may be`);
      expect(err.hint).toBe('use a smaller one');
      expect(err.details).toEqual({ file: p, maxBytes: 1000, size: 3 * 1024 ** 3 });
    }
  });

  it('stops an endless device, a FIFO and a stream at the cap', async () => {
    expect((await rejection(readInputFile('/dev/zero', kind))).message).toBe('/dev/zero: holds more than the 1000 B a test input may be');
    expect(thrown(() => readInputFileSync('/dev/zero', kind)).code).toBe('E_CONFIG');
    const fifo = join(dir.path, 'fifo');
    execFileSync('mkfifo', [fifo]);
    const writer = import('node:fs/promises').then(async (fs) => {
      const fh = await fs.open(fifo, 'w');
      await fh.write(Buffer.alloc(5000, 0x62)).catch(() => undefined);
      await fh.close();
    });
    expect((await rejection(readInputFile(fifo, kind))).code).toBe('E_CONFIG');
    await writer;
    expect((await rejection(readInputStream(Readable.from([Buffer.alloc(600), Buffer.alloc(600)]), '<stdin>', kind))).message).toMatch(/^<stdin>: holds more than the 1000 B/);
    expect((await readInputStream(Readable.from([Buffer.alloc(600), Buffer.alloc(400)]), '<stdin>', kind)).length).toBe(1000);
  });

  it('every input kind has a cap, a code and a hint', () => {
    for (const [name, k] of Object.entries(INPUT)) {
      expect(k.maxBytes, name).toBeGreaterThan(0);
      expect(k.hint.length, name).toBeGreaterThan(20);
    }
  });
});

describe('the JSON parse budget', () => {
  it('estimates at least the text for any JSON, and under the budget parses exactly as JSON.parse', () => {
    fc.assert(fc.property(fc.jsonValue(), (v) => {
      const bytes = Buffer.from(JSON.stringify(v));
      expect(jsonHeapEstimate(bytes)).toBeGreaterThanOrEqual(bytes.length);
      expect(parseJsonInput(bytes, 'x.json', kind)).toEqual(JSON.parse(bytes.toString('utf8')));
    }), { numRuns: RUNS });
  });

  it('counts a document of millions of small values far above its text, and refuses it before parsing', () => {
    const objects = Buffer.from(`{"x":[${'{},'.repeat(1_500_000)}{}]}`);
    expect(jsonHeapEstimate(objects)).toBeGreaterThan(20 * objects.length);
    const err = thrown(() => parseJsonInput(objects, 'inv.json', INPUT.inventory));
    expect(err.code).toBe('E_BUNDLE_INVALID');
    expect(err.message).toMatch(/^inv\.json: parsing it would take about \d+(\.\d+)? MiB of memory, more than the 64\.0 MiB ferry allows for an inventory/);
    expect(err.details.budgetBytes).toBe(JSON_PARSE_BUDGET_BYTES);
  });

  it('counts a repeated key once, a new one each time', () => {
    const repeated = Buffer.from(`[${Array.from({ length: 1000 }, () => '{"digest":1}').join(',')}]`);
    const unique = Buffer.from(`[${Array.from({ length: 1000 }, (_, i) => `{"d${String(i).padStart(5, '0')}":1}`).join(',')}]`);
    expect(jsonHeapEstimate(unique) - jsonHeapEstimate(repeated)).toBeGreaterThan(999 * 32);
  });

  it('takes text beyond Latin-1 at two bytes a character', () => {
    const latin = Buffer.from(JSON.stringify('é'.repeat(1000)));
    const wide = Buffer.from(JSON.stringify('Ā'.repeat(1000)));
    expect(latin.length).toBe(wide.length);
    expect(jsonHeapEstimate(wide)).toBeGreaterThan(jsonHeapEstimate(latin) + 1000);
  });
});
