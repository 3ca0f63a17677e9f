// The failure matrix, local side (issue #14, "How to prove it"): every command that
// writes something × every way the place it writes to can fail — a read-only mount, a
// file where a folder should be, a full disk — and an interruption (SIGINT) mid-run.
// Each cell asserts the contract (failure-matrix-fixture.ts: the documented status, one
// schema-valid error document naming the place), that nothing looks complete that is
// not, and that the same command completes once the fault is gone, its result read by
// the real consumer (docker-registry serving the layout, skopeo) or an independent
// reader (test/support/validate.ts, cli-fixture's tar reader).
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, createWriteStream, existsSync, lstatSync, openSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FERRY_BIN, REPO_ROOT, runFerry, testStateHome, type FerryResult } from '../support/cli.js';
import { type Image, makeImage, makeStreamLayer } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry } from '../support/registry.js';
import { describeErrors, INVENTORY_ID, schemaErrors } from '../support/schemas.js';
import { skopeoOk } from '../support/skopeo.js';
import { startSshd, type SshdHandle } from '../support/sshd.js';
import { validateDirImage, validateOciLayout, validateRegistryImage } from '../support/validate.js';
import { type CliEnv, entry, ferryOk, readBundleTar, sha256File, startCliEnv } from './cli-fixture.js';
import { DISK_FAULTS, type DiskFault, type DiskFaultKind, expectFailure, leftovers } from './failure-matrix-fixture.js';
import { checkLayout } from './hostile-fixture.js';
import { makeSshHome, type SshHome } from './ssh-fixture.js';

let env: CliEnv;
let sshd: SshdHandle;
let home: SshHome;
let big: Image;
/** `HOST/repo:tag` of the three images every bundle here holds. */
let refs: string[];
/** repo:tag → digest, as a registry-layout import names them (host dropped). */
const expected = new Map<string, string>();
let bundle: string;
let base: string;
let delta: string;
let layout: string;
let oci: string;
let dirs: string;

beforeAll(async () => {
  [env, sshd] = await Promise.all([startCliEnv(0x3a7d), startSshd()]);
  home = makeSshHome(sshd);
  big = makeImage({ layers: [await makeStreamLayer({ seed: 0x3a7e, size: 1_200_000, compressible: false, files: 1 })], mediaTypes: 'oci' });
  await pushArtifact(env.reg.url, 'm/big', big, ['1']);
  const os = entry(env.corpus, 'library/base-os');
  const multi = entry(env.corpus, 'multi/arch');
  refs = [`${env.reg.host}/m/big:1`, `${env.reg.host}/library/base-os:1.0`, `${env.reg.host}/multi/arch:1.0`];
  expected.set('m/big:1', big.digest).set('library/base-os:1.0', os.digest).set('multi/arch:1.0', multi.digest);
  const cache = env.path('cache');
  bundle = env.path('rel.tar');
  base = env.path('base.tar');
  delta = env.path('delta.tar');
  await ferryOk(['export', ...refs, '-o', bundle, '--cache', cache, ...env.net, '-q']);
  await ferryOk(['export', ...refs.slice(1), '-o', base, '--cache', cache, ...env.net, '-q']);
  await ferryOk(['export', ...refs, '--since', base, '-o', delta, '--cache', cache, ...env.net, '-q']);
  [layout, oci, dirs] = [env.path('layout'), env.path('oci'), env.path('dirs')];
  for (const [kind, to] of [['registry-layout', layout], ['oci', oci], ['skopeo-dir', dirs]] as const) await ferryOk(['import', bundle, '--to', kind, to, '-q']);
}, 120_000);

afterAll(async () => {
  await Promise.all([env?.stop(), sshd?.stop(), home?.tmp.cleanup()]);
});

// ---------------------------------------------------------------- what a complete result looks like

