/**
 * The one error type of ferry. Every failure a user can cause or meet carries a
 * code from this catalogue; the CLI maps the code to an exit status, so scripts
 * on jump hosts can branch on the status without parsing text.
 */

export const EXIT_STATUS = {
  E_INTERNAL: 1,
  E_USAGE: 2,
  E_LIST_SYNTAX: 2,
  E_REFERENCE: 2,
  E_NAME_UNSAFE: 2,
  E_DIGEST_INVALID: 2,
  E_CONFIG: 2,
  E_NETWORK: 3,
  E_TLS: 3,
  E_REGISTRY: 3,
  E_AUTH: 4,
  E_DENIED: 4,
  E_NOT_FOUND: 5,
  E_DIGEST_MISMATCH: 6,
  E_SIZE_MISMATCH: 6,
  E_MANIFEST_INVALID: 6,
  E_UNSUPPORTED_MEDIA_TYPE: 6,
  E_BUNDLE_INVALID: 6,
  E_BUNDLE_TRUNCATED: 6,
  E_BUNDLE_CORRUPT: 6,
  E_BLOB_MISSING: 6,
  E_VERIFY_FAILED: 6,
  E_BASE_MISSING: 7,
  E_PARTIAL: 8,
  E_PEER_MISSING: 9,
  E_IO: 10,
  E_NO_SPACE: 10,
  E_ABORTED: 130,
} as const;

export type ErrorCode = keyof typeof EXIT_STATUS;

export interface FerryErrorOptions {
  /** What the user should do about it; printed under the message. */
  hint?: string | undefined;
  cause?: unknown | undefined;
  /** Machine-readable facts (digest, file, line, image…) for --json output. Never credentials. */
  details?: Record<string, unknown> | undefined;
}

export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, options: FerryErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'FerryError';
    this.code = code;
    this.hint = options.hint;
    this.details = options.details ?? {};
  }

  get exitStatus(): number {
    return EXIT_STATUS[this.code];
  }
}

export function isFerryError(e: unknown, code?: ErrorCode): e is FerryError {
  return e instanceof FerryError && (code === undefined || e.code === code);
}

/** Wraps anything thrown into a FerryError, keeping FerryErrors as they are. */
export function asFerryError(e: unknown, fallback: ErrorCode = 'E_INTERNAL'): FerryError {
  if (e instanceof FerryError) return e;
  if (isAbortError(e)) return new FerryError('E_ABORTED', 'interrupted', { cause: e });
  const err = e as NodeJS.ErrnoException;
  if (err && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code) && err.syscall) return fileSystemError(err);
  return new FerryError(fallback, e instanceof Error ? e.message : String(e), { cause: e });
}

/**
 * What a field engineer can do about a local file-system error. Each names
 * the file (writers attach the final name, never the temp: fsys/files.ts
 * `naming`) and says what to do; the writer has already removed its partial file.
 */
const FILE_SYSTEM_ADVICE: Record<string, { what: string; hint: string }> = {
  ENOSPC: {
    what: 'no space left on the device',
    hint: 'free space on that file system (df -h shows how much) or pick a target with room, then run the command again: nothing partial was left, and what landed completely is reused',
  },
  EDQUOT: {
    what: 'disk quota exceeded',
    hint: 'free space within the quota (or have it raised) or pick another target, then run the command again: nothing partial was left, and what landed completely is reused',
  },
  EROFS: {
    what: 'the file system is read-only',
    hint: 'pick a target on a writable file system (or remount it read-write), then run the command again',
  },
  EACCES: {
    what: 'permission denied',
    hint: 'pick a target this user may write to, or run ferry as a user who may (ls -ld shows the owner), then run the command again',
  },
  ENOTDIR: {
    what: 'a file is where a folder should be',
    hint: 'move or remove the file in the way (ls -l shows it), or pick another path, then run the command again',
  },
  EISDIR: {
    what: 'a folder is where a file should be',
    hint: 'give the name of a file to write, not of a folder, or move the folder away, then run the command again',
  },
  EPERM: {
    what: 'operation not permitted',
    hint: 'pick a target this user may write to, or run ferry as a user who may (ls -ld shows the owner; an immutable attribute shows in lsattr), then run the command again',
  },
};

/** What to do about a file-system errno, when ferry knows (ENOSPC, EROFS, EACCES, …). */
export function fileSystemAdvice(code: string): { what: string; hint: string } | undefined {
  return FILE_SYSTEM_ADVICE[code];
}

function fileSystemError(err: NodeJS.ErrnoException): FerryError {
  const code = err.code!;
  const file = err.path;
  const details: Record<string, unknown> = { errno: code, syscall: err.syscall, ...(file !== undefined ? { file } : {}) };
  const advice = FILE_SYSTEM_ADVICE[code];
  if (advice) {
    // A full disk has its own code (same exit status): scripts can tell "free space" from "fix permissions".
    const full = code === 'ENOSPC' || code === 'EDQUOT';
    return new FerryError(full ? 'E_NO_SPACE' : 'E_IO', `${file ?? '(a local file)'}: ${advice.what} (${code} in ${err.syscall})`, { hint: advice.hint, details, cause: err });
  }
  return new FerryError('E_IO', `${err.syscall} ${file ?? ''}: ${err.message}`.replace(/ +:/, ':'), { details, cause: err });
}

export function isAbortError(e: unknown): boolean {
  return e instanceof Error && (e.name === 'AbortError' || (e as NodeJS.ErrnoException).code === 'ABORT_ERR');
}
