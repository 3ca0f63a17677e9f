#!/usr/bin/env node
// npm run package [-- --out DIR] [--dist DIR]: a self-contained ferry-<version>-linux-<arch>.tar.gz that
// runs on a host with only Node.js ≥ 20 and no network — no npm install there. It holds the
// compiled CLI (built afresh, so no stale file of an earlier build slips in; or, with
// --dist, a build already made of this tree, such as the one `npm test` makes first, checked
// to hold exactly one file no older than its source per module of src/), bin/ferry,
// README, spec, ferry's LICENSE, and exactly the production dependencies of
// package-lock.json as installed here — the compiled zstd-napi addon and ssh2's optional
// native crypto included, their build intermediates and C sources left out — each with its
// licence files, all of them also gathered in THIRD-PARTY-LICENSES.txt. Beside the archive:
// NAME.tar.gz.sha256 for `sha256sum -c`.
//
// The archive is deterministic: entries sorted, owner 0, modes 0755/0644, every mtime the
// HEAD commit's time (or SOURCE_DATE_EPOCH), so the same tree gives the same sha256.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join, relative, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const outDir = outIndex >= 0 && args[outIndex + 1] ? args[outIndex + 1] : join(root, 'release');
const distIndex = args.indexOf('--dist');
const prebuilt = distIndex >= 0 ? args[distIndex + 1] : undefined;
if (distIndex >= 0 && !prebuilt) die('--dist needs the folder of a build (dist/ after npm run build)');

const LICENCE_NAME = /^(licen[cs]e|copying|notice|unlicense)([-._].*)?$/i;
/** What a native package needs only to compile its addon, which is shipped compiled. */
const NATIVE_SOURCE = /\.(c|cc|cpp|cxx|h|hh|hpp|gyp|gypi|mk|a|o)$|^Makefile$/;

function die(message) {
  console.error(`package: ${message}`);
  process.exit(1);
}

if (process.platform !== 'linux') die(`builds the Linux package only (this is ${process.platform}): the native addons are compiled for the host`);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
const name = `ferry-${pkg.version}-linux-${process.arch}`;

/** mtime of every entry: SOURCE_DATE_EPOCH, else the HEAD commit's time, so a rebuild of one commit is byte-identical. */
function sourceDate() {
  if (process.env.SOURCE_DATE_EPOCH) return new Date(Number(process.env.SOURCE_DATE_EPOCH) * 1000);
  try {
    return new Date(Number(execFileSync('git', ['log', '-1', '--format=%ct'], { cwd: root, encoding: 'utf8' }).trim()) * 1000);
  } catch {
    return new Date(0);
  }
}

/**
 * The production packages of package-lock.json (not `dev`; optional ones when installed), as
 * installed under node_modules: exactly what `npm ci --omit=dev` puts there. A version that
 * differs from the lock fails: the package must be what the lockfile says.
 */
function productionPackages() {
  const out = [];
  for (const [path, entry] of Object.entries(lock.packages ?? {})) {
    if (path === '' || entry.dev || entry.link) continue;
    const dir = join(root, path);
    if (!existsSync(join(dir, 'package.json'))) {
      if (entry.optional) continue;
      die(`${path} is a production dependency but is not installed; run npm ci`);
    }
    const installed = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
    if (installed.version !== entry.version) die(`${path} is ${installed.version} here but ${entry.version} in package-lock.json; run npm ci`);
    out.push({ path, dir, name: installed.name, version: installed.version, license: entry.license ?? installed.license ?? 'UNKNOWN', native: entry.hasInstallScript === true });
  }
  return out.sort((a, b) => a.path.localeCompare(b.path));
}

/**
 * Files of one package to ship. Nested node_modules are packages of their own; `.bin` is
 * npm's. In a native package, only the compiled `build/Release/*.node` of its build trees
 * go, and none of its C sources, headers and gyp files (`src/`, `deps/`, `*.cc`, …) —
 * licence files found among them excepted (zstd's own, in deps/).
 */
