import { type ErrorCode, FerryError } from '../errors.js';
import { type HttpResponse, readCapped } from './http.js';
import { remoteText } from './remote-text.js';

/** Error bodies are for messages only: a hostile or broken server gets no more than this into memory. */
export const ERROR_BODY_MAX_BYTES = 64 * 1024;

interface RegistryErrorEntry {
  code: string;
  message: string;
}

const REGISTRY_ERRORS_MAX = 10;

const NOT_FOUND_CODES = new Set(['MANIFEST_UNKNOWN', 'BLOB_UNKNOWN', 'NAME_UNKNOWN', 'BLOB_UPLOAD_UNKNOWN']);

/**
 * Parses distribution's `{"errors":[{code,message,detail}]}`; anything else
 * yields no entries. Codes and messages are remote text: they pass remoteText
 * here, the one place registry (and Harbor, and token service) error text
 * enters ferry's messages and --json details.
 */
export function parseRegistryErrors(body: Buffer | undefined): RegistryErrorEntry[] {
  if (!body || body.length === 0) return [];
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { errors?: unknown };
    if (!Array.isArray(parsed.errors)) return [];
    return parsed.errors
      .filter((e): e is Record<string, unknown> => typeof e === 'object' && e !== null)
      // A message quotes a few; a server listing thousands only makes it unreadable.
      .slice(0, REGISTRY_ERRORS_MAX)
      .map((e) => ({ code: remoteText(e.code ?? 'UNKNOWN', 64), message: remoteText(e.message ?? '') }));
  } catch {
    return [];
  }
}

function codeFor(status: number, entries: RegistryErrorEntry[]): ErrorCode {
  if (status === 401 || entries.some((e) => e.code === 'UNAUTHORIZED')) return 'E_AUTH';
  if (status === 403 || entries.some((e) => e.code === 'DENIED')) return 'E_DENIED';
  if (status === 404 || entries.some((e) => NOT_FOUND_CODES.has(e.code))) return 'E_NOT_FOUND';
  return 'E_REGISTRY';
}

const HINTS: Record<string, string> = {
  E_AUTH: 'log in: pass --username with --password-stdin, set FERRY_USERNAME/FERRY_PASSWORD, or add the registry to ~/.docker/config.json',
  E_DENIED: 'the credentials are valid but lack permission for this repository; ask the registry administrator for pull (or push) access',
  E_NOT_FOUND: 'check the repository name, tag and digest (and that the image was pushed to this registry)',
  E_REGISTRY: 'the registry refused the request; check its logs, or try again later if it is overloaded',
};

/**
 * Builds the FerryError for an unexpected registry response, reading at most
 * ERROR_BODY_MAX_BYTES of its body. `what` names the image, blob or operation;
 * `override` replaces the code and hint derived from the status when the caller knows better;
 * URLs are not included because upload locations and redirects can carry tokens.
 */
export async function registryError(res: HttpResponse, what: string, override: { code?: ErrorCode; hint?: string } = {}): Promise<FerryError> {
  const body = await readCapped(res.body, ERROR_BODY_MAX_BYTES).catch(() => undefined);
  const entries = parseRegistryErrors(body);
  const code = override.code ?? codeFor(res.status, entries);
  const hint = override.hint;
  const reasons = entries.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join('; ');
  return new FerryError(code, `${what}: registry answered ${res.status}${reasons ? ` (${reasons})` : ''}`, {
    hint: hint ?? HINTS[code],
    details: { status: res.status, registryErrors: entries },
  });
}
