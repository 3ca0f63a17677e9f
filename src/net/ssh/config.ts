import { readdir, readFile } from 'node:fs/promises';
import { homedir, userInfo } from 'node:os';
import { basename, dirname, isAbsolute, join } from 'node:path';
import { FerryError } from '../../errors.js';
import { fileNameMatcher } from '../../fsys/glob.js';
import { patternsMatch } from './known-hosts.js';

/**
 * The part of ~/.ssh/config ferry honours: Host blocks with HostName, User,
 * Port, IdentityFile and ProxyJump, and Include. As in ssh_config(5), the first
 * value found for a keyword wins (IdentityFile accumulates), `Host` patterns
 * take wildcards and `!` negation, an Include inside a Host block applies only
 * where that block does, and `Match` blocks (which need ssh's full evaluator)
 * are skipped, Includes inside them too.
 */

export interface SshConfigBlock {
  patterns: string[];
  /** Set for blocks read through an Include inside a Host block: that block's patterns must match too. */
  within?: string[][];
  options: [keyword: string, value: string][];
}

export interface SshEndpoint {
  /** What the user typed (alias or host): known_hosts is looked up by `host`. */
  alias: string;
  host: string;
  port: number;
  user: string;
  identityFiles: string[];
  /** Comma-separated hops, as in ProxyJump; undefined for none. */
  proxyJump?: string;
}

const INCLUDE_DEPTH_MAX = 16;

/**
 * Parses one config text. `include` expands an Include argument to the files
 * it names (glob, `~`, relative to ~/.ssh) and reads them; without it, Include
 * lines are ignored.
 */
export async function parseSshConfig(text: string, include?: (arg: string) => Promise<{ path: string; text: string }[]>): Promise<SshConfigBlock[]> {
  const blocks: SshConfigBlock[] = [{ patterns: ['*'], options: [] }];
  await parseInto(text, blocks, [], 0, include);
  return blocks;
}

async function parseInto(text: string, blocks: SshConfigBlock[], within: string[][], depth: number, include?: (arg: string) => Promise<{ path: string; text: string }[]>): Promise<void> {
  let skipping = false;
  // The Host patterns in force in this file (none before its first Host line).
  let host: string[] | undefined;
  const open = (patterns: string[]): void => {
    blocks.push({ patterns, options: [], ...(within.length > 0 ? { within } : {}) });
  };
  if (within.length > 0) open(['*']);
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^(\S+?)(?:\s*=\s*|\s+)(.*)$/.exec(line);
    if (!m) continue;
    const keyword = m[1]!.toLowerCase();
    const value = m[2]!.trim();
    if (keyword === 'host') {
      skipping = false;
      host = splitArgs(value);
      open(host);
    } else if (keyword === 'match') {
      skipping = true;
    } else if (skipping) {
      continue;
    } else if (keyword === 'include') {
      if (!include) continue;
      if (depth >= INCLUDE_DEPTH_MAX) {
        throw new FerryError('E_CONFIG', `ssh config: Include nested deeper than ${INCLUDE_DEPTH_MAX} levels (a file including itself?)`, { hint: 'check the Include lines of ~/.ssh/config' });
      }
      const inner = host && !(host.length === 1 && host[0] === '*') ? [...within, host] : within;
      for (const arg of splitArgs(value)) {
        for (const file of await include(arg)) await parseInto(file.text, blocks, inner, depth + 1, include);
      }
      // Lines after the Include belong to the block it sat in again.
      if (host) open(host);
      else if (within.length > 0) open(['*']);
      else blocks.push({ patterns: ['*'], options: [] });
    } else {
      blocks[blocks.length - 1]!.options.push([keyword, unquote(value)]);
    }
  }
}