function packageFiles(p) {
  const files = [];
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = join(dir, entry.name);
      const rel = relative(p.dir, full).split(sep).join('/');
      if (entry.name === 'node_modules' || entry.name === '.bin') continue;
      if (entry.isSymbolicLink()) die(`${p.path}/${rel} is a symlink; the package holds files only`);
      if (entry.isDirectory()) {
        walk(full);
        continue;
      }
      if (p.native && !LICENCE_NAME.test(entry.name)) {
        if (/(^|\/)build\//.test(rel) && !/(^|\/)build\/Release\/[^/]+\.node$/.test(rel)) continue;
        if (/(^|\/)(src|deps)\//.test(rel) || NATIVE_SOURCE.test(entry.name)) continue;
      }
      files.push(rel);
    }
  };
  walk(p.dir);
  return files.sort();
}

function licenceTexts(p, files) {
  return files.filter((f) => LICENCE_NAME.test(basename(f)));
}

/** The tree to pack: [archive path, source file or Buffer, executable]. */
async function collect(distDir) {
  const entries = [];
  const addFile = (to, from) => entries.push({ to, from, exec: (statSync(from).mode & 0o111) !== 0 });
  const addTree = (to, from, keep = () => true) => {
    for (const e of readdirSync(from, { withFileTypes: true })) {
      const src = join(from, e.name);
      if (e.isDirectory()) addTree(`${to}/${e.name}`, src, keep);
      else if (e.isFile() && keep(e.name)) addFile(`${to}/${e.name}`, src);
    }
  };
  addFile('bin/ferry', join(root, 'bin', 'ferry'));
  addTree('dist', distDir, (n) => n.endsWith('.js')); // source maps point at src/, which is not shipped
  // A build made with source maps names them on its last line; the package is what a build without them is.
  if (prebuilt) {
    for (const e of entries) {
      if (e.to.startsWith('dist/')) e.from = Buffer.from(readFileSync(e.from, 'utf8').replace(/\/\/# sourceMappingURL=[^\n]*$/, ''));
    }
  }
  addTree('spec', join(root, 'spec'));
  addFile('README.md', join(root, 'README.md'));
  addFile('README.zh-CN.md', join(root, 'README.zh-CN.md'));
  addFile('docs/cli.md', join(root, 'docs', 'cli.md'));
  if (!existsSync(join(root, 'LICENSE'))) die('LICENSE (ferry\'s own) is missing');
  addFile('LICENSE', join(root, 'LICENSE'));
  const manifest = {
    name: pkg.name, version: pkg.version, description: pkg.description, type: pkg.type, license: pkg.license,
    bin: pkg.bin, engines: pkg.engines, dependencies: pkg.dependencies,
  };
  entries.push({ to: 'package.json', from: Buffer.from(`${JSON.stringify(manifest, null, 2)}\n`), exec: false });

  const notices = [`Third-party software in ${name}: every package under node_modules/, with its licence.\n`];
  const missing = [];
  for (const p of productionPackages()) {
    const files = packageFiles(p);
    for (const f of files) addFile(`${p.path}/${f}`, join(p.dir, f));
    const licences = licenceTexts(p, files);
    if (licences.length === 0) missing.push(p.path);
    notices.push(`\n${'='.repeat(78)}\n${p.name}@${p.version} (${p.license}) — ${p.path}\n${'='.repeat(78)}\n`);
    for (const l of licences) notices.push(`\n--- ${p.path}/${l}\n\n${readFileSync(join(p.dir, l), 'utf8').trimEnd()}\n`);
  }
  if (missing.length > 0) die(`no licence file in ${missing.join(', ')}: it cannot be shipped without one`);
  entries.push({ to: 'THIRD-PARTY-LICENSES.txt', from: Buffer.from(notices.join('')), exec: false });

  const glibc = process.report?.getReport?.().header?.glibcVersionRuntime;
  const info = {
    version: pkg.version, platform: 'linux', arch: process.arch, builtWith: { node: process.version, modules: process.versions.modules, napi: process.versions.napi, ...(glibc ? { glibc } : {}) },
  };
  entries.push({ to: 'BUILD-INFO.json', from: Buffer.from(`${JSON.stringify(info, null, 2)}\n`), exec: false });
  return entries;
}

/**
 * A build made before (--dist) is packed only when it is one of this tree: a .js per .ts of
 * src/ and no other, none older than its source. A file of a source deleted since, or a
 * source edited after the build, would otherwise ship.
 */
function checkBuild(distDir) {
  const list = (dir, ext, rel = '') => readdirSync(join(dir, rel), { withFileTypes: true }).flatMap((e) => {
    const r = rel ? `${rel}/${e.name}` : e.name;
    if (e.isDirectory()) return list(dir, ext, r);
    return e.isFile() && e.name.endsWith(ext) && !e.name.endsWith('.d.ts') ? [r.slice(0, -ext.length)] : [];
  });
  if (!existsSync(join(distDir, 'cli', 'main.js'))) die(`${distDir} holds no build (no cli/main.js); run npm run build`);
  const sources = new Set(list(join(root, 'src'), '.ts'));
  const built = list(distDir, '.js');
  const stale = built.filter((m) => !sources.has(m));
  if (stale.length > 0) die(`${distDir} holds ${stale.map((m) => `${m}.js`).join(', ')} of no source in src/ (an earlier build); rm -rf it and run npm run build`);
  const have = new Set(built);
  for (const m of sources) {
    if (!have.has(m)) die(`${distDir} has no ${m}.js for src/${m}.ts; run npm run build`);
    if (statSync(join(root, 'src', `${m}.ts`)).mtimeMs > statSync(join(distDir, `${m}.js`)).mtimeMs) die(`src/${m}.ts changed after ${distDir} was built; run npm run build`);
  }
}

async function writeArchive(entries, file, mtime) {
  const pack = tar.pack();
  const out = pipeline(pack, createGzip({ level: 9 }), createWriteStream(file));
  const dirs = new Set();
  for (const e of entries) {
    const parts = e.to.split('/');
    for (let i = 1; i < parts.length; i++) dirs.add(parts.slice(0, i).join('/'));
  }
  const all = [...[...dirs].map((d) => ({ to: d, dir: true })), ...entries].sort((a, b) => (a.to < b.to ? -1 : a.to > b.to ? 1 : 0));
  const header = { uid: 0, gid: 0, uname: '', gname: '', mtime };
  for (const e of all) {
    const path = `${name}/${e.to}`;
    if (e.dir) {
      pack.entry({ ...header, name: `${path}/`, type: 'directory', mode: 0o755 });
      continue;
    }
    const mode = e.exec ? 0o755 : 0o644;
    if (Buffer.isBuffer(e.from)) {
      pack.entry({ ...header, name: path, mode }, e.from);
      continue;
    }
    const size = statSync(e.from).size;
    await new Promise((resolve, reject) => {
      const entry = pack.entry({ ...header, name: path, mode, size }, (err) => (err ? reject(err) : resolve()));
      pipeline(createReadStream(e.from), entry).catch(reject);
    });
  }
  pack.finalize();
  await out;
}

async function sha256(file) {
  const h = createHash('sha256');
  for await (const c of createReadStream(file)) h.update(c);
  return h.digest('hex');
}

const started = Date.now();
if (prebuilt) checkBuild(prebuilt); // before the work folder: die() exits without the cleanup below
const work = mkdtempSync(join(tmpdir(), 'ferry-package-'));
try {
  // A fresh build: dist/ of the working tree may hold files of sources deleted since.
  const distDir = prebuilt ?? join(work, 'dist');
  if (!prebuilt) execFileSync(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(root, 'tsconfig.build.json'), '--outDir', distDir, '--sourceMap', 'false'], { cwd: root, stdio: 'inherit' });
  const entries = await collect(distDir);
  mkdirSync(outDir, { recursive: true });
  const file = join(outDir, `${name}.tar.gz`);
  const tmp = join(outDir, `.${name}.tar.gz.${process.pid}.tmp`);
  await writeArchive(entries, tmp, sourceDate());
  renameSync(tmp, file);
  const hex = await sha256(file);
  writeFileSync(`${file}.sha256`, `${hex}  ${basename(file)}\n`);
  const size = statSync(file).size;
  console.log(`${file}: ${entries.length} files, ${(size / 1024 / 1024).toFixed(1)} MiB, sha256 ${hex} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
  console.log(`check it with: cd ${outDir} && sha256sum -c ${basename(file)}.sha256`);
} finally {
  rmSync(work, { recursive: true, force: true });
  for (const f of existsSync(outDir) ? readdirSync(outDir) : []) if (f.startsWith(`.${name}.tar.gz.`) && f.endsWith('.tmp')) rmSync(join(outDir, f), { force: true });
}
