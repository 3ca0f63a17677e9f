import type { ServerResponse } from 'node:http';

/**
 * distribution's error codes and their HTTP statuses (registry/api/errcode and
 * api/v2 of distribution 2.8), with its messages, so clients that read the
 * code (`MANIFEST_UNKNOWN` → "not found") behave as against a registry.
 */
export const API_ERRORS = {
  BLOB_UNKNOWN: { status: 404, message: 'blob unknown to registry' },
  DIGEST_INVALID: { status: 400, message: 'provided digest did not match uploaded content' },
  MANIFEST_UNKNOWN: { status: 404, message: 'manifest unknown' },
  NAME_INVALID: { status: 400, message: 'invalid repository name' },
  NAME_UNKNOWN: { status: 404, message: 'repository name not known to registry' },
  PAGINATION_NUMBER_INVALID: { status: 400, message: 'invalid number of results requested' },
  UNAUTHORIZED: { status: 401, message: 'authentication required' },
  UNSUPPORTED: { status: 405, message: 'The operation is unsupported.' },
  UNKNOWN: { status: 500, message: 'unknown error' },
} as const;

export type ApiErrorCode = keyof typeof API_ERRORS;

/** `{"errors":[{code,message,detail}]}` as errcode.ServeJSON writes it; no body for HEAD. */
export function sendApiError(res: ServerResponse, method: string | undefined, code: ApiErrorCode, message?: string, detail?: unknown): number {
  const e = API_ERRORS[code];
  const body = Buffer.from(`${JSON.stringify({ errors: [{ code, message: message ?? e.message, ...(detail !== undefined ? { detail } : {}) }] })}\n`);
  res.statusCode = e.status;
  res.setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Content-Length', body.length);
  if (method === 'HEAD') {
    res.end();
    return 0;
  }
  res.end(body);
  return body.length;
}