/** A bundle file holding every blob of the three images, each entry hashing to its name (an independent tar reader). */
async function wholeBundle(file: string): Promise<void> {
  const entries = await readBundleTar(file);
  const blobs = new Map(entries.filter((e) => e.type === 'file' && e.name.startsWith('blobs/sha256/')).map((e) => [`sha256:${e.name.slice(13)}`, e.digest]));
  for (const [name, digest] of blobs) expect(digest, name).toBe(name);
  for (const d of [big.digest, ...big.blobs.map((b) => b.digest), ...expected.values()]) expect(blobs.has(d), `${d} in ${file}`).toBe(true);
}

/** docker-registry 2.8 serves the layout: every image walked blob by blob, one read by skopeo. */
async function servedLayout(root: string): Promise<void> {
  const reg = await startRegistry({ storageDir: root });
  try {
    for (const [ref, digest] of expected) {
      const [repo, tag] = ref.split(':') as [string, string];
      expect((await validateRegistryImage(reg.url, repo, tag)).digest, ref).toBe(digest);
    }
    const got = await skopeoOk(['inspect', '--tls-verify=false', '--raw', `docker://${reg.host}/m/big:1`]);
    expect(JSON.parse(got.stdout).layers[0].digest).toBe(big.layers[0]!.digest);
  } finally {
    await reg.stop();
  }
}

async function wholeDirs(root: string): Promise<void> {
  for (const [ref, digest] of expected) expect((await validateDirImage(join(root, ref))).digest, ref).toBe(digest);
  const got = await skopeoOk(['inspect', '--raw', `dir:${join(root, 'm/big:1')}`]);
  expect(JSON.parse(got.stdout).layers[0].digest).toBe(big.layers[0]!.digest);
}

async function wholeOci(root: string): Promise<void> {
  const walked = await validateOciLayout(root);
  for (const [ref, digest] of expected) expect(walked.get(ref)?.digest, ref).toBe(digest);
  const got = await skopeoOk(['inspect', '--raw', `oci:${root}:m/big:1`]);
  expect(JSON.parse(got.stdout).layers[0].digest).toBe(big.layers[0]!.digest);
}

async function wholeArchive(file: string, scratch: string): Promise<void> {
  const out = join(scratch, 'from-archive');
  await skopeoOk(['copy', `docker-archive:${file}:${env.reg.host}/m/big:1`, `dir:${out}`]);
  const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8')) as { config: { digest: string } };
  expect(m.config.digest).toBe(big.config.digest);
  expect(await sha256File(join(out, big.config.digest.slice(7)))).toBe(big.config.digest);
}

// ---------------------------------------------------------------- the writers

interface Writer {
  name: string;
  /** The disk faults that apply: a full disk only where there are bytes to fill it with. */
  faults: DiskFaultKind[];
  /** The command, writing under `out` (a path the fault sits on); `scratch` is a writable folder of the cell's own. */
  args(out: string, scratch: string): string[];
  env?(out: string): Record<string, string>;
  input?: string;
  /** What the failed run must not leave looking complete, under `out`. */
  incomplete?(out: string): void;
  complete(out: string, scratch: string, r: FerryResult): Promise<void> | void;
}

const ALL: DiskFaultKind[] = ['read-only', 'file-in-the-way', 'full-disk'];
const sshEnv = () => ({ HOME: home.home, SSH_AUTH_SOCK: '' });

