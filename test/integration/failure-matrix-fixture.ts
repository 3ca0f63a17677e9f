// Shared by the failure-matrix files: the contract every cell asserts (one schema-valid
// error document, the documented exit status, the message naming what is concerned),
// faults on disk (a read-only bind mount, a file where a folder should be, a small
// tmpfs), and a fault proxy that can be switched off for the rerun, so the rerun goes
// to the same address the failed run did.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, statfsSync, writeFileSync } from 'node:fs';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { join } from 'node:path';
import { expect } from 'vitest';
import type { FerryResult } from '../support/cli.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { entriesUnder } from '../support/walk.js';

export interface ErrorDocument {
  code: string;
  exitStatus: number;
  message: string;
  hint?: string;
  details: Record<string, unknown>;
}

export interface Expected {
  /** The exit status spec/errors.md gives the code(s). */
  status: number;
  /** The codes that may explain this fault (one, or a few equivalent ones). */
  codes: readonly string[];
  /** Strings the message must contain: the file, image, digest or registry concerned. */
  names?: readonly string[];
}

/**
 * The contract of a failed run: never 0, the documented status, exactly one JSON
 * document on stdout — the error document, valid against the published schema — with
 * the same status, one of the expected codes, and a message naming what is concerned.
 */
export function expectFailure(r: FerryResult, want: Expected, label = ''): ErrorDocument {
  const where = `${label}\n--- stdout:\n${r.stdout.slice(0, 2000)}\n--- stderr:\n${r.stderr.slice(0, 2000)}`;
  expect(r.code, `exit status ${where}`).not.toBe(0);
  let doc: { error?: ErrorDocument };
  try {
    doc = JSON.parse(r.stdout) as typeof doc;
  } catch (e) {
    throw new Error(`stdout is not exactly one JSON document (${(e as Error).message}) ${where}`);
  }
  const errors = schemaErrors(cliSchemaRef('errorDocument'), doc);
  expect(errors, `${describeErrors(errors)} ${where}`).toEqual([]);
  const err = doc.error!;
  expect(err.exitStatus, `exitStatus in the document ${where}`).toBe(r.code);
  expect(want.codes, `code ${where}`).toContain(err.code);
  expect(r.code, `exit status ${where}`).toBe(want.status);
  for (const name of want.names ?? []) expect(err.message, `the message names ${name} ${where}`).toContain(name);
  return err;
}

/** `.ferry-tmp-*` (and merge spools, probes) anywhere under `dir`: what a failed run must not leave. */
export function leftovers(dir: string): string[] {
  return entriesUnder(dir, /^\.ferry-(tmp|merge|probe)-/);
}

// ---------------------------------------------------------------- faults on disk

export interface DiskFault {
  /** Where the command should write: under the fault. */
  path: string;
  /** Takes the fault away; the same path can then be written. */
  remove(): void;
  /** Releases anything still mounted (idempotent); for finally blocks. */
  release(): void;
}

/** `dir` made and bind-mounted read-only onto itself: what root cannot write either. */
export function readOnlyDir(dir: string): DiskFault {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['--bind', dir, dir]);
  execFileSync('mount', ['-o', 'remount,ro,bind', dir]);
  let mounted = true;
  const release = () => {
    if (!mounted) return;
    mounted = false;
    execFileSync('umount', [dir]);
  };
  return { path: dir, remove: release, release };
}

/** A regular file at `dir`, so that anything under it has a file where a folder should be. */
export function fileInTheWay(dir: string): DiskFault {
  writeFileSync(dir, 'a file where a folder should be\n');
  return { path: dir, remove: () => rmSync(dir, { force: true }), release: () => undefined };
}

/**
 * A full disk at `dir`: a small tmpfs whose every free byte a filler file takes, so
 * even a few bytes of JSON do not fit. Removing the fault deletes the filler and
 * grows the file system to 64 MiB.
 */
export function fullDisk(dir: string): DiskFault {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0755', 'tmpfs', dir]);
  const filler = join(dir, 'filler');
  const { bavail, bsize } = statfsSync(dir);
  writeFileSync(filler, Buffer.alloc(bavail * bsize));
  let mounted = true;
  return {
    path: dir,
    remove: () => {
      rmSync(filler);
      execFileSync('mount', ['-o', 'remount,size=64m', dir]);
    },
    release: () => {
      if (!mounted) return;
      mounted = false;
      execFileSync('umount', ['-l', dir]);
    },
  };
}

export type DiskFaultKind = 'read-only' | 'file-in-the-way' | 'full-disk';

/** Each fault, the error it must give, and what the message must say about it (not a bare errno, not "Failure"). */
export const DISK_FAULTS: Record<DiskFaultKind, { make(dir: string): DiskFault; expected: Omit<Expected, 'names'>; says: RegExp }> = {
  'read-only': { make: readOnlyDir, expected: { status: 10, codes: ['E_IO'] }, says: /read-only|permission denied|may not write/i },
  'file-in-the-way': { make: fileInTheWay, expected: { status: 10, codes: ['E_IO'] }, says: /a file (is )?where a folder should be|is not a directory|not a directory/i },
  'full-disk': { make: fullDisk, expected: { status: 10, codes: ['E_NO_SPACE'] }, says: /no space left|free, (this run|these files) needs? about/i },
};

// ---------------------------------------------------------------- a switchable fault proxy

export type Match = (req: IncomingMessage) => boolean;

