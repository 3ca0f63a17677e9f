import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { FerryError } from '../errors.js';

/**
 * Basic auth against an htpasswd file, as distribution's htpasswd auth does
 * it: bcrypt entries only (`htpasswd -B` writes `$2y$`; `$2a$`/`$2b$` are the
 * same algorithm), one `user:hash` a line. bcrypt is slow on purpose, and a
 * pull is dozens of requests with the same credentials, so a successful check
 * is remembered — by a sha256 of user and password, never the password itself.
 */

const BCRYPT_RE = /^\$2[aby]\$(0[4-9]|[12]\d|3[01])\$[./A-Za-z0-9]{53}$/;
/** bcrypt reads at most 72 bytes of a password; a longer one would be accepted on its prefix. */
const PASSWORD_MAX_BYTES = 72;
const REMEMBERED_MAX = 1024;

export class Htpasswd {
  private readonly remembered = new Set<string>();

  private constructor(readonly file: string, private readonly users: ReadonlyMap<string, string>) {}

  /** Reads and checks the whole file before the server listens: a bad line is an error, not a user who can never log in. */
  static async load(file: string): Promise<Htpasswd> {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      throw new FerryError('E_CONFIG', `--htpasswd ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, {
        hint: 'create it with `htpasswd -cB FILE USER` (apache2-utils)', details: { file },
      });
    }
    const users = new Map<string, string>();
    text.split('\n').forEach((raw, i) => {
      const line = raw.replace(/\r$/, '');
      if (line.trim() === '' || line.trimStart().startsWith('#')) return;
      const colon = line.indexOf(':');
      const user = line.slice(0, colon);
      const hash = line.slice(colon + 1);
      if (colon <= 0 || !BCRYPT_RE.test(hash)) {
        throw new FerryError('E_CONFIG', `--htpasswd ${file} line ${i + 1}: not "user:<bcrypt hash>"${colon > 0 ? ` (the entry for ${JSON.stringify(user.slice(0, 64))} is not bcrypt)` : ''}`, {
          hint: 'only bcrypt entries are accepted, as distribution\'s registry does: write them with `htpasswd -B FILE USER`', details: { file, line: i + 1 },
        });
      }
      if (users.has(user)) throw new FerryError('E_CONFIG', `--htpasswd ${file} line ${i + 1}: user ${JSON.stringify(user.slice(0, 64))} appears twice`, { hint: 'keep one entry per user', details: { file, line: i + 1 } });
      users.set(user, hash);
    });
    if (users.size === 0) throw new FerryError('E_CONFIG', `--htpasswd ${file}: no users`, { hint: 'add one with `htpasswd -B FILE USER`', details: { file } });
    return new Htpasswd(file, users);
  }

  /** The user an `Authorization: Basic …` header proves, or undefined. */
  async check(header: string | undefined): Promise<string | undefined> {
    const m = /^Basic\s+([A-Za-z0-9+/=]{1,1024})\s*$/i.exec(header ?? '');
    if (!m) return undefined;
    const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return undefined;
    const user = decoded.slice(0, colon);
    const password = decoded.slice(colon + 1);
    const hash = this.users.get(user);
    if (hash === undefined || Buffer.byteLength(password) > PASSWORD_MAX_BYTES) return undefined;
    const key = createHash('sha256').update(`${user}\0${password}\0${hash}`).digest('hex');
    if (this.remembered.has(key)) return user;
    // Loaded at the first check, not at start: every ferry process paid for it (ssh2.ts says how much).
    const { default: bcrypt } = await import('bcryptjs');
    const ok = await bcrypt.compare(password, hash);
    if (!ok) return undefined;
    if (this.remembered.size >= REMEMBERED_MAX) this.remembered.clear();
    this.remembered.add(key);
    return user;
  }
}
