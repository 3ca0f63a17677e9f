// Oversized and memory-hungry files handed to ferry: inventories and .ferry.json sidecars
// (--since, diff), repair reports, config files, docker's config.json, .sha256 volume lists,
// image lists (file and stdin), and endless devices. Each is refused before it is read (or,
// for a device, once the read passes the cap) with an error naming the file, its size and
// the cap; a JSON document within its byte cap whose parse would take too much memory is
// refused before parsing. Peak RSS stays under 200 MiB in every case, the accepted large
// documents of a 20,000-image release included. Files past a cap are sparse: only their
// head is written, so the refusal cannot have come from reading them.
import { createHash } from 'node:crypto';
import { closeSync, openSync, writeSync, ftruncateSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { buildInventory, serialiseInventory } from '../../src/delta/inventory.js';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { targetOf } from '../support/http.js';
import { startRegistry } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { runTimed, type TimedResult } from './hostile-fixture.js';

const MiB = 1024 * 1024;
/** The project's bound for any command (the fixture's RSS_CEILING_KIB is the looser one of the older tests). */
const RSS_LIMIT_KIB = 200 * 1024;
const report = process.env.FERRY_ROBUSTNESS_REPORT ? (line: string) => process.stderr.write(`${line}\n`) : () => undefined;

let tmp: TempDir;
let small: string;
const file = (name: string) => join(tmp.path, name);
const digest = (s: string) => `sha256:${createHash('sha256').update(s).digest('hex')}`;

/** A sparse file of `size` bytes whose first bytes are `head`. */
function sparse(path: string, head: string, size: number): string {
  const fd = openSync(path, 'w');
  writeSync(fd, head);
  ftruncateSync(fd, size);
  closeSync(fd);
  return path;
}

/** A syntactically valid inventory with `extra` (a JSON text) as an unknown field: the id covers images and blobs only. */
function inventoryWith(extra: string, images = 1, blobs = 1): Buffer {
  const inv = buildInventory({
    source: { kind: 'registry', description: 'test' },
    images: Array.from({ length: images }, (_, i) => ({ repository: `registry.example.com/team-${i % 50}/app-${i}`, tag: `v1.${i}`, digest: digest(`m${i}`) as never })),
    blobs: Array.from({ length: blobs }, (_, i) => ({ digest: digest(`b${i}`) as never, size: 1_000_000 + i * 7919 })),
  });
  const text = serialiseInventory(inv).toString('utf8');
  return extra ? Buffer.from(`${text.trimEnd().slice(0, -1)},\n  "x": ${extra}\n}\n`) : Buffer.from(text);
}

/** `[{},{},…]` of about `bytes` bytes: 64 bytes of heap per 3 of text. */
const objects = (bytes: number) => `[${'{},'.repeat(Math.floor(bytes / 3))}{}]`;

beforeAll(async () => {
  tmp = makeTempDir('ferry-hostile-inputs-');
  small = file('small.inventory.json');
  await writeFile(small, inventoryWith(''));
});
afterAll(async () => {
  await tmp?.cleanup();
});

async function ferry(args: string[], opts: { env?: Record<string, string>; input?: string | Buffer } = {}): Promise<TimedResult> {
  const r = await runTimed([...args, '--json'], { cwd: tmp.path, env: { HOME: tmp.path, DOCKER_CONFIG: file('no-docker'), ...opts.env }, ...(opts.input !== undefined ? { input: opts.input } : {}), timeoutMs: 90_000 });
  report(`  ${args.join(' ').replaceAll(tmp.path, '…')}: exit ${r.code}, peak RSS ${Math.round((r.peakKiB ?? 0) / 1024)} MiB`);
  return r;
}

function expectRefused(r: TimedResult, code: string, path: string, patterns: RegExp[]): void {
  expect(r.signal, 'ferry was killed').toBeNull();
  expect(r.error?.code, `exit ${r.code}\n${r.stderr}\n${r.stdout.slice(0, 2000)}`).toBe(code);
  expect(r.code).toBe(EXIT_STATUS[code as keyof typeof EXIT_STATUS]);
  expect(r.error!.message).toContain(path);
  for (const p of patterns) expect(r.error!.message).toMatch(p);
  expect(r.error!.hint).toBeTruthy();
  expect(r.peakKiB, `peak RSS ${r.peakKiB} KiB`).toBeLessThan(RSS_LIMIT_KIB);
}

describe('inputs past their size cap are refused before they are read', () => {
  it('a 200 MiB inventory (diff, export --since): E_BUNDLE_INVALID naming file, size and cap', async () => {
    const big = sparse(file('big.inventory.json'), '{"format":"ferry-inventory","version":1,"blobs":[', 200 * MiB);
    expectRefused(await ferry(['diff', big, small]), 'E_BUNDLE_INVALID', big, [/200 MiB/, /32\.0 MiB/]);
    // Before the first byte: the registry named in the reference is never contacted (nothing listens there).
    expectRefused(await ferry(['export', '127.0.0.1:9/a/b:1', '--since', big, '-o', file('x.tar'), '--plain-http', '127.0.0.1:9']), 'E_BUNDLE_INVALID', big, [/200 MiB/]);
  });

  it('a 460 MiB .ferry.json (it crashed V8 with exit 133): E_BUNDLE_INVALID with an error document', async () => {
    const big = sparse(file('huge.tar.ferry.json'), '{"format":"ferry-bundle","version":1,"images":[', 460 * MiB);
    expectRefused(await ferry(['diff', big, small]), 'E_BUNDLE_INVALID', big, [/460 MiB/, /MiB/]);
  });

  it('a repair report, a config file, a docker config.json, a .sha256 list, an image list: each its code, naming file, size and cap', async () => {
    const repair = sparse(file('big.repair.json'), '{"format":"ferry-repair","version":1,"blobs":[', 40 * MiB);
    expectRefused(await ferry(['export', '127.0.0.1:9/a/b:1', '--repair', repair, '-o', file('r.tar'), '--plain-http', '127.0.0.1:9']), 'E_USAGE', repair, [/40\.0 MiB/, /24\.0 MiB/]);

    const config = sparse(file('big-config.json'), '{"jobs":4,"registries":{', 2 * MiB);
    expectRefused(await ferry(['inspect', small, '--config', config]), 'E_CONFIG', config, [/2\.00 MiB/, /1\.00 MiB/]);

    await mkdir(file('docker'), { recursive: true });
    const dockerConfig = sparse(file('docker/config.json'), '{"auths":{', 5 * MiB);
    expectRefused(await ferry(['export', '127.0.0.1:9/a/b:1', '-o', file('d.tar'), '--plain-http', '127.0.0.1:9'], { env: { DOCKER_CONFIG: file('docker') } }), 'E_CONFIG', dockerConfig, [/5\.00 MiB/, /4\.00 MiB/]);

    const volumes = sparse(file('big.sha256'), `${'a'.repeat(64)}  big.000.tar\n`, 5 * MiB);
    expectRefused(await ferry(['diff', volumes, small]), 'E_BUNDLE_INVALID', volumes, [/5\.00 MiB/, /4\.00 MiB/]);

    const list = sparse(file('big.list'), 'nginx:1.25\n', 10 * MiB);
    expectRefused(await ferry(['export', '-f', list, '-o', file('l.tar')]), 'E_USAGE', list, [/10\.0 MiB/, /8\.00 MiB/]);
  });

  it('endless input (stdin, /dev/zero) stops at the cap instead of exhausting memory', async () => {
    expectRefused(await ferry(['export', '-f', '-', '-o', file('s.tar')], { input: Buffer.alloc(9 * MiB, 0x0a) }), 'E_USAGE', '<stdin>', [/holds more than the 8\.00 MiB/]);
    expectRefused(await ferry(['diff', '/dev/zero', small]), 'E_USAGE', '/dev/zero', [/holds more than the 8\.00 MiB/]);
    expectRefused(await ferry(['inspect', small, '--config', '/dev/zero']), 'E_CONFIG', '/dev/zero', [/holds more than the 1\.00 MiB/]);
  });
});

describe('JSON within its byte cap whose parse would take too much memory is refused before parsing', () => {
  it('an inventory and a .ferry.json of millions of empty objects: refused, naming the file and the memory it would take', async () => {
    const inv = file('objects.inventory.json');
    await writeFile(inv, inventoryWith(objects(8 * MiB)));
    expectRefused(await ferry(['diff', inv, small]), 'E_BUNDLE_INVALID', inv, [/memory/, /64\.0 MiB/]);

    const meta = file('objects.tar.ferry.json');
    await writeFile(meta, `{"format":"ferry-bundle","version":1,"x":${objects(7 * MiB)}}`);
    expectRefused(await ferry(['diff', meta, small]), 'E_BUNDLE_INVALID', meta, [/memory/]);

    const repair = file('objects.repair.json');
    await writeFile(repair, `{"format":"ferry-repair","version":1,"x":${objects(20 * MiB)}}`);
    expectRefused(await ferry(['export', '127.0.0.1:9/a/b:1', '--repair', repair, '-o', file('o.tar'), '--plain-http', '127.0.0.1:9']), 'E_USAGE', repair, [/memory/]);
  });
});

describe('what a 20,000-image release needs is accepted, within the memory bound', () => {
  it('export --since an inventory of 20,000 images and 100,000 blobs (the site\'s whole registry)', async () => {
    const reg = await startRegistry();
    try {
      const rng = new Rng(0x1a7);
      await pushArtifact(targetOf(reg), 'site/app', makeImage({ layers: [await makeLayer(rng, { size: 4_000 })], mediaTypes: 'oci' }), ['2']);
      const big = file('release.inventory.json');
      const bytes = inventoryWith('', 20_000, 100_000);
      await writeFile(big, bytes);
      report(`  inventory of 20,000 images / 100,000 blobs: ${(bytes.length / MiB).toFixed(1)} MiB`);
      const r = await ferry(['export', `${reg.host}/site/app:2`, '--since', big, '-o', file('delta.tar'), '--plain-http', reg.host, '--cache', file('cache')]);
      expect(r.code, r.stderr + r.stdout.slice(0, 500)).toBe(0);
      expect(r.peakKiB).toBeLessThan(RSS_LIMIT_KIB);
    } finally {
      await reg.stop();
    }
  }, 120_000);

  it('the costliest documents the budget lets through still parse within the bound', async () => {
    // Just under the budget: empty objects (the costliest shape), and one long string near the byte cap.
    const objectsInv = file('under-budget.inventory.json');
    await writeFile(objectsInv, inventoryWith(objects(2.5 * MiB)));
    const stringInv = file('long-string.inventory.json');
    await writeFile(stringInv, inventoryWith(`"${'x'.repeat(23 * MiB)}"`));
    for (const f of [objectsInv, stringInv]) {
      const r = await ferry(['diff', f, small]);
      expect(r.code, `${f}: ${r.stderr}${r.stdout.slice(0, 500)}`).toBe(0);
      expect(r.peakKiB, f).toBeLessThan(RSS_LIMIT_KIB);
    }
  }, 120_000);
});
