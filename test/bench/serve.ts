// `ferry serve` against docker-registry serving the same images, in the same run, with
// the same clients (see README.md here): concurrent pull throughput (N pullers, each
// pulling every image: manifests and every blob, over keep-alive connections) of
// ferry serve on the bundle, on its split volumes, and of docker-registry on the layout
// `ferry import` extracted; and the time to the first answer on startup — ferry serve
// from the bundle as it arrived (index built, then kept) against the import (extraction)
// plus docker-registry's start. Peak RSS of every server process (VmHWM).
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { join } from 'node:path';
import { freePort, REGISTRY_BIN } from '../support/registry.js';
import { table } from './report.js';
import { timedOk } from './runner.js';

export interface ServeBenchInput {
  ferry: string;
  bundle: string;
  /** `repo:tag` of every image the bundle holds (release 1). */
  refs: string[];
  work: string;
  reps: number;
  pullers: number;
  log: (line: string) => void;
}

interface Server {
  url: string;
  pid: number;
  /** Spawn → first 200 on /v2/, seconds. */
  firstAnswerS: number;
  stop(): Promise<void>;
}

export interface ServeBenchResult {
  markdown: string;
  rows: Record<string, unknown>[];
}

const ACCEPT = 'application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json';

function answers(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    request(`${url}/v2/`, { agent: false }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    }).on('error', () => resolve(false)).end();
  });
}

async function spawnServer(cmd: string, args: string[], url: string | ((out: string) => string | undefined)): Promise<Server> {
  const t0 = process.hrtime.bigint();
  const child: ChildProcess = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => { out += c.toString(); });
  child.stderr!.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  for (;;) {
    if (child.exitCode !== null) throw new Error(`${cmd} ${args.join(' ')} exited ${child.exitCode}: ${err.slice(-2000)}`);
    const u = typeof url === 'string' ? url : url(out);
    if (u !== undefined && await answers(u)) {
      const firstAnswerS = Number(process.hrtime.bigint() - t0) / 1e9;
      return {
        url: u, pid: child.pid!, firstAnswerS,
        async stop() {
          if (child.exitCode === null) child.kill('SIGTERM');
          await exited;
        },
      };
    }
    await new Promise((r) => setTimeout(r, 10));
  }
}

