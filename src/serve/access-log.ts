import { type Exchange, printable } from './registry-api.js';

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/**
 * One line per request, Common Log Format with the duration added:
 * `127.0.0.1 - ferry [03/Dec/2025:10:37:00 +0000] "GET /v2/… HTTP/1.1" 200 1234 0.012`
 * (user from Basic auth or `-`; body bytes sent; seconds), then ` cut` when
 * the response did not complete. The request line is printable ASCII only
 * (a client controls it) and headers are never logged: no Authorization.
 */
export function accessLine(x: Exchange, now = new Date()): string {
  const seconds = Number(process.hrtime.bigint() - x.started) / 1e9;
  const who = x.user === undefined ? '-' : printable(x.user, 64).replace(/\s/g, '_');
  const line = `${printable(x.req.method ?? '-', 16)} ${printable(x.req.url ?? '', 512)} HTTP/${printable(x.req.httpVersion, 8)}`;
  const status = x.res.headersSent || x.res.writableFinished ? x.res.statusCode : 0;
  return `${x.req.socket.remoteAddress ?? '-'} - ${who} [${clfTime(now)}] "${line.replace(/"/g, '\\x22')}" ${status} ${x.bytes} ${seconds.toFixed(3)}${x.cut ? ' cut' : ''}`;
}

function clfTime(d: Date): string {
  const p = (n: number) => String(n).padStart(2, '0');
  return `${p(d.getUTCDate())}/${MONTHS[d.getUTCMonth()]}/${d.getUTCFullYear()}:${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