function splitArgs(value: string): string[] {
  return [...value.matchAll(/"([^"]*)"|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

function unquote(value: string): string {
  return value.length >= 2 && value.startsWith('"') && value.endsWith('"') ? value.slice(1, -1) : value;
}

function hostMatches(patterns: string[], alias: string): boolean {
  let matched = false;
  for (const p of patterns) {
    if (p.startsWith('!')) {
      if (patternsMatch(p.slice(1), alias)) return false;
    } else if (patternsMatch(p, alias)) {
      matched = true;
    }
  }
  return matched;
}

/** Splits `[user@]host[:port]` (host may be `[v6]`) or `ssh://[user@]host[:port]`. */
export function parseDestination(spec: string, what = '--ssh'): { user?: string; host: string; port?: number } {
  const s = spec.replace(/^ssh:\/\//, '').replace(/\/$/, '');
  const m = /^(?:([^@/\s]+)@)?(\[[^\]\s]+\]|[^:@/[\]\s]+)(?::(\d{1,5}))?$/.exec(s);
  if (!m) {
    throw new FerryError('E_USAGE', `${what} ${spec}: not a [user@]host[:port]`, { hint: 'e.g. --ssh ops@jump.corp.local or --ssh ops@10.0.0.5:2222' });
  }
  const out: { user?: string; host: string; port?: number } = { host: m[2]!.replace(/^\[|\]$/g, '') };
  if (m[1] !== undefined) out.user = m[1];
  if (m[3] !== undefined) {
    const port = Number(m[3]);
    if (port < 1 || port > 65535) throw new FerryError('E_USAGE', `${what} ${spec}: port ${port} is out of range`);
    out.port = port;
  }
  return out;
}

function expand(path: string, ep: { host: string; user: string; port: number; alias: string }): string {
  const home = homedir();
  const p = path.replace(/^~(?=\/|$)/, home);
  return p.replace(/%(.)/g, (all, c: string) => {
    switch (c) {
      case 'd': return home;
      case 'h': return ep.host;
      case 'n': return ep.alias;
      case 'p': return String(ep.port);
      case 'r': return ep.user;
      case 'u': return userInfo().username;
      case '%': return '%';
      default: return all;
    }
  });
}

/** Resolves a destination through the config blocks (command-line parts win, as with ssh). */
export function resolveEndpoint(spec: string, blocks: SshConfigBlock[], what = '--ssh'): SshEndpoint {
  const d = parseDestination(spec, what);
  const first = new Map<string, string>();
  const identity: string[] = [];
  for (const b of blocks) {
    if (!hostMatches(b.patterns, d.host) || (b.within ?? []).some((w) => !hostMatches(w, d.host))) continue;
    for (const [k, v] of b.options) {
      if (k === 'identityfile') identity.push(v);
      else if (!first.has(k)) first.set(k, v);
    }
  }
  const hostName = first.get('hostname');
  const host = hostName ? hostName.replace(/%h/g, d.host) : d.host;
  const portText = d.port ?? first.get('port');
  const port = portText === undefined ? 22 : Number(portText);
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new FerryError('E_CONFIG', `ssh config: Port ${String(portText)} for ${d.host} is not a port number`, { hint: 'fix the Port line in ~/.ssh/config' });
  }
  const user = d.user ?? first.get('user') ?? userInfo().username;
  const ep: SshEndpoint = { alias: d.host, host, port, user, identityFiles: [] };
  ep.identityFiles = identity.map((f) => expand(f, ep));
  const jump = first.get('proxyjump');
  if (jump !== undefined && jump.toLowerCase() !== 'none') ep.proxyJump = jump;
  return ep;
}

export async function loadSshConfig(file = join(homedir(), '.ssh', 'config')): Promise<SshConfigBlock[]> {
  const text = await readConfig(file);
  if (text === undefined) return [];
  // Relative Include paths are under ~/.ssh for the user's config (ssh_config(5)).
  const base = join(homedir(), '.ssh');
  return parseSshConfig(text, async (arg) => {
    const path = arg.replace(/^~(?=\/|$)/, homedir());
    const absolute = isAbsolute(path) ? path : join(base, path);
    const files = /[*?[]/.test(basename(absolute)) ? await globFiles(absolute) : [absolute];
    const out: { path: string; text: string }[] = [];
    for (const f of files) {
      const t = await readConfig(f);
      if (t !== undefined) out.push({ path: f, text: t });
    }
    return out;
  });
}

async function readConfig(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw new FerryError('E_CONFIG', `cannot read ${file}: ${(e as Error).message}`, { hint: 'check the file permissions', cause: e });
  }
}

/** The files a wildcard in the last path part names, in lexical order; none is not an error (as with ssh). */
async function globFiles(pattern: string): Promise<string[]> {
  const matches = fileNameMatcher(basename(pattern));
  const names = await readdir(dirname(pattern)).catch(() => [] as string[]);
  return names.filter(matches).sort().map((n) => join(dirname(pattern), n));
}