const WRITERS: Writer[] = [
  {
    name: 'export -o', faults: ALL,
    args: (out, s) => ['export', ...refs, '-o', join(out, 'rel.tar'), '--cache', join(s, 'cache'), ...env.net],
    complete: (out) => wholeBundle(join(out, 'rel.tar')),
  },
  ...(['registry-layout', 'skopeo-dir', 'oci', 'bundle'] as const).map((kind): Writer => ({
    name: `export --from ${kind}`, faults: ['read-only', 'file-in-the-way'],
    args: (out, s) => ['export', '--from', `${kind}:${{ 'registry-layout': layout, 'skopeo-dir': dirs, oci, bundle }[kind]}`, '--registry-name', 'site.test', '-o', join(out, 'rel.tar'), '--cache', join(s, 'cache')],
    complete: (out) => wholeBundle(join(out, 'rel.tar')),
  })),
  {
    name: 'export --split', faults: ALL,
    args: (out, s) => ['export', ...refs, '-o', join(out, 'rel.tar'), '--split', '600KB', '--cache', join(s, 'cache'), ...env.net],
    complete(out) {
      // The list checks every volume (sha256sum, not ferry); then ferry reads the set whole.
      const check = execFileSync('sha256sum', ['-c', 'rel.sha256'], { cwd: out, encoding: 'utf8' });
      expect(check.trim().split('\n').length).toBeGreaterThanOrEqual(2);
    },
  },
  {
    name: 'export --since', faults: ['read-only', 'file-in-the-way'],
    args: (out, s) => ['export', ...refs, '--since', `${base}.ferry.json`, '-o', join(out, 'delta.tar'), '--cache', join(s, 'cache'), ...env.net],
    async complete(out) {
      const names = (await readBundleTar(join(out, 'delta.tar'))).map((e) => e.name);
      expect(names).toContain(`blobs/sha256/${big.layers[0]!.digest.slice(7)}`);
    },
  },
  {
    name: 'import --to registry-layout', faults: ALL,
    args: (out, s) => ['import', bundle, '--to', 'registry-layout', join(out, 'layout'), '--receipt', join(s, 'receipt.json')],
    incomplete(out) {
      expect(existsSync(join(out, 'layout/docker/registry/v2/repositories/m/big/_manifests/tags/1/current/link'))).toBe(false);
    },
    complete: (out) => servedLayout(join(out, 'layout')),
  },
  {
    name: 'import --to skopeo-dir', faults: ALL,
    args: (out, s) => ['import', bundle, '--to', 'skopeo-dir', join(out, 'dirs'), '--receipt', join(s, 'receipt.json')],
    incomplete(out) {
      expect(existsSync(join(out, 'dirs/m/big:1/manifest.json'))).toBe(false);
    },
    complete: (out) => wholeDirs(join(out, 'dirs')),
  },
  {
    name: 'import --to oci', faults: ALL,
    args: (out, s) => ['import', bundle, '--to', 'oci', join(out, 'oci'), '--receipt', join(s, 'receipt.json')],
    incomplete(out) {
      expect(existsSync(join(out, 'oci/index.json'))).toBe(false);
    },
    complete: (out) => wholeOci(join(out, 'oci')),
  },
  {
    name: 'import --to docker-archive', faults: ALL,
    args: (out, s) => ['import', bundle, '--to', 'docker-archive', join(out, 'images.tar'), '--receipt', join(s, 'receipt.json')],
    incomplete(out) {
      expect(existsSync(join(out, 'images.tar'))).toBe(false);
    },
    complete: (out, s) => wholeArchive(join(out, 'images.tar'), s),
  },
  ...([['--registry', () => env.reg.host], ['--layout', () => layout], ['--bundle', () => bundle]] as const).map(([flag, what]): Writer => ({
    name: `inventory ${flag}`, faults: ALL,
    args: (out) => ['inventory', flag, what(), '-o', join(out, 'site.inventory.json'), ...env.net],
    complete(out) {
      const inv = JSON.parse(readFileSync(join(out, 'site.inventory.json'), 'utf8')) as { images: { digest: string }[] };
      expect(describeErrors(schemaErrors(INVENTORY_ID, inv))).toBe('');
      for (const d of expected.values()) expect(inv.images.some((i) => i.digest === d), d).toBe(true);
    },
  })),
  {
    name: 'merge', faults: ALL,
    args: (out) => ['merge', base, delta, '-o', join(out, 'full.tar')],
    complete: (out) => wholeBundle(join(out, 'full.tar')),
  },
  {
    name: 'send', faults: ALL,
    args: (out) => ['send', bundle, `${home.alias}:${join(out, 'inbox')}/`],
    env: sshEnv,
    incomplete(out) {
      expect(existsSync(join(out, 'inbox/rel.tar')) && readdirSync(join(out, 'inbox')).length > 0 ? 'a bundle at its final name' : 'nothing').toBe('nothing');
    },
    async complete(out) {
      expect(await sha256File(join(out, 'inbox', bundle.split('/').at(-1)!))).toBe(await sha256File(bundle));
    },
  },
  {
    name: 'login', faults: ALL,
    args: () => ['login', env.reg.host, '-u', 'ferry', '--password-stdin', ...env.net],
    env: (out) => ({ DOCKER_CONFIG: join(out, 'docker') }),
    input: 'anything\n', // the registry asks for no credentials: any password passes its check
    complete(out) {
      const auths = (JSON.parse(readFileSync(join(out, 'docker', 'config.json'), 'utf8')) as { auths: Record<string, unknown> }).auths;
      expect(Object.keys(auths)).toContain(env.reg.host);
    },
  },
];

