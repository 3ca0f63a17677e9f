// Helpers for the hostile-input, interruption and load tests: run the built CLI under
// /usr/bin/time (peak RSS) as a child process, or in this process when a case is about
// the exit status and the error document, not memory; snapshot directory trees, and check what
// a target holds with code independent of src/ (every data file hashed, every link followed).
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { FERRY_BIN, REPO_ROOT, runFerryInProcess, testStateHome } from '../support/cli.js';

export const TIME = '/usr/bin/time';
/** Peak RSS allowed for any single ferry run in these tests (the memory test proves the streaming bound itself). */
export const RSS_CEILING_KIB = 250 * 1024;

export interface TimedResult {
  code: number;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Peak resident set of the ferry process, KiB (undefined when killed before time could report). */
  peakKiB?: number;
  /** The ferry error document of a --json run, when there is one. */
  error?: { code: string; exitStatus: number; message: string; hint?: string; details?: Record<string, unknown> };
}

export interface TimedOptions {
  cwd?: string;
  env?: Record<string, string | undefined>;
  input?: string | Buffer;
  timeoutMs?: number;
  onSpawn?: (child: ChildProcess) => void;
  /** Run without /usr/bin/time, so signals reach node itself (time would forward them, but its own exit status hides ferry's). */
  direct?: boolean;
}

/** Runs `node bin/ferry ARGS` (under /usr/bin/time unless `direct`), never throwing on exit status. */
export function runTimed(args: string[], opts: TimedOptions = {}): Promise<TimedResult> {
  if (!existsSync(FERRY_BIN)) return Promise.reject(new Error(`${FERRY_BIN} missing: run npm run build`));
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, NO_COLOR: '1', XDG_STATE_HOME: testStateHome(), ...(opts.env ?? {}) })) if (v !== undefined) env[k] = v;
  const argv = opts.direct ? [process.execPath, FERRY_BIN, ...args] : [TIME, '-f', 'FERRY_PEAK_RSS_KIB=%M', process.execPath, FERRY_BIN, ...args];
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { cwd: opts.cwd ?? REPO_ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 110_000);
    child.on('error', (e) => { clearTimeout(timer); reject(e); });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let stderr = Buffer.concat(err).toString('utf8');
      let peakKiB: number | undefined;
      const m = /FERRY_PEAK_RSS_KIB=(\d+)\s*$/.exec(stderr);
      if (m) {
        peakKiB = Number(m[1]);
        stderr = stderr.slice(0, m.index);
      }
      // time reports "Command exited with non-zero status N" on its own line; drop it, the code says it.
      stderr = stderr.replace(/Command (exited with non-zero status \d+|terminated by signal \d+)\n?$/, '');
      const stdout = Buffer.concat(out).toString('utf8');
      resolve(withErrorDocument({ code: code ?? 128, signal, stdout, stderr, ...(peakKiB !== undefined ? { peakKiB } : {}) }));
    });
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input);
    opts.onSpawn?.(child);
  });
}

/**
 * Runs ferry in this process (test/support/cli.ts), with the same result shape and
 * no `peakKiB`: for cases whose point is the exit status, the error document and
 * what was (not) written. A Node start-up per run costs ~0.3 s of CPU; cases that
 * prove a memory bound use runTimed.
 */
export async function runInProcess(args: string[], opts: Omit<TimedOptions, 'onSpawn' | 'direct'> = {}): Promise<TimedResult> {
  return withErrorDocument(await runFerryInProcess(args, opts));
}

function withErrorDocument(r: TimedResult): TimedResult {
  try {
    const doc = JSON.parse(r.stdout) as { error?: TimedResult['error'] };
    if (doc.error) r.error = doc.error;
  } catch {
    // not a --json run, or a partial document
  }
  return r;
}

/** Every path under `dir` (relative), with its type, size and — for links — target. Stable for comparison. */
export async function snapshotTree(dir: string, skip: (rel: string) => boolean = () => false): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(d, name);
      const rel = relative(dir, p);
      if (skip(rel)) continue;
      const st = await lstat(p);
      if (st.isSymbolicLink()) out.set(rel, `link -> ${await readlink(p)}`);
      else if (st.isDirectory()) {
        out.set(rel, 'dir');
        await walk(p);
      } else out.set(rel, `file ${st.size} ${st.mtimeMs}`);
    }
  };
  await walk(dir);
  return out;
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

