// The exit status is the contract: a run that did not do what it was asked never
// exits 0, and with --json always answers with one document. These are the
// failures that used to end with status 0 and no answer: a target that cannot
// be written (the engine left the bundle stream piped into a verifier nobody
// read, so the process ran out of work mid-copy), a registry refusing or
// dropping uploads, and flag values yargs took as "no work".
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry, type FerryResult } from '../support/cli.js';
import { targetOf } from '../support/http.js';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { startProxy } from './registry-proxy.js';

let tmp: TempDir;
let reg: RegistryHandle;
let bundle: string;
let list: string;
const IMAGES = 4;

beforeAll(async () => {
  tmp = makeTempDir('ferry-exit-');
  reg = await startRegistry();
  const rng = new Rng(0x0e1);
  // Layers well over the stream buffers, so a destination failing mid-bundle leaves bytes in flight.
  const base = await makeLayer(rng.fork('base'), { size: 3_000_000, compressible: false });
  const refs: string[] = [];
  for (let i = 0; i < IMAGES; i++) {
    const own = await makeLayer(rng.fork(`own${i}`), { size: 2_000_000, compressible: false });
    await pushArtifact(targetOf(reg), `exit/app${i}`, makeImage({ layers: [base, own], mediaTypes: i % 2 ? 'docker' : 'oci', labels: { i: String(i) } }), ['1']);
    refs.push(`${reg.host}/exit/app${i}:1`);
  }
  list = join(tmp.path, 'images.list');
  writeFileSync(list, `${refs.join('\n')}\n`);
  bundle = join(tmp.path, 'b.tar');
  const r = await runFerry(['export', '-f', list, '-o', bundle, '--plain-http', reg.host, '--cache', join(tmp.path, 'cache'), '-q']);
  expect(r.code, r.stderr).toBe(0);
}, 120_000);

afterAll(async () => {
  await reg?.stop();
  await tmp?.cleanup();
});

