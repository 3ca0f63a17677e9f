// npm run package: the offline install. The package is built (scripts/package.mjs; from
// the build `npm test` made first: --dist packs it, once checked to be of this tree, with
// the same files a fresh compile gives, which cost ~13 s of CPU more), checked with
// sha256sum -c, unpacked with tar, and its bin/ferry run under `unshare -n` (a network namespace with no network at all) with an empty HOME and a PATH holding only
// node — no npm, no node_modules of this checkout. Every module of the CLI loads there,
// the native zstd and ssh2 crypto addons included, and a bundle is inspected, verified and
// imported into an OCI layout that skopeo then reads.
import { execFile, spawn } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT, type FerryResult } from '../support/cli.js';
import { makeImage, makeLayer, Rng, type Image } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeo } from '../support/skopeo.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { ferryOk } from './cli-fixture.js';

const run = promisify(execFile);
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { version?: string; dev?: boolean; optional?: boolean }> };
const NAME = `ferry-${pkg.version}-linux-${process.arch}`;

let tmp: TempDir;
let reg: RegistryHandle;
let image: Image;
/** The unpacked package and the places the offline runs use. */
let pkgDir: string;
let outDir: string;
let work: string;
let emptyHome: string;
let nodeOnly: string;

beforeAll(async () => {
  tmp = makeTempDir('ferry-package-test-');
  outDir = join(tmp.path, 'out');
  const [built] = await Promise.all([
    run(process.execPath, [join(REPO_ROOT, 'scripts', 'package.mjs'), '--out', outDir, '--dist', join(REPO_ROOT, 'dist')], { cwd: REPO_ROOT, maxBuffer: 16 * 1024 * 1024 }),
    (async () => {
      reg = await startRegistry();
      image = makeImage({ layers: [await makeLayer(new Rng(0x9ac), { size: 300_000 })], mediaTypes: 'oci' });
      await pushArtifact(reg.url, 'offline/app', image, ['1.0']);
    })(),
  ]);
  expect(built.stdout).toContain(`${NAME}.tar.gz`);
  const unpacked = join(tmp.path, 'unpacked');
  mkdirSync(unpacked);
  await run('tar', ['-xzf', join(outDir, `${NAME}.tar.gz`), '-C', unpacked]);
  pkgDir = join(unpacked, NAME);
  work = join(tmp.path, 'work');
  emptyHome = join(tmp.path, 'home');
  nodeOnly = join(tmp.path, 'node-only');
  for (const d of [work, emptyHome, nodeOnly]) mkdirSync(d);
  symlinkSync(process.execPath, join(nodeOnly, 'node'));
  // The bundle is made here, online, by the checkout's ferry (zstd: the native addon is needed to read it).
  await ferryOk(['export', `${reg.host}/offline/app:1.0`, '-o', join(work, 'rel.tar.zst'), '--cache', join(tmp.path, 'cache'), '--plain-http', reg.host, '-q']);
}, 300_000);

afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

/** The packaged bin/ferry (or node with `nodeArgs`), with no network, an empty HOME and only node on PATH. */
function offline(args: string[], nodeArgs?: string[]): Promise<FerryResult> {
  const argv = nodeArgs ? ['node', ...nodeArgs] : [join(pkgDir, 'bin', 'ferry'), ...args];
  return new Promise((resolve, reject) => {
    const child = spawn('/usr/bin/unshare', ['-n', '--', ...argv], { cwd: work, env: { PATH: nodeOnly, HOME: emptyHome, NO_COLOR: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? 128, signal, stdout, stderr }));
  });
}

