// Field use of the CLI: config file and FERRY_* variables, progress on a
// terminal (a real pseudo-terminal via script(1)) and on a pipe, and one JSON
// document from every command — errors included.
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NOT_SETTABLE, SETTABLE_FLAGS } from '../../src/app/config.js';
import { runFerry } from '../support/cli.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { ferryOnTerminal, type Screen, screenOf } from '../support/terminal.js';
import { type CliEnv, ferryOk, imagesList, jsonOf, startCliEnv, writeList } from './cli-fixture.js';

let env: CliEnv;
let list: string;
let bundle: string;

beforeAll(async () => {
  env = await startCliEnv(0xf1e2);
  list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
}, 120_000);
afterAll(async () => env?.stop());

/** What a pty 80 columns wide shows after `ferry ARGS`, and what did not fit. */
async function at80(args: string[]): Promise<{ code: number; output: string; screen: Screen }> {
  const t = await ferryOnTerminal(args, { columns: 80 });
  return { ...t, screen: screenOf(t.output, 80) };
}

const barLine = (screen: Screen, verb: string) => screen.lines.filter((l) => l.startsWith(`${verb} `)).at(-1) ?? '';

describe('progress', () => {
  it('on a pipe: the phases, a plan line, and a last line with percent; no bar and no escape codes', async () => {
    const r = await ferryOk(['export', '-f', list, '-o', env.path('p.tar'), '--cache', env.path('pcache'), ...env.net]);
    expect(r.stderr).toMatch(/^export: planning: reading manifests$/m);
    expect(r.stderr).toMatch(/^export: \d+ images, \d+ unique blobs, [\d.]+ \w+$/m);
    expect(r.stderr).toMatch(/^export: tagging \d+ images$/m);
    expect(r.stderr).toMatch(/^export: done 100%: [\d.]+ \w+ moved, (\d+)\/\1 blobs, [\d.]+ \w+\/s, \d+s$/m);
    expect(r.stderr).not.toMatch(/\x1b\[/);
    expect(r.stdout).toMatch(/bundle id /);
  }, 120_000);

  it('on a pipe with --quiet or --json: no progress at all', async () => {
    const q = await ferryOk(['export', '-f', list, '-o', env.path('q.tar'), '--cache', env.path('qcache'), ...env.net, '-q']);
    expect(q.stderr).toBe('');
    const j = await ferryOk(['verify', bundle, '--json']);
    expect(j.stderr).toBe('');
    expect(jsonOf(j)).toMatchObject({ bundle });
  }, 120_000);

  it('on a terminal 80 columns wide: a bar that fits — rate, ETA, blob count — and reaches 100 %; --json there prints only the document', async () => {
    const t = await at80(['export', '-f', list, '-o', env.path('t.tar'), '--cache', env.path('tcache'), ...env.net]);
    expect(t.code, t.output).toBe(0);
    expect(t.screen.clipped, 'characters of the bar cut off at the right edge').toBe(0);
    const bar = barLine(t.screen, 'export');
    expect(bar).toMatch(/^export done (\[█+\] )?100% \S+ \S+ [\d.]+ \w+\/s ETA 0s (\d+)\/\2 blobs$/);
    expect(t.output).toContain('\x1b[?25l'); // cursor hidden while the bar runs
    expect(t.output).not.toMatch(/^export: \d+ images, \d+ unique blobs/m);

    const j = await ferryOnTerminal(['verify', bundle, '--json']);
    expect(j.code, j.output).toBe(0);
    expect(j.output).not.toMatch(/verify (checking|done)/);
    expect(JSON.parse(j.output.replace(/\r\n/g, '\n'))).toMatchObject({ bundle });
  }, 120_000);

  it('a delta and a rerun: skipped blobs are shown apart, never counted as moved bytes', async () => {
    // The delta against the full bundle: all blobs are in the base, only manifests travel.
    const d = await at80(['export', '-f', list, '--since', bundle, '-o', env.path('d.tar'), '--cache', env.path('dcache'), ...env.net]);
    expect(d.code, d.output).toBe(0);
    expect(d.screen.clipped).toBe(0);
    const fetched = /\(([\d.]+ \w+) referenced, ([\d.]+ \w+|0 B) fetched\)/.exec(d.output)!;
    const bar = barLine(d.screen, 'export');
    expect(bar).toMatch(/^export done (\[█+\] )?100% 0\/0 B 0 B\/s ETA 0s (\d+)\/\2 blobs [\d.]+ \w+ skipped$/);
    expect(fetched[2]).toBe('0 B');

    // Importing the same bundle twice: the second run writes nothing and says so.
    const layout = env.path('rerun-layout');
    const first = await at80(['import', bundle, '--to', `registry-layout:${layout}`]);
    expect(first.code, first.output).toBe(0);
    expect(barLine(first.screen, 'import')).not.toContain('skipped');
    const again = await at80(['import', bundle, '--to', `registry-layout:${layout}`]);
    expect(again.code, again.output).toBe(0);
    expect(again.screen.clipped).toBe(0);
    expect(barLine(again.screen, 'import')).toMatch(/^import done (\[█+\] )?100% 0\/0 B 0 B\/s ETA 0s (\d+)\/\2 blobs [\d.]+ \w+ skipped$/);
  }, 120_000);

  it('--progress json with --json: JSON lines on stderr matching the schema, the one document on stdout', async () => {
    const r = await ferryOk(['export', '-f', list, '--since', bundle, '-o', env.path('j.tar'), '--cache', env.path('jc'), ...env.net, '--json', '--progress', 'json']);
    expect(jsonOf<{ bundleId: string }>(r).bundleId).toMatch(/^sha256:/);
    const events = r.stderr.trim().split('\n').map((l) => JSON.parse(l) as { type: string; phase?: string; bytes?: { done: number }; skipped?: { blobs: number } });
    for (const e of events) expect(describeErrors(schemaErrors(cliSchemaRef('progressEvent'), e))).toBe('');
    expect(events[0]).toMatchObject({ type: 'progress', phase: 'planning' });
    expect(events.map((e) => e.phase)).toEqual(expect.arrayContaining(['planning', 'blobs', 'manifests', 'tags', 'done']));
    expect(events.at(-1)).toMatchObject({ phase: 'done', bytes: { done: 0 } });
    expect(events.at(-1)!.skipped!.blobs).toBeGreaterThan(0);
    // The same from the environment, as a setting.
    const viaEnv = await ferryOk(['verify', bundle], { env: { FERRY_PROGRESS: 'json' } });
    expect(JSON.parse(viaEnv.stderr.trim().split('\n').at(-1)!)).toMatchObject({ type: 'progress', command: 'verify', phase: 'done' });
  }, 120_000);
});

describe('--json: one document from every command, errors too', () => {
  it('prints exactly one JSON document on stdout for each command', async () => {
    const out = (name: string) => env.path(name);
    const delta = out('delta.tar');
    const runs: [string, string[]][] = [
      ['export', ['export', '-f', list, '-o', out('j.tar'), '--cache', out('jcache'), ...env.net]],
      ['export --since', ['export', '-f', list, '--since', bundle, '-o', delta, '--cache', out('jcache'), ...env.net]],
      ['plan', ['plan', '-f', list, '--cache', out('jcache'), ...env.net]],
      ['inspect', ['inspect', bundle]],
      ['verify', ['verify', bundle]],
      ['import', ['import', bundle, '--to', 'oci', out('layout'), '--receipt', out('receipt.json')]],
      ['diff', ['diff', bundle, list, ...env.net]],
      ['inventory', ['inventory', '--bundle', bundle, '-o', out('inv.json')]],
      ['merge', ['merge', bundle, delta, '-o', out('m.tar')]],
    ];
    for (const [name, args] of runs) {
      const r = await runFerry([...args, '--json']);
      expect(r.code, `${name}: ${r.stderr}`).toBe(0);
      const doc = jsonOf(r);
      expect(typeof doc, name).toBe('object');
      expect(doc, name).not.toHaveProperty('error');
    }
  }, 120_000);

  it('prints errors as one JSON document with code and exit status, for each command', async () => {
    const missing = join(env.tmp.path, 'no-such.tar');
    const runs: [string, string[], string][] = [
      ['export', ['export', `${env.reg.host}/no/such:1`, '-o', env.path('x.tar'), '--cache', env.path('xc'), ...env.net], 'E_NOT_FOUND'],
      ['plan', ['plan', '-f', join(env.tmp.path, 'no-such.list')], 'E_USAGE'],
      ['inspect', ['inspect', missing], ''],
      ['verify', ['verify', missing], ''],
      ['import', ['import', missing, '--to', 'oci', env.path('l2')], ''],
      ['usage', ['frobnicate'], 'E_USAGE'],
    ];
    for (const [name, args, code] of runs) {
      const r = await runFerry([...args, '--json']);
      expect(r.code, name).not.toBe(0);
      const doc = jsonOf<{ error: { code: string; exitStatus: number; message: string } }>(r);
      expect(doc.error.exitStatus, name).toBe(r.code);
      if (code) expect(doc.error.code, name).toBe(code);
      expect(doc.error.message.length, name).toBeGreaterThan(0);
    }
  }, 120_000);
});

describe('config file and FERRY_* variables', () => {
  it('covers every global flag: settable by FERRY_* and the file, or deliberately not', async () => {
    const help = await ferryOk(['--help']);
    const flags = [...help.stdout.slice(help.stdout.indexOf('Global options:')).matchAll(/^\s+(?:-\w, )?--([a-z][a-z-]*)/gm)].map((m) => m[1]!);
    expect(flags).toContain('plain-http');
    for (const f of flags) expect(Object.hasOwn(SETTABLE_FLAGS, f) || NOT_SETTABLE.includes(f), `--${f} is neither in SETTABLE_FLAGS nor NOT_SETTABLE (src/app/config.ts)`).toBe(true);
  });

  it('pulls a registry through the mirror its config entry names; the bundle keeps the upstream name', async () => {
    const dir = env.path('conf');
    await mkdir(dir, { recursive: true });
    const config = join(dir, 'ferry.json');
    // upstream.invalid never resolves: only the mirror entry can make this work.
    await writeFile(config, JSON.stringify({ registries: { 'upstream.invalid:5000': { mirror: env.reg.host, plainHttp: true }, [env.reg.host]: { plainHttp: true } } }));
    const ref = `upstream.invalid:5000/${env.corpus.refs.find((r) => r.startsWith('library/base-os:'))!}`;
    const out = env.path('mirror.tar');
    const r = jsonOf<{ images: number }>(await ferryOk(['export', ref, '-o', out, '--cache', env.path('mc'), '--config', config, '--no-referrers', '--json']));
    expect(r.images).toBe(1);
    const inspected = jsonOf<{ images: { origin?: string; reference?: string }[] }>(await ferryOk(['inspect', out, '--json']));
    expect(JSON.stringify(inspected)).toContain('upstream.invalid:5000/library/base-os');
  }, 120_000);

  it('takes the default config file from $XDG_CONFIG_HOME and global flags from FERRY_*; the command line wins', async () => {
    const xdg = env.path('xdg');
    await mkdir(join(xdg, 'ferry'), { recursive: true });
    await writeFile(join(xdg, 'ferry', 'config.json'), JSON.stringify({ 'plain-http': [env.reg.host], json: true }));
    const viaFile = await ferryOk(['plan', '-f', list, '--cache', env.path('c1')], { env: { XDG_CONFIG_HOME: xdg } });
    expect(jsonOf<{ totals: { images: number } }>(viaFile).totals.images).toBe(env.corpus.refs.length);
    const human = await ferryOk(['plan', '-f', list, '--cache', env.path('c1'), '--no-json'], { env: { XDG_CONFIG_HOME: xdg } });
    expect(human.stdout).toMatch(/^IMAGE\s+SIZE/m);

    // Environment only; the credential variables (which are no flags) must not trip the strict parser.
    const viaEnv = await ferryOk(['plan', '-f', list, '--cache', env.path('c2')], {
      env: { FERRY_JSON: '1', FERRY_PLAIN_HTTP: `${env.reg.host},10.9.9.9:5000`, FERRY_JOBS: '2', FERRY_USERNAME: 'nobody', FERRY_PASSWORD: 'unused', XDG_CONFIG_HOME: env.path('none') },
    });
    expect(jsonOf<{ totals: { images: number } }>(viaEnv).totals.images).toBe(env.corpus.refs.length);
  }, 120_000);

  it('refuses a broken config file or variable with E_CONFIG naming it (as JSON when asked)', async () => {
    const bad = env.path('bad.json');
    await writeFile(bad, JSON.stringify({ registries: { 'harbor.corp': { cafile: 'x.pem' } } }));
    const r = await runFerry(['plan', '-f', list, '--config', bad, '--json']);
    expect(r.code).toBe(2);
    const doc = jsonOf<{ error: { code: string; message: string } }>(r);
    expect(doc.error.code).toBe('E_CONFIG');
    expect(doc.error.message).toContain(bad);
    expect(doc.error.message).toContain('cafile');

    const e = await runFerry(['plan', '-f', list], { env: { FERRY_JOBS: 'many', FERRY_JSON: 'true' } });
    expect(e.code).toBe(2);
    expect(jsonOf<{ error: { code: string; message: string } }>(e).error.message).toContain('FERRY_JOBS');
  }, 120_000);
});