function errorDoc(r: FerryResult): { code: string; exitStatus: number; message: string } {
  let doc: { error?: { code: string; exitStatus: number; message: string } };
  try {
    doc = JSON.parse(r.stdout) as typeof doc;
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.code}):\n${r.stdout}\n${r.stderr}`);
  }
  if (!doc.error) throw new Error(`no error document (exit ${r.code}):\n${r.stdout}`);
  expect(doc.error.exitStatus).toBe(r.code);
  return doc.error;
}

/** A read-only bind mount of a fresh directory: what root cannot write either. */
function readOnlyDir(name: string): { path: string; release(): void } {
  const path = join(tmp.path, name);
  mkdirSync(path);
  execFileSync('mount', ['--bind', path, path]);
  execFileSync('mount', ['-o', 'remount,ro,bind', path]);
  return { path, release: () => execFileSync('umount', [path]) };
}

describe('a target that cannot be written never exits 0', () => {
  for (const kind of ['registry-layout', 'skopeo-dir', 'oci', 'docker-archive']) {
    it(`import --to ${kind}: a file where the folder should be, and a read-only mount → E_IO with the error document`, async () => {
      const file = join(tmp.path, `${kind}-file`);
      writeFileSync(file, 'not a directory\n');
      const under = join(file, 'target');
      const r = await runFerry(['import', bundle, '--to', kind, under, '--json', '--receipt', join(tmp.path, `${kind}.receipt.json`)]);
      expect(r.code, r.stderr).not.toBe(0);
      expect(errorDoc(r).code).toBe('E_IO');

      const ro = readOnlyDir(`${kind}-ro`);
      try {
        // As a process: the status the shell sees, not only what main() returned.
        const p = await runFerry(['import', bundle, '--to', kind, join(ro.path, 'target'), '--json', '--receipt', join(tmp.path, `${kind}.ro.receipt.json`)], { process: true });
        expect(p.code, p.stderr).toBe(10);
        expect(errorDoc(p).code).toBe('E_IO');
      } finally {
        ro.release();
      }
    });
  }
});

describe('a registry that refuses or drops uploads never exits 0', () => {
  it('push to a read-only registry (405 on every upload): non-zero, error document naming the registry', async () => {
    const target = await startRegistry({ readOnly: true });
    try {
      const r = await runFerry(['push', bundle, '--to', target.host, '--plain-http', target.host, '--json', '--receipt', join(tmp.path, 'ro-push.json')], { process: true });
      expect(r.code, r.stderr).not.toBe(0);
      const e = errorDoc(r);
      expect(e.message).toContain(target.host);
    } finally {
      await target.stop();
    }
  });

  it('push through a link that drops mid-upload, five times: never exit 0; with the link back, a rerun lands everything', async () => {
    const target = await startRegistry();
    try {
      let drop = true;
      // Every blob upload body is cut off: the connection is reset when the upload's PUT or PATCH arrives.
      const proxy = await startProxy(target.url, { inject: (req) => (drop && /\/blobs\/uploads\//.test(req.url ?? '') && (req.method === 'PUT' || req.method === 'PATCH') ? 'reset' : undefined) });
      try {
        for (let i = 0; i < 5; i++) {
          const r = await runFerry(['push', bundle, '--to', proxy.host, '--plain-http', proxy.host, '--json', '--jobs', '2', '--receipt', join(tmp.path, `drop-${i}.json`)], { process: true });
          expect(r.code, `try ${i}: ${r.stderr}`).not.toBe(0);
          expect(['E_NETWORK', 'E_REGISTRY', 'E_PARTIAL']).toContain(errorDoc(r).code);
          // The command that failed is named (it said "import …" for a push).
          expect(errorDoc(r).message).toMatch(/^push .*: \d+ of \d+ images failed/);
        }
        drop = false;
        const ok = await runFerry(['push', bundle, '--to', proxy.host, '--plain-http', proxy.host, '--json', '--receipt', join(tmp.path, 'drop-ok.json')]);
        expect(ok.code, ok.stderr).toBe(0);
        const receipt = JSON.parse(ok.stdout) as { images: { status: string }[] };
        expect(receipt.images.filter((i) => i.status === 'done')).toHaveLength(IMAGES);
      } finally {
        await proxy.stop();
      }
    } finally {
      await target.stop();
    }
  }, 120_000);
});

describe('flag values are judged before anything runs (exit 2, naming the flag and the value)', () => {
  const cases: [string, string[]][] = [
    ['export --jobs abc', ['export', '-f', 'LIST', '-o', 'OUT', '--jobs', 'abc']],
    ['export --jobs 0', ['export', '-f', 'LIST', '-o', 'OUT', '--jobs', '0']],
    ['export --level x', ['export', '-f', 'LIST', '-o', 'OUT', '--level', 'x']],
    ['export --level 99', ['export', '-f', 'LIST', '-o', 'OUT', '--level', '99']],
    ['export --compression gzip', ['export', '-f', 'LIST', '-o', 'OUT', '--compression', 'gzip']],
    ['export -o with no value', ['export', '-f', 'LIST', '-o']],
    ['import --jobs abc', ['import', 'BUNDLE', '--to', 'oci', 'OUT', '--jobs', 'abc']],
    ['import --to with an empty target', ['import', 'BUNDLE', '--to', 'oci', '']],
    ['import --to nosuchkind', ['import', 'BUNDLE', '--to', 'nosuchkind', 'OUT']],
    // --platform picks docker load's one platform; any other kind lands them all, so it would be quietly ignored.
    ['import --to oci --platform', ['import', 'BUNDLE', '--to', 'oci', 'OUT', '--platform', 'linux/arm64']],
    ['import --to registry-layout --platform', ['import', 'BUNDLE', '--to', 'registry-layout', 'OUT', '--platform', 'linux/amd64']],
    ['push --jobs 1.5', ['push', 'BUNDLE', '--to', '127.0.0.1:1', '--jobs', '1.5']],
    ['push --flatten x', ['push', 'BUNDLE', '--to', '127.0.0.1:1', '--flatten', 'x']],
    ['push --on-existing-tag maybe', ['push', 'BUNDLE', '--to', '127.0.0.1:1', '--on-existing-tag', 'maybe']],
    ['verify --idle-timeout -5', ['verify', 'BUNDLE', '--idle-timeout', '-5']],
    ['verify --connect-timeout soon', ['verify', 'BUNDLE', '--connect-timeout', 'soon']],
    ['plan --jobs ""', ['plan', '-f', 'LIST', '--jobs', '']],
  ];
  for (const [name, template] of cases) {
    it(name, async () => {
      const out = join(tmp.path, `never-${name.replace(/\W+/g, '-')}`);
      const args = template.map((a) => (a === 'LIST' ? list : a === 'OUT' ? out : a === 'BUNDLE' ? bundle : a));
      const r = await runFerry([...args, '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      const e = errorDoc(r);
      expect(e.code).toBe('E_USAGE');
      const flag = [...template].reverse().find((a) => a.startsWith('--') && a !== '--json');
      if (flag && !name.includes('empty') && !name.includes('no value')) expect(e.message).toContain(flag);
      expect(existsSync(out), `${name} made ${out}`).toBe(false);
    });
  }

  it('in a real process (bin/ferry runs its one invocation without AsyncLocalStorage) a flag\'s error keeps its hint and details', async () => {
    const r = await runFerry(['verify', bundle, '--jobs', '0x10', '--json'], { process: true });
    expect(r.code).toBe(2);
    expect(errorDoc(r)).toMatchObject({ code: 'E_USAGE', hint: 'e.g. --jobs 16' });
  });

  it('a registry port outside 1-65535 is refused with exit 2 naming it, in a reference, a list and --to (URL parsing threw E_INTERNAL)', async () => {
    const refs = join(tmp.path, 'bad-port.list');
    writeFileSync(refs, '127.0.0.1:99999/x:1\n');
    for (const [code, args] of [
      ['E_REFERENCE', ['export', '127.0.0.1:99999/x:1', '-o', join(tmp.path, 'never-port.tar')]],
      // In a list, the error names the file and line.
      ['E_LIST_SYNTAX', ['export', '-f', refs, '-o', join(tmp.path, 'never-port.tar')]],
      ['E_USAGE', ['push', bundle, '--to', '127.0.0.1:65536/x']],
    ] as const) {
      const r = await runFerry([...args, '--json']);
      expect(r.code, r.stdout + r.stderr).toBe(2);
      expect(errorDoc(r).code).toBe(code);
      expect(errorDoc(r).message).toMatch(/99999|65536/);
      expect(existsSync(join(tmp.path, 'never-port.tar'))).toBe(false);
    }
  });

  it('a first component with capitals is a registry host by docker\'s rule everywhere: a host that does not resolve is E_NETWORK, not E_INTERNAL', async () => {
    const r = await runFerry(['export', 'NOSUCHHOST/x:1', '-o', join(tmp.path, 'never-upper.tar'), '--json']);
    expect(r.code, r.stdout + r.stderr).not.toBe(0);
    expect(errorDoc(r).code).not.toBe('E_INTERNAL');
    expect(errorDoc(r).message.toLowerCase()).toContain('nosuchhost');
  });

  it('FERRY_JOBS=abc and a config file with "jobs": "8" are refused the same way (E_CONFIG, exit 2)', async () => {
    const r = await runFerry(['inspect', bundle, '--json'], { env: { FERRY_JOBS: 'abc' } });
    expect(r.code).toBe(2);
    expect(errorDoc(r).message).toContain('FERRY_JOBS');
    const config = join(tmp.path, 'config.json');
    writeFileSync(config, '{"jobs": "8"}');
    const c = await runFerry(['inspect', bundle, '--json', '--config', config]);
    expect(c.code).toBe(2);
    expect(errorDoc(c).message).toContain('jobs');
  });
});

describe('two images on one tag are refused before the first byte, for every target', () => {
  it('the same repository path from two registries (host dropped on import): every kind refuses, listing the collision; nothing is written', async () => {
    const other = await startRegistry();
    try {
      // Another image under the same path and tag on a second registry.
      const rng = new Rng(0x0e2);
      await pushArtifact(targetOf(other), 'exit/app0', makeImage({ layers: [await makeLayer(rng, { size: 10_000 })], mediaTypes: 'oci' }), ['1']);
      const both = join(tmp.path, 'collide.tar');
      const e = await runFerry(['export', `${reg.host}/exit/app0:1`, `${other.host}/exit/app0:1`, '-o', both, '--plain-http', reg.host, '--plain-http', other.host, '--cache', join(tmp.path, 'cache'), '-q']);
      expect(e.code, e.stderr).toBe(0);
      // A docker archive keeps the registry in its names, so there it takes a rename onto one name to collide.
      for (const kind of ['registry-layout', 'skopeo-dir', 'oci', 'docker-archive']) {
        const target = join(tmp.path, `collide-${kind}`);
        const rename = kind === 'docker-archive' ? ['--rename', `${other.host}=${reg.host}`] : [];
        const r = await runFerry(['import', both, '--to', kind, target, ...rename, '--json', '--receipt', join(tmp.path, `collide-${kind}.json`)]);
        expect(r.code, `${kind}: ${r.stdout}`).toBe(2);
        const doc = errorDoc(r);
        expect(doc.code).toBe('E_USAGE');
        expect(doc.message).toContain('exit/app0:1');
        expect(doc.message).toContain(reg.host);
        expect(doc.message).toContain(other.host);
        expect(existsSync(target), `${kind}: nothing written`).toBe(false);
      }
      // A rename that keeps them apart lands both.
      const ok = await runFerry(['import', both, '--to', 'oci', join(tmp.path, 'collide-ok'), '--rename', `${other.host}/exit=other/exit`, '--json', '--receipt', join(tmp.path, 'collide-ok.json')]);
      expect(ok.code, ok.stdout).toBe(0);
    } finally {
      await other.stop();
    }
  });
});

describe('what is knowable before the first byte fails before the first byte', () => {
  /** Runs an export through a counting proxy: the error document, and how many blobs were fetched. */
  async function exportVia(args: string[], opts: { env?: Record<string, string> } = {}): Promise<{ r: FerryResult; blobGets: number }> {
    const proxy = await startProxy(reg.url);
    try {
      const refs = Array.from({ length: IMAGES }, (_, i) => `${proxy.host}/exit/app${i}:1`);
      const r = await runFerry(['export', ...refs, '--plain-http', proxy.host, '--json', ...args], opts);
      return { r, blobGets: proxy.log.filter((l) => l.method === 'GET' && l.path.includes('/blobs/')).length };
    } finally {
      await proxy.stop();
    }
  }

  it('-o into folders that do not exist yet: they are made, the export completes', async () => {
    const out = join(tmp.path, 'new', 'deeper', 'rel.tar');
    const { r } = await exportVia(['-o', out, '--cache', join(tmp.path, 'cache-new')]);
    expect(r.code, r.stdout).toBe(0);
    expect(existsSync(out)).toBe(true);
  });

  it('-o on a read-only mount, -o naming a directory, --cache on a read-only mount: refused, nothing fetched', async () => {
    const ro = readOnlyDir('export-ro');
    try {
      for (const args of [['-o', join(ro.path, 'rel.tar'), '--cache', join(tmp.path, 'c1')], ['-o', join(tmp.path, 'r1.tar'), '--cache', join(ro.path, 'cache')]]) {
        const { r, blobGets } = await exportVia(args);
        expect(r.code, r.stdout).toBe(10);
        expect(errorDoc(r).code).toBe('E_IO');
        expect(errorDoc(r).message).toContain(ro.path);
        expect(blobGets).toBe(0);
      }
    } finally {
      ro.release();
    }
    const { r, blobGets } = await exportVia(['-o', tmp.path, '--cache', join(tmp.path, 'c2')]);
    expect(r.code).toBe(2);
    expect(blobGets).toBe(0);
  });

  it('an output disk too small for the bundle: E_NO_SPACE with free and needed bytes, nothing fetched, nothing left; with room the rerun completes', async () => {
    const small = join(tmp.path, 'small');
    mkdirSync(small);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', small]);
    try {
      const { r, blobGets } = await exportVia(['-o', join(small, 'rel.tar'), '--cache', join(tmp.path, 'c3')]);
      expect(r.code, r.stdout).toBe(10);
      const e = errorDoc(r) as { code: string; message: string; details?: { freeBytes: number; neededBytes: number } };
      expect(e.code).toBe('E_NO_SPACE');
      expect(blobGets).toBe(0);
      const doc = JSON.parse(r.stdout) as { error: { details: { freeBytes: number; neededBytes: number } } };
      expect(doc.error.details.neededBytes).toBeGreaterThan(doc.error.details.freeBytes);
      const { readdirSync } = await import('node:fs');
      expect(readdirSync(small)).toEqual([]);
    } finally {
      execFileSync('umount', [small]);
    }
    const { r } = await exportVia(['-o', join(small, 'rel.tar'), '--cache', join(tmp.path, 'c3')]);
    expect(r.code, r.stdout).toBe(0);
  });

  it('--platform: an unknown value, and one no image has, are refused before any blob; --split that cannot be cut too', async () => {
    for (const [args, code] of [[['--platform', 'linux/amd46'], 2], [['--platform', 'linux'], 2], [['--split', '10'], 2]] as const) {
      const { r, blobGets } = await exportVia(['-o', join(tmp.path, 'p.tar'), '--cache', join(tmp.path, 'c4'), ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stdout}`).toBe(code);
      expect(errorDoc(r).message).toContain(args[0]);
      expect(blobGets).toBe(0);
    }
  });
});