const cells = WRITERS.flatMap((writer) => writer.faults.map((fault) => ({ writer, fault })));

describe.concurrent('failure matrix: the place a command writes to fails', () => {
  for (const { writer, fault } of cells) {
    it(`${writer.name} × ${fault}`, async () => {
      const scratch = env.path(`${writer.name.replace(/\W+/g, '-')}-${fault}`);
      await mkdir(scratch);
      const faulty: DiskFault = DISK_FAULTS[fault].make(join(scratch, 'target'));
      try {
        const run = () => runFerry([...writer.args(faulty.path, scratch), '--json'], {
          ...(writer.env ? { env: writer.env(faulty.path) } : {}), ...(writer.input !== undefined ? { input: writer.input } : {}),
        });
        const r = await run();
        const err = expectFailure(r, { ...DISK_FAULTS[fault].expected, names: [faulty.path] }, `${writer.name} × ${fault}`);
        expect(err.message, 'says what is wrong with the place').toMatch(DISK_FAULTS[fault].says);
        expect(err.hint ?? '', 'says what to do').not.toBe('');
        writer.incomplete?.(faulty.path);
        expect(leftovers(faulty.path), 'temp files left').toEqual([]);
        expect(leftovers(scratch), 'temp files left').toEqual([]);

        faulty.remove();
        const ok = await run();
        expect(ok.code, `rerun of ${writer.name} × ${fault}:\n${ok.stdout}\n${ok.stderr}`).toBe(0);
        await writer.complete(faulty.path, scratch, ok);
      } finally {
        faulty.release();
      }
    });
  }
});

// ---------------------------------------------------------------- interrupted mid-run

/**
 * The bundle is fed through a FIFO, and SIGINT arrives once half of it has been read:
 * a point in the middle of the run every time (a local import is too quick to catch by
 * the clock). Then the same command, given the file, completes.
 */
const INTERRUPTED: { name: string; args(input: string, out: string): string[]; incomplete(out: string): Promise<void> | void; complete(out: string, scratch: string): Promise<void> }[] = [
  {
    name: 'import --to registry-layout',
    args: (input, out) => ['import', input, '--to', 'registry-layout', join(out, 'layout')],
    async incomplete(out) {
      expect((await checkLayout(join(out, 'layout'))).problems).toEqual([]);
    },
    complete: (out) => servedLayout(join(out, 'layout')),
  },
  {
    name: 'import --to skopeo-dir',
    args: (input, out) => ['import', input, '--to', 'skopeo-dir', join(out, 'dirs')],
    async incomplete(out) {
      for (const ref of expected.keys()) if (existsSync(join(out, 'dirs', ref, 'manifest.json'))) await validateDirImage(join(out, 'dirs', ref));
    },
    complete: (out) => wholeDirs(join(out, 'dirs')),
  },
  {
    name: 'import --to oci',
    args: (input, out) => ['import', input, '--to', 'oci', join(out, 'oci')],
    async incomplete(out) {
      if (existsSync(join(out, 'oci/index.json'))) await validateOciLayout(join(out, 'oci'));
    },
    complete: (out) => wholeOci(join(out, 'oci')),
  },
  {
    name: 'import --to docker-archive',
    args: (input, out) => ['import', input, '--to', 'docker-archive', join(out, 'images.tar')],
    incomplete(out) {
      expect(existsSync(join(out, 'images.tar'))).toBe(false);
    },
    complete: (out, s) => wholeArchive(join(out, 'images.tar'), s),
  },
  {
    name: 'verify',
    args: (input) => ['verify', input],
    incomplete: () => undefined,
    complete: async () => undefined,
  },
];