export const isBlobGet: Match = (req) => (req.method === 'GET' || req.method === 'HEAD') && /\/blobs\/sha256:/.test(req.url ?? '');
export const isUpload: Match = (req) => /\/blobs\/uploads\//.test(req.url ?? '');
export const isManifestGet: Match = (req) => req.method === 'GET' && /\/manifests\//.test(req.url ?? '');
export const isPing: Match = (req) => (req.url ?? '').split('?')[0] === '/v2/';

export type Fault =
  /** The connection is dropped as the request arrives. */
  | { kind: 'reset'; match: Match }
  /** Half the body goes through, then the connection drops: the response's (downloads) or the request's (uploads). */
  | { kind: 'cut'; match: Match }
  /** Answered with this status and a registry error body, every time. */
  | { kind: 'status'; status: number; match: Match }
  /** The response body one byte every 100 ms: never silent for a second, never done. */
  | { kind: 'trickle'; match: Match }
  /** One byte of the response body changed: same size, another digest. */
  | { kind: 'flip'; match: Match }
  /** Never answered: `reached` is called with the request, the socket kept until the fault is switched off. */
  | { kind: 'hold'; match: Match; reached(req: IncomingMessage): void };

export interface FaultSwitch {
  host: string;
  url: string;
  /** The fault from now on; undefined for a well-behaved link. */
  set(fault: Fault | undefined): void;
  /** Sends requests to another upstream from now on (e.g. a read-only registry on the same storage). */
  route(upstream: string): void;
  /** Requests the fault was applied to. */
  hits: Array<{ method: string; path: string }>;
  stop(): Promise<void>;
}

export async function startFaultSwitch(upstream: string): Promise<FaultSwitch> {
  let target = new URL(upstream);
  let fault: Fault | undefined;
  const hits: FaultSwitch['hits'] = [];
  const held = new Set<Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const forward = (req: IncomingMessage, res: ServerResponse, body: (up: IncomingMessage) => void, requestBody: 'pipe' | 'cut' = 'pipe'): void => {
    const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers }, body);
    up.on('error', () => res.destroy());
    if (requestBody === 'pipe') {
      req.pipe(up);
      return;
    }
    // Half the request body, then the connection goes: an upload cut mid-way.
    const total = Number(req.headers['content-length'] ?? 0) || 64 * 1024;
    let seen = 0;
    req.on('data', (c: Buffer) => {
      seen += c.length;
      if (seen >= total / 2) {
        up.destroy();
        req.socket.destroy();
      } else up.write(c);
    });
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const f = fault;
    if (!f || !f.match(req)) {
      forward(req, res, (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
      });
      return;
    }
    hits.push({ method: req.method ?? '', path: req.url ?? '' });
    switch (f.kind) {
      case 'reset':
        req.socket.destroy();
        return;
      case 'hold':
        held.add(req.socket);
        req.resume();
        f.reached(req);
        return;
      case 'status':
        req.resume();
        res.writeHead(f.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ errors: [{ code: f.status === 405 ? 'UNSUPPORTED' : 'UNAVAILABLE', message: `injected ${f.status}`, detail: null }] }));
        return;
      case 'cut': {
        const hasBody = Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
        if (hasBody) {
          forward(req, res, (upRes) => {
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            upRes.pipe(res);
          }, 'cut');
          return;
        }
        forward(req, res, (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          const total = Number(upRes.headers['content-length'] ?? 0);
          let sent = 0;
          upRes.on('data', (c: Buffer) => {
            if (sent + c.length < total / 2) {
              res.write(c);
              sent += c.length;
              return;
            }
            res.write(c.subarray(0, Math.max(0, Math.floor(total / 2) - sent)), () => res.socket?.destroy());
            sent = total;
            upRes.destroy();
          });
          upRes.on('end', () => res.socket?.destroy());
        });
        return;
      }
      case 'trickle':
        forward(req, res, (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          const chunks: Buffer[] = [];
          upRes.on('data', (c: Buffer) => chunks.push(c));
          upRes.on('end', () => {
            const body = Buffer.concat(chunks);
            let i = 0;
            const t = setInterval(() => {
              if (res.destroyed || i >= body.length) {
                clearInterval(t);
                timers.delete(t);
                res.end();
                return;
              }
              res.write(body.subarray(i, ++i));
            }, 100);
            timers.add(t);
            res.on('close', () => {
              clearInterval(t);
              timers.delete(t);
            });
          });
        });
        return;
      case 'flip':
        forward(req, res, (upRes) => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          let flipped = false;
          upRes.on('data', (c: Buffer) => {
            if (!flipped && c.length > 0) {
              flipped = true;
              const copy = Buffer.from(c);
              copy[copy.length >> 1] = copy[copy.length >> 1]! ^ 0xff;
              res.write(copy);
            } else res.write(c);
          });
          upRes.on('end', () => res.end());
        });
        return;
    }
  };

  const server: Server = createServer(handle);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    url: `http://127.0.0.1:${port}`,
    hits,
    set(f) {
      fault = f;
      if (!f) {
        for (const s of held) s.destroy();
        held.clear();
      }
    },
    route(u) {
      target = new URL(u);
    },
    stop: () => new Promise<void>((r) => {
      for (const t of timers) clearInterval(t);
      for (const s of held) s.destroy();
      server.closeAllConnections();
      server.close(() => r());
    }),
  };
}

/** True when `path` (a file the command writes) exists: used to assert that nothing looks complete. */
export function present(path: string): boolean {
  return existsSync(path);
}
