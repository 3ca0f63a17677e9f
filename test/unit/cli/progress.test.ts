// Progress as people and scripts see it, on a clock the test turns: the bar fits
// the width it is given (parts dropped least useful first), bytes that did not move
// (skipped, mounted, in a delta's base) never count toward the rate, plain lines
// carry percent and ETA, and --progress json prints lines that match the schema.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeOutput } from '../../../src/cli/output.js';
import { type ProgressView, progressObserver, renderBar, renderPlain } from '../../../src/cli/progress.js';
import type { ProgressMode } from '../../../src/cli/globals.js';
import { FerryError } from '../../../src/errors.js';
import type { Digest } from '../../../src/oci/digest.js';
import type { Descriptor } from '../../../src/oci/manifest.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../../support/schemas.js';

const MiB = 1024 * 1024;
const blob = (n: number, size: number): Descriptor => ({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: `sha256:${n.toString(16).padStart(64, '0')}` as Digest, size });

function view(over: Partial<ProgressView> = {}): ProgressView {
  return {
    verb: 'export', phase: 'blobs', moved: 31 * MiB, skipped: 0, skippedBlobs: 0, total: 65 * MiB, blobsDone: 2, blobs: 3, images: 1,
    rate: 32 * MiB, eta: 100, elapsed: 1, ...over,
  };
}

describe('renderBar', () => {
  it('at 80 columns: percent, bytes, rate, ETA and blob count, and a bar, within 79 characters', () => {
    const line = renderBar(view(), 80);
    expect(line.length).toBeLessThanOrEqual(79);
    expect(line).toMatch(/^export fetching \[█+░+\]\s+47% 31\.0\/65\.0 MiB 32\.0 MiB\/s ETA 1m40s 2\/3 blobs$/);
  });

  it('at 80 columns, large counts and skipped bytes still fit: the bar goes first', () => {
    const v = view({ moved: 1023 * MiB, total: 1200 * 1024 * MiB, skipped: 600 * 1024 * MiB, skippedBlobs: 900, blobsDone: 1234, blobs: 5678, rate: 123 * MiB, eta: 750 });
    const line = renderBar(v, 80);
    expect(line.length).toBeLessThanOrEqual(79);
    expect(line).toContain('123 MiB/s');
    expect(line).toContain('ETA 12m30s');
    expect(line).toContain('1234/5678 blobs');
  });

  it('narrower: drops the bar, skipped, bytes, blobs, rate, ETA, the verb in that order; phase and percent stay', () => {
    const v = view({ skipped: 20 * MiB, skippedBlobs: 1 });
    const seen: string[] = [];
    for (let columns = 120; columns >= 19; columns--) {
      const line = renderBar(v, columns);
      expect(line.length, `${columns} columns: ${line}`).toBeLessThanOrEqual(columns - 1);
      seen.push(line);
    }
    const has = (text: string) => seen.map((l) => l.includes(text));
    // Once a part is gone at some width, it stays gone at every narrower one.
    for (const part of ['[', 'skipped', 'MiB/s', 'ETA', 'blobs']) {
      const present = has(part);
      expect(present.indexOf(false), part).toBeGreaterThan(0);
      expect(present.slice(present.indexOf(false)).every((p) => !p), part).toBe(true);
    }
    const gone = (part: string) => has(part).indexOf(false);
    expect(gone('[')).toBeLessThan(gone('skipped'));
    expect(gone('skipped')).toBeLessThan(gone('/45.0 MiB'));
    expect(gone('/45.0 MiB')).toBeLessThan(gone('blobs'));
    expect(gone('blobs')).toBeLessThan(gone('MiB/s'));
    expect(gone('MiB/s')).toBeLessThan(gone('ETA'));
    expect(renderBar(v, 21)).toBe('export fetching  78%');
    expect(renderBar(v, 20)).toBe('fetching  78%');
  });
});