describe.concurrent('failure matrix: interrupted (SIGINT mid-run, as a child process), then rerun', () => {
  for (const cell of INTERRUPTED) {
    it(`${cell.name} × interrupt`, async () => {
      const scratch = env.path(`sigint-${cell.name.replace(/\W+/g, '-')}`);
      const out = join(scratch, 'target');
      await mkdir(out, { recursive: true });
      const fifo = join(scratch, 'rel.tar');
      execFileSync('mkfifo', [fifo]);
      await copyFile(`${bundle}.ferry.json`, `${fifo}.ferry.json`);
      const half = readFileSync(bundle).subarray(0, 900_000);
      let fed = false;
      // verify writes nothing, so it takes no --receipt.
      const receipt = (name: string): string[] => (cell.name === 'verify' ? [] : ['--receipt', join(scratch, name)]);
      const r = await runFerry([...cell.args(fifo, out), '--json', ...receipt('receipt.json')], {
        process: true,
        onSpawn: (child) => {
          // Writing to a FIFO completes only once the reader has taken the bytes: when this
          // callback runs, ferry has read 900 kB of the bundle and is mid-copy.
          const w = createWriteStream(fifo);
          w.on('error', () => undefined);
          w.write(half, () => {
            fed = true;
            child.kill('SIGINT');
            setTimeout(() => w.destroy(), 500);
          });
        },
      });
      expect(fed, 'ferry read the first half').toBe(true);
      expectFailure(r, { status: 130, codes: ['E_ABORTED'], names: ['SIGINT'] }, `${cell.name} × interrupt`);
      expect(leftovers(out), 'temp files left after a graceful stop').toEqual([]);
      await cell.incomplete(out);

      const ok = await runFerry([...cell.args(bundle, out), '--json', ...receipt('receipt2.json')]);
      expect(ok.code, `rerun of ${cell.name}:\n${ok.stdout}\n${ok.stderr}`).toBe(0);
      await cell.complete(out, scratch);
    });
  }
});

// ---------------------------------------------------------------- the output is the input
// An outside tester's first try: the bundle named as the output too. `import b.tar --to
// docker-archive b.tar` replaced the bundle with the archive and exited 0; `merge base
// delta -o delta` replaced the delta. Refused before the first byte, however spelled.
describe.concurrent('failure matrix: the output names an input', () => {
  const CELLS: { name: string; args(dir: string): string[]; input: string; fixed(dir: string): string[]; complete(dir: string): Promise<void> }[] = [
    {
      name: 'import --to docker-archive <the bundle>', input: 'rel.tar',
      args: (d) => ['import', join(d, 'rel.tar'), '--to', 'docker-archive', join(d, 'sub', '..', 'rel.tar')],
      fixed: (d) => ['import', join(d, 'rel.tar'), '--to', 'docker-archive', join(d, 'images.tar')],
      complete: (d) => wholeArchive(join(d, 'images.tar'), d),
    },
    {
      name: 'import --to docker-archive <its .ferry.json>', input: 'rel.tar.ferry.json',
      args: (d) => ['import', join(d, 'rel.tar'), '--to', 'docker-archive', join(d, 'rel.tar.ferry.json')],
      fixed: (d) => ['import', join(d, 'rel.tar'), '--to', 'docker-archive', join(d, 'images.tar')],
      complete: (d) => wholeArchive(join(d, 'images.tar'), d),
    },
    {
      name: 'merge -o <the delta>', input: 'delta.tar',
      args: (d) => ['merge', join(d, 'base.tar'), join(d, 'delta.tar'), '-o', join(d, 'delta.tar')],
      fixed: (d) => ['merge', join(d, 'base.tar'), join(d, 'delta.tar'), '-o', join(d, 'full.tar')],
      complete: (d) => wholeBundle(join(d, 'full.tar')),
    },
  ];
  for (const cell of CELLS) {
    it(cell.name, async () => {
      const d = env.path(`same-${cell.name.replace(/\W+/g, '-')}`);
      await mkdir(join(d, 'sub'), { recursive: true });
      // Copies: a regression here must not destroy the bundles the other cells share.
      for (const [f, name] of [[bundle, 'rel.tar'], [base, 'base.tar'], [delta, 'delta.tar']] as const) {
        await copyFile(f, join(d, name));
        await copyFile(`${f}.ferry.json`, join(d, `${name}.ferry.json`));
      }
      const before = await sha256File(join(d, cell.input));
      const r = await runFerry([...cell.args(d), '--json']);
      expectFailure(r, { status: 2, codes: ['E_USAGE'], names: [cell.input] }, cell.name);
      expect(await sha256File(join(d, cell.input)), 'the input is untouched').toBe(before);
      const ok = await runFerry([...cell.fixed(d), '--json']);
      expect(ok.code, `${ok.stdout}\n${ok.stderr}`).toBe(0);
      await cell.complete(d);
    });
  }
});