export interface TargetScan {
  /** Content files checked (layout `data`, skopeo-dir blobs): path → digest. */
  blobs: Map<string, string>;
  /** Files whose content does not hash to the name they sit under. */
  wrong: string[];
  /** `.ferry-tmp-*` leftovers. */
  temps: string[];
  /** Symbolic links, devices, FIFOs: anything but plain files and directories. (Hard links are plain files: the skopeo-dir target shares a blob among images that way, and their content is hashed like any other.) */
  odd: string[];
  /** Image entry points: tag `current/link`s of a layout, `manifest.json`s of a skopeo dir. */
  entryPoints: string[];
}

/**
 * Walks a target ferry wrote. A registry layout's `blobs/sha256/xx/<hex>/data`
 * and a skopeo dir's `<hex>` / `<hex>.manifest.json` files are hashed and must
 * match their names: no blob may sit under its final name unverified.
 */
export async function scanTarget(dir: string): Promise<TargetScan> {
  const scan: TargetScan = { blobs: new Map(), wrong: [], temps: [], odd: [], entryPoints: [] };
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(d, name);
      const st = await lstat(p);
      if (name.startsWith('.ferry-tmp-')) scan.temps.push(relative(dir, p));
      if (st.isDirectory()) {
        await walk(p);
        continue;
      }
      if (!st.isFile()) {
        scan.odd.push(relative(dir, p));
        continue;
      }
      if (name === 'manifest.json' || (name === 'link' && d.endsWith('/current'))) scan.entryPoints.push(relative(dir, p));
      let expected: string | undefined;
      const parent = d.split('/');
      if (name === 'data' && parent.at(-3) === 'sha256' && /^[a-f0-9]{64}$/.test(parent.at(-1)!)) expected = `sha256:${parent.at(-1)}`;
      const hex = /^([a-f0-9]{64})(\.manifest\.json)?$/.exec(name);
      if (hex) expected = `sha256:${hex[1]}`;
      if (expected === undefined) continue;
      const got = await sha256File(p);
      scan.blobs.set(relative(dir, p), got);
      if (got !== expected) scan.wrong.push(`${relative(dir, p)} hashes to ${got}`);
    }
  };
  await walk(dir);
  return scan;
}

const LINK_RE = /^sha256:[a-f0-9]{64}$/;

export interface LayoutCheck {
  tags: Map<string, string>;
  problems: string[];
}

/**
 * The invariant an interrupted import must keep at every moment: each tag's
 * current/link names a manifest with a revision link and data; that manifest's
 * children (for an index), config and layers each have a `_layers` (or, for
 * children, revision) link in the repository and complete data.
 */
export async function checkLayout(root: string): Promise<LayoutCheck> {
  const v2 = join(root, 'docker', 'registry', 'v2');
  const problems: string[] = [];
  const tags = new Map<string, string>();
  const data = (d: string) => join(v2, 'blobs', 'sha256', d.slice(7, 9), d.slice(7), 'data');
  const readLink = async (p: string): Promise<string | undefined> => {
    try {
      const s = await readFile(p, 'utf8');
      if (!LINK_RE.test(s)) { problems.push(`${relative(root, p)}: not a link (${JSON.stringify(s.slice(0, 80))})`); return undefined; }
      return s;
    } catch {
      return undefined;
    }
  };
  const present = async (d: string): Promise<Buffer | undefined> => {
    try {
      const b = await readFile(data(d));
      const got = `sha256:${createHash('sha256').update(b).digest('hex')}`;
      if (got !== d) { problems.push(`${d}: data hashes to ${got}`); return undefined; }
      return b;
    } catch {
      return undefined;
    }
  };
  const repos: string[] = [];
  const findRepos = async (d: string, rel: string): Promise<void> => {
    let names: string[];
    try { names = await readdir(d); } catch { return; }
    if (names.includes('_manifests')) repos.push(rel);
    for (const n of names) if (!n.startsWith('_')) {
      const st = await lstat(join(d, n)).catch(() => undefined);
      if (st?.isDirectory()) await findRepos(join(d, n), rel ? `${rel}/${n}` : n);
    }
  };
  await findRepos(join(v2, 'repositories'), '');
  for (const repo of repos) {
    const rdir = join(v2, 'repositories', repo);
    const tagNames = await readdir(join(rdir, '_manifests', 'tags')).catch(() => [] as string[]);
    const visit = async (digest: string, via: string, depth: number): Promise<void> => {
      if (!(await readLink(join(rdir, '_manifests', 'revisions', 'sha256', digest.slice(7), 'link')))) problems.push(`${repo}: ${via} → manifest ${digest} has no revision link`);
      const bytes = await present(digest);
      if (!bytes) { problems.push(`${repo}: ${via} → manifest ${digest} has no data`); return; }
      const doc = JSON.parse(bytes.toString('utf8')) as { manifests?: { digest: string }[]; config?: { digest: string }; layers?: { digest: string }[] };
      if (doc.manifests && depth < 4) for (const c of doc.manifests) await visit(c.digest, `${via} → ${digest}`, depth + 1);
      for (const b of [...(doc.config ? [doc.config] : []), ...(doc.layers ?? [])]) {
        if (!(await readLink(join(rdir, '_layers', 'sha256', b.digest.slice(7), 'link')))) problems.push(`${repo}: ${via} → blob ${b.digest} has no _layers link`);
        if (!(await present(b.digest))) problems.push(`${repo}: ${via} → blob ${b.digest} has no data`);
      }
    };
    for (const t of tagNames) {
      if (t.startsWith('.ferry-tmp-')) continue;
      const cur = await readLink(join(rdir, '_manifests', 'tags', t, 'current', 'link'));
      if (!cur) continue; // a tag directory without current/link is not a tag the registry serves
      tags.set(`${repo}:${t}`, cur);
      await visit(cur, `${repo}:${t}`, 0);
    }
  }
  return { tags, problems };
}

