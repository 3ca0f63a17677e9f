import { spawnSync } from 'node:child_process';
import { FerryError } from '../errors.js';

/**
 * Docker credential helpers (`docker-credential-<name>`, e.g. pass,
 * secretservice, osxkeychain, desktop), run as docker runs them: one program
 * call per operation, the argument `get`, `store`, `erase` or `list`, the input
 * on stdin — the server URL for get and erase, `{"ServerURL","Username","Secret"}`
 * for store — and JSON on stdout. A helper reports a failure on stdout with a
 * non-zero exit; "credentials not found in native keychain" means none (so does
 * an empty answer, which some versions of the pass helper give instead).
 *
 * Runs are synchronous: credentials are looked up while a registry client is
 * built, before any transfer, and a helper answers in well under a second.
 * Nothing a helper prints reaches a message unless it is free of the secret.
 */

export interface HelperCredentials {
  /** `<token>` with an identity token as the secret (docker's convention). */
  username: string;
  secret: string;
}

export type Env = Record<string, string | undefined>;

/** Long enough for a keychain that asks for its passphrase; a helper that hangs is stopped. */
const HELPER_TIMEOUT_MS = 60_000;
const NOT_FOUND = /credentials not found in native keychain/i;
/** Helper output shown in a message: one line, bounded. */
const SHOWN_MAX = 200;

export class CredentialHelper {
  readonly program: string;

  /**
   * @param name the helper's name as config.json gives it (`pass` → docker-credential-pass)
   * @param configuredIn where it was named, for messages (`credsStore in /root/.docker/config.json`)
   */
  constructor(readonly name: string, private readonly configuredIn: string, private readonly env: Env = process.env) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) {
      throw new FerryError('E_CONFIG', `${configuredIn} names the credential helper ${JSON.stringify(name.slice(0, 60))}, which is not a helper name`, {
        hint: 'a helper is named by the part after docker-credential- (e.g. "pass"); fix the entry',
      });
    }
    this.program = `docker-credential-${name}`;
  }

  /** The credentials stored for `serverUrl`, or undefined when the helper has none. */
  get(serverUrl: string): HelperCredentials | undefined {
    const r = this.run('get', serverUrl, []);
    if (!r.ok) {
      if (NOT_FOUND.test(r.stdout)) return undefined;
      throw this.failure('get', serverUrl, r, []);
    }
    let doc: { Username?: unknown; Secret?: unknown };
    try {
      doc = JSON.parse(r.stdout) as typeof doc;
    } catch {
      throw this.protocolError('get', serverUrl);
    }
    if (typeof doc !== 'object' || doc === null || typeof doc.Secret !== 'string' || (doc.Username !== undefined && typeof doc.Username !== 'string')) {
      throw this.protocolError('get', serverUrl);
    }
    const username = (doc.Username) ?? '';
    if (doc.Secret === '' && username === '') return undefined;
    return { username, secret: doc.Secret };
  }

  store(serverUrl: string, username: string, secret: string): void {
    const r = this.run('store', JSON.stringify({ ServerURL: serverUrl, Username: username, Secret: secret }), [secret]);
    if (!r.ok) throw this.failure('store', serverUrl, r, [secret]);
  }

  erase(serverUrl: string): void {
    const r = this.run('erase', serverUrl, []);
    if (!r.ok && !NOT_FOUND.test(r.stdout)) throw this.failure('erase', serverUrl, r, []);
  }

  /** Server URL → user name of everything the helper holds (no secrets). */
  list(): Record<string, string> {
    const r = this.run('list', '', []);
    if (!r.ok) throw this.failure('list', undefined, r, []);
    try {
      const doc = JSON.parse(r.stdout) as unknown;
      if (typeof doc === 'object' && doc !== null && !Array.isArray(doc)) {
        return Object.fromEntries(Object.entries(doc).filter((e): e is [string, string] => typeof e[1] === 'string'));
      }
    } catch {
      // fall through
    }
    throw this.protocolError('list', undefined);
  }

  private run(op: string, input: string, secrets: string[]): { ok: boolean; stdout: string; stderr: string } {
    const r = spawnSync(this.program, [op], {
      input, env: this.env, encoding: 'utf8', timeout: HELPER_TIMEOUT_MS, killSignal: 'SIGKILL',
      stdio: ['pipe', 'pipe', 'pipe'], maxBuffer: 1024 * 1024,
    });
    if (r.error) {
      const code = (r.error as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw new FerryError('E_PEER_MISSING', `the credential helper ${this.program} (${this.configuredIn}) is not installed`, {
          hint: `install it (Debian: apt-get install golang-docker-credential-helpers for pass and secretservice), or remove the entry from the config file; --username with --password-stdin works without it`,
          details: { helper: this.program },
        });
      }
      if (code === 'ETIMEDOUT') {
        throw new FerryError('E_CONFIG', `the credential helper ${this.program} did not answer "${op}" within ${HELPER_TIMEOUT_MS / 1000} s`, {
          hint: `it may be waiting for a keychain passphrase no one can type; try "echo <registry> | ${this.program} get" in a terminal`,
          details: { helper: this.program },
        });
      }
      throw new FerryError('E_CONFIG', `cannot run the credential helper ${this.program}: ${clean(r.error.message, secrets)}`, { cause: r.error, details: { helper: this.program } });
    }
    return { ok: r.status === 0, stdout: (r.stdout ?? '').trim(), stderr: (r.stderr ?? '').trim() };
  }

  private failure(op: string, serverUrl: string | undefined, r: { stdout: string; stderr: string }, secrets: string[]): FerryError {
    // Helpers print their error on stdout; some tools they call (gpg, pass) on stderr.
    const said = clean(r.stdout || r.stderr, secrets);
    return new FerryError('E_CONFIG', `the credential helper ${this.program} failed to ${op} the credentials${serverUrl ? ` for ${serverUrl}` : ''}${said ? `: ${said}` : ''}`, {
      hint: `check the helper's own set-up (pass: a gpg key and "pass init"; secretservice: a running keyring), or remove it from ${this.configuredIn.replace(/^\S+ in /, '')}; try "${this.program} list" in a terminal`,
      details: { helper: this.program, operation: op },
    });
  }

  private protocolError(op: string, serverUrl: string | undefined): FerryError {
    return new FerryError('E_CONFIG', `the credential helper ${this.program} answered "${op}"${serverUrl ? ` for ${serverUrl}` : ''} with something that is not the helper protocol's JSON`, {
      hint: `check that ${this.program} is a docker credential helper`,
      details: { helper: this.program, operation: op },
    });
  }
}

/**
 * A helper's message, fit to show: its first line, control characters removed,
 * bounded; withheld whole when it could hold a secret (a JSON document, or any
 * secret we know of in it).
 */
function clean(text: string, secrets: string[]): string {
  const line = (text.split(/\r?\n/).find((l) => l.trim() !== '') ?? '').replace(/[\u0000-\u001f\u007f-\u009f]/g, ' ').trim();
  if (line === '') return '';
  if (/"?secret"?\s*:/i.test(line) || line.startsWith('{')) return '(its output is not shown: it may hold a secret)';
  if (secrets.some((s) => s.length > 0 && containsSecret(line, s))) return '(its output is not shown: it holds the secret)';
  return line.length > SHOWN_MAX ? `${line.slice(0, SHOWN_MAX)}…` : line;
}

function containsSecret(text: string, secret: string): boolean {
  return [secret, Buffer.from(secret).toString('base64'), encodeURIComponent(secret)].some((f) => text.includes(f));
}