// ---------------------------------------------------------------- outputs that are not files
// `-o /dev/full` (as root) replaced the device with a regular file and exited 0; so did
// `--to docker-archive` at a FIFO. `-o - > /dev/full` died with an uncaught ENOSPC (a
// stack trace, exit 1), and `inspect > /dev/full` exited 0 having written nothing.

/** The CLI as a child process whose stdout is /dev/full (what `> /dev/full` does). */
function runToDevFull(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const fd = openSync('/dev/full', 'w');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [FERRY_BIN, ...args], {
      cwd: REPO_ROOT, env: { ...process.env, NO_COLOR: '1', XDG_STATE_HOME: testStateHome() }, stdio: ['ignore', fd, 'pipe'],
    });
    closeSync(fd);
    const err: Buffer[] = [];
    child.stderr?.on('data', (c: Buffer) => err.push(c));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stderr: Buffer.concat(err).toString('utf8') }));
  });
}

describe.concurrent('failure matrix: outputs that are not files', () => {
  for (const args of [(b: string) => ['export', '--from', `bundle:${b}`, '-o', '-', '-q'], (b: string) => ['inspect', b]]) {
    it(`${args('B').join(' ')} > /dev/full`, async () => {
      const r = await runToDevFull(args(bundle));
      expect(r.code, r.stderr).toBe(10);
      expect(r.stderr).toMatch(/\[E_NO_SPACE\].*no space left/);
      expect(r.stderr, 'no stack trace').not.toMatch(/\n\s+at /);
    });
  }

  const SPECIAL: { name: string; make(path: string): void; is(path: string): boolean }[] = [
    { name: 'a device', make: (p) => execFileSync('mknod', ['-m', '666', p, 'c', '1', '7']), is: (p) => lstatSync(p).isCharacterDevice() },
    { name: 'a pipe', make: (p) => execFileSync('mkfifo', [p]), is: (p) => lstatSync(p).isFIFO() },
  ];
  for (const special of SPECIAL) {
    for (const cmd of ['export -o', 'import --to docker-archive'] as const) {
      it(`${cmd} <${special.name}>`, async () => {
        const d = env.path(`special-${cmd.replace(/\W+/g, '-')}-${special.name.replace(/\W+/g, '-')}`);
        await mkdir(d, { recursive: true });
        const node = join(d, 'out');
        special.make(node);
        const args = (out: string): string[] => (cmd === 'export -o' ? ['export', '--from', `bundle:${bundle}`, '-o', out] : ['import', bundle, '--to', 'docker-archive', out]);
        const r = await runFerry([...args(node), '--json']);
        expectFailure(r, { status: 2, codes: ['E_USAGE'], names: [node] }, `${cmd} <${special.name}>`);
        expect(special.is(node), `${special.name} is still there`).toBe(true);
        const ok = await runFerry([...args(join(d, 'out.tar')), '--json']);
        expect(ok.code, `${ok.stdout}\n${ok.stderr}`).toBe(0);
        if (cmd === 'export -o') await wholeBundle(join(d, 'out.tar'));
        else await wholeArchive(join(d, 'out.tar'), d);
      });
    }
  }
});