/** Files (relative path → content digest) and link files (→ content) of a tree, ignoring receipts: for "same result" comparisons. */
export async function treeContent(root: string, ignore: (rel: string) => boolean = (r) => r.startsWith('ferry-receipts')): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const name of await readdir(d).catch(() => [] as string[])) {
      const p = join(d, name);
      const rel = relative(root, p);
      if (ignore(rel)) continue;
      const st = await lstat(p);
      if (st.isDirectory()) await walk(p);
      else out.set(rel, name === 'link' ? await readFile(p, 'utf8') : await sha256File(p));
    }
  };
  await walk(root);
  return out;
}

/** Describes the differences of two maps, for failure messages. */
export function diffMaps(a: Map<string, string>, b: Map<string, string>, limit = 20): string[] {
  const out: string[] = [];
  for (const [k, v] of a) if (b.get(k) !== v) out.push(`${k}: ${v} → ${b.get(k) ?? '(gone)'}`);
  for (const [k, v] of b) if (!a.has(k)) out.push(`${k}: (new) ${v}`);
  return out.slice(0, limit);
}

// ---------------------------------------------------------------- a fault proxy with full control

import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Upstream {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
}

/** Decides one request: return true when it answered `res` itself, false to forward unchanged. */
export type FaultHandler = (req: IncomingMessage, res: ServerResponse, ctx: { n: number; fetch: () => Promise<Upstream> }) => boolean | Promise<boolean>;

export interface FaultProxy {
  host: string;
  url: string;
  log: Array<{ method: string; path: string; headers: IncomingMessage['headers'] }>;
  stop(): Promise<void>;
}

/**
 * A loopback proxy in front of a real registry whose handler may answer any request
 * itself — partial bodies, stalls, resets, redirects — with the real answer at hand
 * (`fetch`). `n` counts requests with the same method and path, from 1. Sockets left
 * stalled are destroyed on stop.
 */
export async function startFaultProxy(upstream: string, handler: FaultHandler = () => false): Promise<FaultProxy> {
  const target = new URL(upstream);
  const seen = new Map<string, number>();
  const log: FaultProxy['log'] = [];
  const forward = (req: IncomingMessage, body: Buffer): Promise<Upstream> => new Promise((resolve, reject) => {
    const up = httpRequest({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, (r) => {
      const chunks: Buffer[] = [];
      r.on('data', (c: Buffer) => chunks.push(c));
      r.on('end', () => resolve({ status: r.statusCode ?? 502, headers: r.headers, body: Buffer.concat(chunks) }));
      r.on('error', reject);
    });
    up.on('error', reject);
    up.end(body);
  });
  const server: Server = createServer((req, res) => {
    const key = `${req.method} ${(req.url ?? '/').split('?')[0]}`;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    log.push({ method: req.method ?? '', path: req.url ?? '/', headers: req.headers });
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      void (async () => {
        try {
          if (await handler(req, res, { n, fetch: () => forward(req, body) })) return;
          const up = await forward(req, body);
          res.writeHead(up.status, up.headers);
          res.end(req.method === 'HEAD' ? undefined : up.body);
        } catch {
          res.destroy();
        }
      })();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    log,
    stop: () => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }),
  };
}