function peakRss(pid: number): number {
  return Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

function ferryServe(input: ServeBenchInput, files: string[]): Promise<Server> {
  return spawnServer(process.execPath, [input.ferry, 'serve', ...files, '--listen', '127.0.0.1:0', '--json', '--quiet', '--cache', join(input.work, 'serve-cache')], (out) => {
    try {
      return (JSON.parse(out) as { url: string }).url;
    } catch {
      return undefined;
    }
  });
}

async function dockerRegistry(root: string, dir: string): Promise<Server> {
  const port = await freePort();
  const config = join(dir, `registry-${port}.yml`);
  writeFileSync(config, ['version: 0.1', 'log:', '  level: error', '  accesslog:', '    disabled: true', 'storage:', '  filesystem:', `    rootdirectory: ${JSON.stringify(root)}`,
    'http:', `  addr: ${JSON.stringify(`127.0.0.1:${port}`)}`, ''].join('\n'));
  return spawnServer(REGISTRY_BIN, ['serve', config], `http://127.0.0.1:${port}`);
}

/** One puller: every image, manifests through index children, every blob read to the end (not hashed: the server is measured). */
async function pullAll(url: string, refs: string[], agent: Agent): Promise<number> {
  let bytes = 0;
  const fetch = (path: string, accept?: string, keep = true): Promise<Buffer> => new Promise((resolve, reject) => {
    request(new URL(path, url), { agent, headers: accept ? { Accept: accept } : {} }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (keep) chunks.push(c);
      });
      res.on('end', () => (res.statusCode === 200 ? resolve(Buffer.concat(chunks)) : reject(new Error(`${path}: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    }).on('error', reject).end();
  });
  const visit = async (repo: string, ref: string): Promise<void> => {
    const m = JSON.parse((await fetch(`/v2/${repo}/manifests/${ref}`, ACCEPT)).toString()) as { manifests?: { digest: string }[]; config?: { digest: string }; layers?: { digest: string }[] };
    for (const c of m.manifests ?? []) await visit(repo, c.digest);
    for (const b of [...(m.config ? [m.config] : []), ...(m.layers ?? [])]) await fetch(`/v2/${repo}/blobs/${b.digest}`, undefined, false);
  };
  for (const r of refs) {
    const colon = r.lastIndexOf(':');
    await visit(r.slice(0, colon), r.slice(colon + 1));
  }
  return bytes;
}

async function loadRound(url: string, refs: string[], pullers: number): Promise<{ wallS: number; bytes: number }> {
  const agents = Array.from({ length: pullers }, () => new Agent({ keepAlive: true, maxSockets: 1 }));
  const t0 = process.hrtime.bigint();
  try {
    const bytes = await Promise.all(agents.map((a) => pullAll(url, refs, a)));
    return { wallS: Number(process.hrtime.bigint() - t0) / 1e9, bytes: bytes.reduce((a, b) => a + b, 0) };
  } finally {
    for (const a of agents) a.destroy();
  }
}

const median = (v: number[]): number => {
  const s = [...v].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const mbps = (bytes: number, s: number): string => `${(bytes / s / 1e6).toFixed(0)} MB/s`;
const mib = (b: number): string => (b / 2 ** 20).toFixed(0);

export async function benchServe(input: ServeBenchInput): Promise<ServeBenchResult> {
  const dir = join(input.work, 'serve-bench');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const bundle = join(dir, 'rel.tar');
  // A copy, so the entry index is built fresh here and kept beside it.
  copyFileSync(input.bundle, bundle);
  const split = join(dir, 'split');
  mkdirSync(split);
  const size = statSync(bundle).size;
  await timedOk(process.execPath, [input.ferry, 'export', '--from', `bundle:${bundle}`, '-o', join(split, 'rel.tar'), '--split', String(Math.ceil(size / 4)), '--cache', join(dir, 'cache'), '-q']);

  const startup: Record<string, number[]> = { built: [], kept: [], importS: [], registryStart: [] };
  const load: Record<string, { wallS: number[]; bytes: number; rss: number }> = {};
  const note = (id: string, r: { wallS: number; bytes: number }, rss: number) => {
    const e = load[id] ??= { wallS: [], bytes: r.bytes, rss: 0 };
    e.wallS.push(r.wallS);
    e.rss = Math.max(e.rss, rss);
    input.log(`serve bench: ${id}: ${r.wallS.toFixed(2)} s for ${(r.bytes / 1e6).toFixed(0)} MB (${mbps(r.bytes, r.wallS)}), peak RSS ${mib(rss)} MiB`);
  };
  for (let rep = 1; rep <= input.reps; rep++) {
    input.log(`serve bench, repetition ${rep}/${input.reps}`);
    // Startup: the first start builds the entry index, the next ones keep it.
    rmSync(join(dir, 'rel.ferry-index.json'), { force: true });
    let s = await ferryServe(input, [bundle]);
    startup.built!.push(s.firstAnswerS);
    await s.stop();
    s = await ferryServe(input, [bundle]);
    startup.kept!.push(s.firstAnswerS);
    try {
      note('ferry serve (bundle)', await loadRound(s.url, input.refs, input.pullers), peakRss(s.pid));
    } finally {
      await s.stop();
    }
    s = await ferryServe(input, [join(split, 'rel.sha256')]);
    try {
      note('ferry serve (split bundle)', await loadRound(s.url, input.refs, input.pullers), peakRss(s.pid));
    } finally {
      await s.stop();
    }
    // docker-registry needs the layout first: the import is part of its time to first answer.
    const layout = join(dir, `layout-${rep}`);
    const imp = await timedOk(process.execPath, [input.ferry, 'import', bundle, '--to', 'registry-layout', layout, '-q']);
    startup.importS!.push(imp.wallS);
    const reg = await dockerRegistry(layout, dir);
    startup.registryStart!.push(reg.firstAnswerS);
    try {
      note('docker-registry (imported layout)', await loadRound(reg.url, input.refs, input.pullers), peakRss(reg.pid));
    } finally {
      await reg.stop();
      rmSync(layout, { recursive: true, force: true });
    }
  }
  const reg = load['docker-registry (imported layout)']!;
  const rows = Object.entries(load).map(([id, l]) => ({ id, wallS: median(l.wallS), bytes: l.bytes, bps: l.bytes / median(l.wallS), peakRssBytes: l.rss, vsRegistry: median(reg.wallS) / median(l.wallS) }));
  const firstRegistry = median(startup.importS!) + median(startup.registryStart!);
  const markdown = [
    `## ferry serve vs docker-registry (${input.pullers} concurrent pullers, each pulling every image; ${input.reps} repetition(s), medians)`, '',
    table(['server', 'wall s', 'throughput', 'vs docker-registry', 'peak RSS MiB'], rows.map((r) => [r.id, r.wallS.toFixed(2), mbps(r.bytes, r.wallS), `${r.vsRegistry.toFixed(2)}×`, mib(r.peakRssBytes)])), '',
    table(['time to first answer', 'seconds'], [
      ['ferry serve, first start (entry index built from the headers)', median(startup.built!).toFixed(2)],
      ['ferry serve, later start (entry index kept)', median(startup.kept!).toFixed(2)],
      ['ferry import → registry-layout + docker-registry start', `${firstRegistry.toFixed(2)} (${median(startup.importS!).toFixed(2)} + ${median(startup.registryStart!).toFixed(2)})`],
    ]), '',
    'ferry serve includes its startup checks (every header, every manifest and config hashed); its layers are verified on their first read, inside the measured load.',
  ].join('\n');
  rmSync(dir, { recursive: true, force: true });
  return { markdown, rows: [...rows, { startup: { built: median(startup.built!), kept: median(startup.kept!), import: median(startup.importS!), registryStart: median(startup.registryStart!) } }] };
}
