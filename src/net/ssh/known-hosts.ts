import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { appendFile, readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { mkdirp } from '../../fsys/files.js';
import { nameMatcher } from '../../fsys/glob.js';

/**
 * OpenSSH's known_hosts, read the way ssh(1) reads it: plain and hashed
 * (`|1|salt|hash`, HMAC-SHA1 of the looked-up name) host patterns, wildcards
 * and negation, `[host]:port` for ports other than 22, and `@revoked` lines.
 * `@cert-authority` lines are skipped: ferry does not do host certificates.
 */

export type HostKeyVerdict =
  | { kind: 'known' }
  /** No line names this host. */
  | { kind: 'unknown' }
  /** Lines name this host, none with this key: a changed key (or a man in the middle). */
  | { kind: 'changed'; knownAt: string[] }
  | { kind: 'revoked'; knownAt: string[] };

interface Entry {
  marker: '' | '@revoked' | '@cert-authority';
  patterns: string;
  keyType: string;
  key: Buffer;
  where: string;
}

/** The name ssh looks up: `host` on port 22, `[host]:port` otherwise. */
export function hostLookupName(host: string, port: number): string {
  const bare = host.replace(/^\[|\]$/g, '');
  return port === 22 ? bare : `[${bare}]:${port}`;
}

/** `SHA256:<base64, no padding>` of the key blob: what ssh prints. */
export function fingerprint(key: Buffer): string {
  return `SHA256:${createHash('sha256').update(key).digest('base64').replace(/=+$/, '')}`;
}

/** The algorithm name at the head of an SSH public key blob (`ssh-ed25519`, …). */
export function keyTypeOf(key: Buffer): string {
  if (key.length < 4) return 'unknown';
  const len = key.readUInt32BE(0);
  if (len > 64 || key.length < 4 + len) return 'unknown';
  return key.subarray(4, 4 + len).toString('latin1');
}

function hashedMatch(pattern: string, name: string): boolean {
  const parts = pattern.split('|');
  if (parts.length !== 4 || parts[1] !== '1') return false;
  const salt = Buffer.from(parts[2]!, 'base64');
  const want = Buffer.from(parts[3]!, 'base64');
  const got = createHmac('sha1', salt).update(name).digest();
  return want.length === got.length && timingSafeEqual(want, got);
}

/** ssh's match_hostname: comma-separated patterns, a matching `!pattern` vetoes. */
export function patternsMatch(patterns: string, name: string): boolean {
  if (patterns.startsWith('|')) return hashedMatch(patterns, name);
  let matched = false;
  for (const p of patterns.split(',')) {
    const negated = p.startsWith('!');
    const pat = negated ? p.slice(1) : p;
    // ssh's match_pattern: `*` and `?` only, case-insensitive; `[host]:port` is literal.
    if (nameMatcher(pat, { nocase: true })(name)) {
      if (negated) return false;
      matched = true;
    }
  }
  return matched;
}

export function parseKnownHosts(text: string, file: string): Entry[] {
  const out: Entry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fields = line.split(/\s+/);
    let marker: Entry['marker'] = '';
    if (fields[0] === '@revoked' || fields[0] === '@cert-authority') marker = fields.shift() as Entry['marker'];
    const [patterns, keyType, b64] = fields;
    if (!patterns || !keyType || !b64) return; // ssh skips malformed lines too
    out.push({ marker, patterns, keyType, key: Buffer.from(b64, 'base64'), where: `${file}:${i + 1}` });
  });
  return out;
}

export class KnownHosts {
  private constructor(readonly file: string, private readonly entries: Entry[]) {}

  static async load(file: string): Promise<KnownHosts> {
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    return new KnownHosts(file, parseKnownHosts(text, file));
  }

  /** Key types recorded for this host, so the handshake can ask for one of them (as ssh does). */
  keyTypesFor(host: string, port: number): string[] {
    const name = hostLookupName(host, port);
    return [...new Set(this.entries.filter((e) => e.marker === '' && patternsMatch(e.patterns, name)).map((e) => e.keyType))];
  }

  check(host: string, port: number, key: Buffer): HostKeyVerdict {
    const name = hostLookupName(host, port);
    const revoked = this.entries.filter((e) => e.marker === '@revoked' && e.key.equals(key));
    if (revoked.length > 0) return { kind: 'revoked', knownAt: revoked.map((e) => e.where) };
    const forHost = this.entries.filter((e) => e.marker === '' && patternsMatch(e.patterns, name));
    if (forHost.some((e) => e.key.equals(key))) return { kind: 'known' };
    if (forHost.length === 0) return { kind: 'unknown' };
    return { kind: 'changed', knownAt: forHost.map((e) => e.where) };
  }

  /** Appends `name keytype base64` (what `StrictHostKeyChecking accept-new` does). */
  async add(host: string, port: number, key: Buffer): Promise<void> {
    await mkdirp(dirname(this.file), 0o700);
    let prefix = '';
    try {
      const cur = await readFile(this.file, 'utf8');
      if (cur.length > 0 && !cur.endsWith('\n')) prefix = '\n';
    } catch {
      // a new file
    }
    const entry: Entry = { marker: '', patterns: hostLookupName(host, port), keyType: keyTypeOf(key), key, where: `${this.file}:new` };
    await appendFile(this.file, `${prefix}${entry.patterns} ${entry.keyType} ${key.toString('base64')}\n`, { mode: 0o600 });
    this.entries.push(entry);
  }
}