describe('npm run package', () => {
  it('writes NAME.tar.gz and NAME.tar.gz.sha256 that sha256sum -c accepts', async () => {
    expect(readdirSync(outDir).sort()).toEqual([`${NAME}.tar.gz`, `${NAME}.tar.gz.sha256`]);
    const { stdout } = await run('sha256sum', ['-c', `${NAME}.tar.gz.sha256`], { cwd: outDir });
    expect(stdout.trim()).toBe(`${NAME}.tar.gz: OK`);
  });

  it('--dist packs a build of this tree only: not one holding a file of no source, nor one missing a module', async () => {
    const pack = (dist: string) => run(process.execPath, [join(REPO_ROOT, 'scripts', 'package.mjs'), '--out', join(tmp.path, 'refused'), '--dist', dist], { cwd: REPO_ROOT }).then(() => 'packed', (e: { code: number; stderr: string }) => `${e.code} ${e.stderr.trim()}`);
    const stale = join(tmp.path, 'dist-stale');
    cpSync(join(REPO_ROOT, 'dist'), stale, { recursive: true });
    writeFileSync(join(stale, 'cli', 'gone.js'), 'export {};\n');
    expect(await pack(stale)).toBe(`1 package: ${stale} holds cli/gone.js of no source in src/ (an earlier build); rm -rf it and run npm run build`);
    rmSync(join(stale, 'cli', 'gone.js'));
    rmSync(join(stale, 'errors.js'));
    expect(await pack(stale)).toBe(`1 package: ${stale} has no errors.js for src/errors.ts; run npm run build`);
    expect(existsSync(join(tmp.path, 'refused'))).toBe(false);
  });

  it('holds the built CLI, README, spec, the licences, and exactly the production dependencies', () => {
    for (const f of ['bin/ferry', 'dist/cli/main.js', 'README.md', 'README.zh-CN.md', 'docs/cli.md', 'LICENSE', 'THIRD-PARTY-LICENSES.txt', 'spec/bundle.md', 'spec/cli-output.schema.json', 'package.json']) {
      expect(existsSync(join(pkgDir, f)), f).toBe(true);
    }
    expect(readFileSync(join(pkgDir, 'LICENSE'), 'utf8')).toContain('Apache License');
    const notices = readFileSync(join(pkgDir, 'THIRD-PARTY-LICENSES.txt'), 'utf8');
    const files = (readdirSync(pkgDir, { recursive: true }) as string[]);
    // ferry's own: compiled JavaScript only, no sources, no source maps (they would point at src/).
    expect(files.filter((f) => f.startsWith('src/') || (f.startsWith('dist/') && /\.(map|ts)$/.test(f)))).toEqual([]);
    for (const [path, entry] of Object.entries(lock.packages)) {
      if (path === '') continue;
      const there = existsSync(join(pkgDir, path, 'package.json'));
      if (entry.dev) {
        expect(there, `dev dependency ${path} shipped`).toBe(false);
        continue;
      }
      if (!there && entry.optional) continue;
      expect(there, `production dependency ${path} missing`).toBe(true);
      const own = readdirSync(join(pkgDir, path)).filter((f) => /^(licen[cs]e|copying|unlicense)/i.test(f));
      expect(own.length, `${path} has no licence file`).toBeGreaterThan(0);
      expect(notices).toContain(`@${entry.version} (`);
      expect(notices).toContain(`— ${path}\n`);
    }
    // The compiled addons, without their build trees and C sources; zstd's own licence kept.
    for (const addon of ['node_modules/zstd-napi/build/Release/binding.node', 'node_modules/ssh2/lib/protocol/crypto/build/Release/sshcrypto.node']) {
      expect(existsSync(join(pkgDir, addon)), addon).toBe(true);
    }
    expect(files.filter((f) => /node_modules\/(zstd-napi|ssh2|cpu-features)\/.*\.(cc|c|h|a|o|mk|gyp)$/.test(f))).toEqual([]);
    expect(existsSync(join(pkgDir, 'node_modules/zstd-napi/deps/zstd/LICENSE'))).toBe(true);
    const manifest = JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as Record<string, unknown>;
    expect(manifest).not.toHaveProperty('devDependencies');
    expect(manifest).not.toHaveProperty('scripts');
  });

  it('runs offline with only node: every module loads (native addons too), inspect, verify, import --to oci', async () => {
    // The namespace really has no network: the registry that served the export is unreachable from it.
    const pull = await offline(['export', `${reg.host}/offline/app:1.0`, '-o', 'x.tar', '--plain-http', reg.host, '--json']);
    expect(pull.code, pull.stderr + pull.stdout).toBe(3);
    expect((JSON.parse(pull.stdout) as { error: { code: string } }).error.code).toBe('E_NETWORK');

    const version = await offline(['--version']);
    expect(version.code, version.stderr).toBe(0);
    // ferry --version reports the zstd addon's library too: the native addon loaded without a network.
    expect(version.stdout.split('\n')[0]).toBe(`ferry ${pkg.version}`);
    expect(version.stdout).toMatch(/^zstd \d+\.\d+\.\d+ \(zstd-napi /m);

    const loads = await offline([], ['--input-type=module', '-e', `
      import { readdirSync } from 'node:fs';
      import { createRequire } from 'node:module';
      import { join } from 'node:path';
      import { pathToFileURL } from 'node:url';
      const root = ${JSON.stringify(pkgDir)};
      const walk = (d) => readdirSync(d, { withFileTypes: true }).flatMap((e) => e.isDirectory() ? walk(join(d, e.name)) : e.name.endsWith('.js') ? [join(d, e.name)] : []);
      let modules = 0;
      for (const f of walk(join(root, 'dist'))) { await import(pathToFileURL(f).href); modules++; }
      const require = createRequire(join(root, 'package.json'));
      const zstd = require('zstd-napi');
      const crypto = require('ssh2/lib/protocol/crypto.js');
      console.log(JSON.stringify({ modules, zstd: zstd.decompress(zstd.compress(Buffer.from('ok'))).toString(), sshBinding: crypto.bindingAvailable }));
    `]);
    expect(loads.code, loads.stderr).toBe(0);
    const loaded = JSON.parse(loads.stdout) as { modules: number; zstd: string; sshBinding: boolean };
    expect(loaded.modules).toBeGreaterThan(100);
    expect(loaded).toMatchObject({ zstd: 'ok', sshBinding: true });

    const inspect = await offline(['inspect', 'rel.tar.zst', '--json']);
    expect(inspect.code, inspect.stderr).toBe(0);
    expect(JSON.parse(inspect.stdout)).toMatchObject({ images: [expect.objectContaining({ digest: image.digest })] });
    const verify = await offline(['verify', 'rel.tar.zst']);
    expect(verify.code, verify.stderr).toBe(0);
    const imported = await offline(['import', 'rel.tar.zst', '--to', 'oci', 'layout', '--json']);
    expect(imported.code, imported.stderr).toBe(0);

    const index = JSON.parse(readFileSync(join(work, 'layout', 'index.json'), 'utf8')) as { manifests: { annotations?: Record<string, string> }[] };
    const refName = index.manifests[0]!.annotations!['org.opencontainers.image.ref.name']!;
    const raw = await skopeo(['inspect', '--raw', `oci:${join(work, 'layout')}:${refName}`]);
    expect(raw.code, raw.stderr).toBe(0);
    expect(JSON.parse(raw.stdout)).toEqual(JSON.parse(image.bytes.toString('utf8')));

    // A command that needs ssh2 loads it and fails only for want of a network.
    const send = await offline(['send', 'rel.tar.zst', '127.0.0.1:/srv/ferry/', '--json']);
    expect(send.code, send.stderr).toBe(3);
    // Only what ferry keeps on purpose: its blob cache and the import's receipt in the state folder.
    expect(readdirSync(emptyHome).filter((f) => f !== '.cache' && f !== '.local')).toEqual([]);
    expect(readdirSync(join(emptyHome, '.local'))).toEqual(['state']);
  }, 120_000);
});
