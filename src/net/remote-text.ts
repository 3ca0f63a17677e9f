/**
 * Text a remote server chose — registry and Harbor error messages, token
 * service answers, redirect targets — is quoted in ferry's messages and in the
 * --json error document. A server (or a proxy before it) may echo the request
 * back, credentials included, and may send terminal control sequences that
 * repaint the user's screen. `remoteText` is the one gate such text passes
 * before it becomes part of a message: terminal controls out, anything that
 * looks like a credential (and every secret this process holds) redacted, and
 * a bounded length.
 */

export const REDACTED = '[redacted]';

/** Remote text quoted in a message is cut to this many characters by default. */
export const REMOTE_TEXT_MAX_CHARS = 300;

/**
 * Secrets shorter than this are not searched for: a one- or two-character
 * password would blank out every digest that contains it, and is guessable anyway.
 */
const SECRET_MIN_CHARS = 4;

/** Every form in which a secret this process holds could come back. */
const secrets = new Set<string>();

/**
 * Registers a credential (password, identity token, bearer token) so that it
 * is redacted wherever it shows up in remote text, raw or in the encodings a
 * server could echo it in (base64, base64url, URL and form encoding). With a
 * username, the Basic-auth form `base64(user:secret)` is registered too.
 */
export function rememberSecret(secret: string | undefined, username?: string): void {
  if (secret === undefined || secret.length < SECRET_MIN_CHARS) return;
  const forms = [
    secret,
    Buffer.from(secret, 'utf8').toString('base64'),
    Buffer.from(secret, 'utf8').toString('base64url'),
    encodeURIComponent(secret),
    new URLSearchParams({ s: secret }).toString().slice(2),
  ];
  if (username !== undefined) {
    const basic = Buffer.from(`${username}:${secret}`, 'utf8');
    forms.push(basic.toString('base64'), basic.toString('base64url'), `${username}:${secret}`);
  }
  for (const f of forms) {
    // base64 padding is left out, so the text matches however the server padded it.
    const bare = f.replace(/=+$/, '');
    if (bare.length >= SECRET_MIN_CHARS) secrets.add(bare);
  }
}

/** For tests: forget every registered secret. */
export function forgetSecrets(): void {
  secrets.clear();
}

// ESC-introduced sequences: CSI (ESC [ … final), OSC/DCS/SOS/PM/APC strings (up to BEL or ESC \), and two-byte escapes.
const ESCAPE_SEQUENCE = /\x1b(?:\[[0-?]*[ -/]*[@-~]?|[\]PX^_][^\x07\x1b]*(?:\x07|\x1b\\)?|[ -/]*[0-~]?)/g;
// C0 controls but tab and newline, DEL, C1 controls (U+0080–U+009F: CSI U+009B among them), and the bidi
// embeddings, overrides, isolates and marks that reorder what a terminal shows.
const CONTROL = /[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/**
 * Authorization schemes whose next word is a credential. Case-sensitive on
 * purpose: "digest sha256:…" and "token expired" are what registries say in
 * plain words, and servers echo the schemes as the client sent them.
 */
const SCHEME_TOKEN = /\b(Basic|BASIC|basic|Bearer|BEARER|bearer|Negotiate|Token)(\s+)(?!\[redacted\])[A-Za-z0-9\-._~+/]+=*/g;
/**
 * `key: value`, `key=value`, `"key":"value"`, `'key': ['value']` where the key
 * names a credential: authorization headers, passwords, tokens, secrets, API
 * keys, cookies. A key may carry a prefix (`proxy-authorization`,
 * `access_token`, `x-auth-token`, `client_secret`). The value is a quoted
 * string (escapes honoured) or a run up to a delimiter, an auth scheme word included.
 */
const KEYED = new RegExp(
  String.raw`(\b(?:[A-Za-z0-9]+[-_])*(?:authorization|password|passwd|pwd|secret|token|identitytoken|auth|api[-_]?key|apikey|cookie|credential)s?["']?\s*[:=]\s*\[?\s*)` +
    String.raw`("(?:[^"\\]|\\.)*"?|'[^']*'?|(?:(?:Basic|Bearer|Digest|Token|Negotiate)\s+)?[^\s&"',;}\]]+)`,
  'gi',
);
/**
 * `scheme://user:password@host`: the user info goes (a bare name too: tokens
 * travel as user names). The placeholder `user` of ferry's own hints stays.
 */
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)(?!user@)[^\s/?#@"'<>]*@/gi;

/** Terminal controls out (tab and newline stay); carriage returns too, which can overwrite a line. */
export function stripControls(text: string): string {
  return text.replace(ESCAPE_SEQUENCE, '').replace(CONTROL, '');
}

/** Credentials out: keyed values, auth scheme tokens, URL user info, and every registered secret in any of its forms. */
export function redactCredentials(text: string): string {
  let out = text
    .replace(KEYED, (_m, key: string, value: string) => `${key}${value.startsWith('"') ? `"${REDACTED}"` : value.startsWith("'") ? `'${REDACTED}'` : REDACTED}`)
    .replace(SCHEME_TOKEN, (_m, scheme: string, space: string) => `${scheme}${space}${REDACTED}`)
    .replace(URL_USERINFO, `$1${REDACTED}@`);
  // Longest first, so a form that contains another (user:secret ⊃ secret) is removed whole.
  const known = [...secrets].sort((a, b) => b.length - a.length);
  // Again while something changed: removing one occurrence can join the text around it into another.
  for (let round = 0, changed = true; changed && round < 4; round++) {
    changed = false;
    for (const s of known) {
      if (!out.includes(s)) continue;
      out = out.split(s).join(REDACTED);
      changed = true;
    }
  }
  return out;
}

/**
 * The gate for remote text: controls stripped first (so that a sequence cannot
 * split a credential from its key), then credentials redacted on the whole
 * text, then the length cut — after redaction, so that no cut leaves half a
 * secret that no longer matches.
 */
export function remoteText(text: unknown, maxChars = REMOTE_TEXT_MAX_CHARS): string {
  const clean = redactCredentials(stripControls(typeof text === 'string' ? text : String(text)));
  if (clean.length <= maxChars) return clean;
  return `${clean.slice(0, maxChars)}…`;
}

/**
 * A URL a server handed us (a redirect target, a token realm, a Link), for
 * messages: scheme, host and path only — user info and query, where signed
 * URLs and tokens live, are left out — through `remoteText`.
 */
export function remoteUrl(url: URL | string, maxChars = 120): string {
  if (typeof url === 'string') {
    const text = url;
    try {
      url = new URL(text);
    } catch {
      return remoteText(text.replace(/[?#].*$/s, ''), maxChars);
    }
  }
  const path = url.protocol === 'http:' || url.protocol === 'https:' ? url.pathname : url.pathname.slice(0, 32);
  return remoteText(`${url.protocol}//${url.host}${path}`, maxChars);
}