/** An Output whose stderr is a terminal or a pipe, collecting what is written. */
function capture(mode: ProgressMode, opts: { tty?: boolean; json?: boolean; columns?: number } = {}) {
  const stderr = Object.assign(new PassThrough(), { isTTY: opts.tty === true, columns: opts.columns ?? 80 });
  const stdout = new PassThrough();
  let text = '';
  stderr.on('data', (c: Buffer) => { text += c.toString('utf8'); });
  return { out: makeOutput({ progress: mode, json: opts.json === true }, { stdout, stderr }), text: () => text };
}

describe('progressObserver', () => {
  it('a delta: skipped blobs are not transferred bytes — the rate is what moved', () => {
    let t = 0;
    const c = capture('plain');
    const p = progressObserver(c.out, 'export', { now: () => t });
    p.phase!('planning');
    p.planned!({ images: 1, blobs: 2, bytes: 100 * MiB });
    p.phase!('blobs');
    p.blobDone!(blob(1, 90 * MiB), 'skipped');
    for (let s = 1; s <= 10; s++) {
      t = s * 1000;
      p.bytes!(1 * MiB, blob(2, 10 * MiB));
    }
    t = 10_000;
    p.blobDone!(blob(2, 10 * MiB), 'copied');
    p.phase!('tags');
    p.done();
    const lines = c.text().trim().split('\n');
    expect(lines[0]).toBe('export: planning: reading manifests');
    expect(lines[1]).toBe('export: 1 images, 2 unique blobs, 100 MiB');
    // At 5 s: 5 MiB moved of the 10 that will, 90 skipped; 1 MiB/s, 5 s to go.
    expect(lines[2]).toBe('export: fetching 95%: 5.00/10.0 MiB, 90.0 MiB skipped (1 blobs already there), 1/2 blobs, 1.00 MiB/s, ETA 5s');
    expect(lines[3]).toBe('export: fetching 100%: 10.0/10.0 MiB, 90.0 MiB skipped (1 blobs already there), 1/2 blobs, 1.00 MiB/s, ETA 0s');
    expect(lines[4]).toBe('export: tagging 1 images');
    expect(lines[5]).toBe('export: done 100%: 10.0 MiB moved, 90.0 MiB skipped (1 blobs already there), 2/2 blobs, 1.00 MiB/s, 10s');
    expect(lines).toHaveLength(6);
  });

  it('an event more than a second after the start but before the plan (slow planning, a loaded machine) has a rate, not a crash', () => {
    let t = 0;
    const c = capture('json');
    const p = progressObserver(c.out, 'export', { now: () => t });
    t = 1_500;
    p.phase!('planning');
    p.done();
    const events = c.text().trim().split('\n').map((l) => JSON.parse(l) as { phase: string });
    expect(events.map((e) => e.phase)).toContain('planning');
  });

  it('a blob skipped in one repository but sent to another counts once, as moved', () => {
    let t = 0;
    const c = capture('json');
    const p = progressObserver(c.out, 'push', { now: () => t });
    p.planned!({ images: 2, blobs: 1, bytes: 10 * MiB });
    p.blobDone!(blob(1, 10 * MiB), 'skipped');
    t = 2000;
    p.bytes!(10 * MiB, blob(1, 10 * MiB));
    p.blobDone!(blob(1, 10 * MiB), 'copied');
    p.done();
    const last = JSON.parse(c.text().trim().split('\n').at(-1)!) as { bytes: { done: number }; skipped: { bytes: number }; percent: number };
    expect(last).toMatchObject({ bytes: { done: 10 * MiB }, skipped: { bytes: 0 }, percent: 100 });
  });

  it('--progress json: every line is one schema-valid event, also beside --json, and a failure ends "stopped"', () => {
    let t = 0;
    const c = capture('json', { json: true });
    const p = progressObserver(c.out, 'import', { now: () => t });
    p.phase!('planning');
    p.planned!({ images: 2, blobs: 2, bytes: 4 * MiB });
    p.phase!('blobs');
    p.warning!('something to know');
    for (let s = 1; s <= 4; s++) {
      t = s * 700;
      p.bytes!(512 * 1024, blob(1, 2 * MiB));
    }
    p.blobDone!(blob(1, 2 * MiB), 'copied');
    p.imageFailed!('x.io/a:1', new FerryError('E_DIGEST_MISMATCH', 'blob … hashes to …'));
    p.stop();
    const events = c.text().trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const e of events) expect(describeErrors(schemaErrors(cliSchemaRef('progressEvent'), e))).toBe('');
    expect(events.map((e) => e.type)).toEqual(['progress', 'progress', 'progress', 'warning', 'progress', 'progress', 'progress', 'imageFailed', 'progress']);
    expect(events.at(-1)).toMatchObject({ phase: 'stopped', bytes: { done: 2 * MiB, total: 4 * MiB }, percent: 50 });
    // Ticks at most once a second while bytes move: 4 chunks over 2.8 s give 2 lines, then the finished blob.
    expect(events.filter((e) => e.type === 'progress' && e.phase === 'blobs')).toHaveLength(4);
  });

  it('auto: nothing with --json or --quiet, a bar on a terminal, plain lines elsewhere; none: nothing', () => {
    const run = (mode: ProgressMode, opts: Parameters<typeof capture>[1]) => {
      const c = capture(mode, opts);
      const p = progressObserver(c.out, 'verify', { now: () => 0 });
      p.phase!('planning');
      p.planned!({ images: 1, blobs: 1, bytes: 10 });
      p.done();
      return c.text();
    };
    expect(run('auto', { json: true, tty: true })).toBe('');
    expect(run('none', { tty: true })).toBe('');
    expect(run('auto', { tty: false })).toContain('verify: done 100%');
    expect(run('auto', { tty: true })).toContain('\x1b[?25l');
    expect(run('plain', { json: true })).toContain('verify: done 100%');
  });

  it('verify says what it did: bytes checked, no tagging (it writes nothing)', () => {
    const through = (verb: string) => {
      const c = capture('plain');
      const p = progressObserver(c.out, verb, { now: () => 0 });
      p.phase!('planning');
      p.planned!({ images: 2, blobs: 1, bytes: 10 });
      p.phase!('tags');
      p.done();
      return c.text();
    };
    expect(through('verify')).toMatch(/^verify: done 100%: 0 B checked, /m);
    expect(through('verify')).not.toMatch(/tagging|moved/);
    expect(through('import')).toMatch(/^import: tagging 2 images$/m);
    expect(through('import')).toMatch(/^import: done 100%: 0 B moved, /m);
  });

  it('plain lines are written every 5 s while bytes move, with percent and ETA', () => {
    let t = 0;
    const c = capture('plain');
    const p = progressObserver(c.out, 'push', { now: () => t });
    p.planned!({ images: 1, blobs: 1, bytes: 60 * MiB });
    p.phase!('blobs');
    for (let s = 1; s <= 30; s++) {
      t = s * 1000;
      p.bytes!(2 * MiB, blob(1, 60 * MiB));
    }
    const ticks = c.text().split('\n').filter((l) => l.startsWith('push: uploading'));
    expect(ticks).toHaveLength(6);
    expect(ticks[0]).toBe('push: uploading 16%: 10.0/60.0 MiB, 0/1 blobs, 2.00 MiB/s, ETA 25s');
    expect(renderPlain({ ...view(), eta: undefined })).toContain('ETA --');
  });
});

describe('--progress as a setting', () => {
  it('FERRY_PROGRESS and the config file take the words the flag takes, and refuse others naming where', async () => {
    const { FLAG_CHOICES, loadSettings, parseConfig } = await import('../../../src/app/config.js');
    const { PROGRESS_MODES } = await import('../../../src/cli/globals.js');
    expect(FLAG_CHOICES['progress']).toEqual(PROGRESS_MODES);
    expect(loadSettings([], { FERRY_PROGRESS: ' json ', HOME: '/nonexistent' }).flags['progress']).toBe('json');
    expect(() => loadSettings([], { FERRY_PROGRESS: 'bar', HOME: '/nonexistent' })).toThrow(/FERRY_PROGRESS="bar" is not one of auto, plain, json, none/);
    expect(parseConfig('{"progress":"plain"}', '/etc/ferry.json').flags['progress']).toBe('plain');
    expect(() => parseConfig('{"progress":"fancy"}', '/etc/ferry.json')).toThrow(/\/etc\/ferry.json: progress must be one of auto, plain, json, none/);
  });
});