describe('interrupted twice', () => {
  it('SIGTERM again and again: it leaves at once, still with exit 130 and exactly one error document', async () => {
    // A registry that accepts connections and never answers: the export is waiting when the signals come.
    const sockets: Socket[] = [];
    let connected!: () => void;
    const reached = new Promise<void>((resolve) => { connected = resolve; });
    const silent = createServer((s) => { sockets.push(s); connected(); });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    const host = `127.0.0.1:${(silent.address() as AddressInfo).port}`;
    const out = join(tmp.path, 'twice.tar');
    try {
      const r = await runFerry(['export', `${host}/exit/app0:1`, '-o', out, '--plain-http', host, '--json'], {
        onSpawn: (child) => {
          // Signals are not queued: sent back to back, two may arrive as one. Sent every millisecond
          // until the process is gone, the second one lands while the first is still being handled.
          void reached.then(() => {
            const t = setInterval(() => child.kill('SIGTERM'), 1);
            child.once('exit', () => clearInterval(t));
          });
        },
      });
      // The one answer is written before anything else happens; a signal landing while Node itself is
      // already tearing the process down can still end it as killed, after that answer.
      expect(JSON.parse(r.stdout).error.code, `${r.stdout}\n${r.stderr}`).toBe('E_ABORTED');
      if (r.signal === null) expect(r.code, r.stderr).toBe(130);
      else expect(r.signal).toBe('SIGTERM');
      expect(existsSync(out)).toBe(false);
    } finally {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
  });
});

describe('a target under /proc (a parent that answers ENOENT for ever)', () => {
  it('import and export fail at once with E_IO naming it (Node\'s recursive mkdir looped there, ignoring signals)', async () => {
    for (const args of [['import', bundle, '--to', 'registry-layout', '/proc/ferry-no-such'], ['import', bundle, '--to', 'docker-archive', '/proc/ferry-no-such/a.tar'], ['export', '-f', list, '-o', '/proc/ferry-no-such/x.tar', '--plain-http', reg.host]]) {
      const r = await runFerry([...args, '--json'], { timeoutMs: 30_000 });
      expect(r.code, r.stderr).toBe(10);
      const doc = errorDoc(r);
      expect(doc.code).toBe('E_IO');
      expect(doc.message).toContain('/proc/ferry-no-such');
    }
  });
});
