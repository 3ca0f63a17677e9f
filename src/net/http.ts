import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { Duplex, Readable } from 'node:stream';
import tls from 'node:tls';
import { FerryError, isAbortError } from '../errors.js';
import { remoteUrl } from './remote-text.js';
import { DEFAULT_MIN_BYTES_PER_SECOND, watchThroughput } from './throughput.js';

/**
 * The one HTTP client of ferry, on node:http/https rather than global fetch:
 * each registry needs its own TLS trust (CA file, insecure) and, for the SSH
 * tunnel, its own way of opening connections. Redirects are not followed here:
 * the registry client decides which hop may carry credentials.
 */

/** Opens a raw byte stream to host:port (an SSH tunnel, say). TLS, when the URL is https, is layered on top by the client. */
export type ConnectionFactory = (target: { host: string; port: number }) => Promise<Duplex>;

export interface HttpOptions {
  /** Skip TLS certificate verification. */
  insecure?: boolean | undefined;
  /** PEM file of extra CA certificates to trust. */
  caFile?: string | undefined;
  userAgent?: string | undefined;
  connect?: ConnectionFactory | undefined;
  /** From request start until the connection (and TLS handshake) is up. */
  connectTimeoutMs?: number | undefined;
  /** Longest silence on an open connection, in either direction, before the request fails. */
  idleTimeoutMs?: number | undefined;
  /** A response body bringing less than this, averaged over a window, fails (net/throughput.ts); 0 turns the rule off. */
  minBytesPerSecond?: number | undefined;
  /** That window; default: the idle timeout, so that raising it for a slow link also widens the averaging. */
  minRateWindowMs?: number | undefined;
}

export interface HttpRequest {
  method: string;
  url: URL;
  headers?: Record<string, string> | undefined;
  body?: Buffer | Readable | undefined;
  signal?: AbortSignal | undefined;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** Must be read to the end or destroyed, or the connection is not reused. */
  body: Readable;
  url: URL;
}

const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
const DEFAULT_IDLE_TIMEOUT_MS = 120_000;

/**
 * FERRY_CONNECT_TIMEOUT / FERRY_IDLE_TIMEOUT (seconds) replace the defaults:
 * operators on slow satellite links raise them, tests of a stalling registry
 * lower them. Anything but a positive number is ignored.
 */
function envTimeoutMs(name: string): number | undefined {
  const v = Number(process.env[name]);
  return Number.isFinite(v) && v > 0 ? v * 1000 : undefined;
}

export class HttpClient {
  private readonly agents = new Map<string, http.Agent>();
  /** Passed to every TLS connection: verification on unless `insecure`; a CA file adds to the system roots. */
  private readonly tlsOptions: tls.ConnectionOptions;

  constructor(private readonly options: HttpOptions = {}) {
    this.tlsOptions = { rejectUnauthorized: !options.insecure };
    if (options.caFile !== undefined) {
      try {
        this.tlsOptions.ca = [...tls.rootCertificates, readFileSync(options.caFile, 'utf8')];
      } catch (e) {
        throw new FerryError('E_CONFIG', `cannot read CA file ${options.caFile}: ${(e as Error).message}`, {
          hint: 'pass --ca-file a readable PEM file with the certificate(s) of the authority that signed the registry certificate',
          cause: e,
        });
      }
    }
  }

  request(req: HttpRequest): Promise<HttpResponse> {
    const { url } = req;
    // The registry client refuses other schemes where a server hands them out; this keeps Node's bare TypeError out for good.
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      return Promise.reject(new FerryError('E_REGISTRY', `${remoteUrl(url)}: ferry speaks only http and https`, {
        hint: 'a server sent ferry to this address; check the registry (and any proxy before it)', details: { scheme: url.protocol },
      }));
    }
    const connectTimeout = this.options.connectTimeoutMs ?? envTimeoutMs('FERRY_CONNECT_TIMEOUT') ?? DEFAULT_CONNECT_TIMEOUT_MS;
    const idleTimeout = this.options.idleTimeoutMs ?? envTimeoutMs('FERRY_IDLE_TIMEOUT') ?? DEFAULT_IDLE_TIMEOUT_MS;
    const headers: Record<string, string> = { 'user-agent': this.options.userAgent ?? 'ferry', ...req.headers };
    if (Buffer.isBuffer(req.body)) headers['content-length'] = String(req.body.length);

    return new Promise<HttpResponse>((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const cr = mod.request(url, { method: req.method, headers, agent: this.agentFor(url) });
      let response: http.IncomingMessage | undefined;
      const fail = (err: Error): void => {
        // Before the response, the promise carries the error; after it, the body stream does.
        if (response) response.destroy(err);
        cr.destroy(err);
      };

      const connectTimer = setTimeout(
        () => fail(new FerryError('E_NETWORK', `${url.host}: no connection after ${connectTimeout / 1000} s`, {
          hint: 'check that the registry address and port are right and that no firewall drops the traffic',
          details: { host: url.host, errno: 'ETIMEDOUT' },
        })),
        connectTimeout,
      );
      cr.on('socket', (socket: Duplex) => {
        if (cr.reusedSocket) clearTimeout(connectTimer);
        else if (socket instanceof tls.TLSSocket) socket.once('secureConnect', () => clearTimeout(connectTimer));
        else if ((socket as { connecting?: boolean }).connecting) socket.once('connect', () => clearTimeout(connectTimer));
        else clearTimeout(connectTimer);
      });
      cr.setTimeout(idleTimeout, () =>
        fail(new FerryError('E_NETWORK', `${url.host}: no data for ${idleTimeout / 1000} s`, {
          hint: 'the registry or the network stalled; try again, or check the connection to the registry',
          details: { host: url.host, errno: 'ETIMEDOUT' },
        })),
      );

      const onAbort = (): void => fail(new FerryError('E_ABORTED', 'interrupted'));
      if (req.signal?.aborted) onAbort();
      req.signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = (): void => {
        clearTimeout(connectTimer);
        req.signal?.removeEventListener('abort', onAbort);
      };

      cr.on('error', (err) => {
        cleanup();
        reject(networkError(err, url));
      });
      cr.on('response', (res) => {
        // A connection dropped mid-body reaches the body as Node's bare "aborted" (ECONNRESET) through
        // res.destroy(): make it the E_NETWORK it is, so that callers name the host and retries apply.
        const destroy = res.destroy.bind(res);
        res.destroy = (err?: Error) => destroy(err === undefined || err instanceof FerryError ? err : networkError(err, url));
        response = res;
        clearTimeout(connectTimer);
        const rate = { bytesPerSecond: this.options.minBytesPerSecond ?? DEFAULT_MIN_BYTES_PER_SECOND, windowMs: this.options.minRateWindowMs ?? idleTimeout };
        watchThroughput(res, rate, (err) => res.destroy(err), url.host);
        res.once('close', cleanup);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url });
      });

      const body = req.body;
      if (body === undefined || Buffer.isBuffer(body)) {
        cr.end(body);
      } else {
        // The body's own error (a failed verification, say) is what the caller must see, not "socket hang up".
        body.once('error', (err) => {
          cleanup();
          reject(err);
          cr.destroy(err);
        });
        body.pipe(cr);
      }
    });
  }

  /** Closes every pooled connection. */
  close(): void {
    for (const agent of this.agents.values()) agent.destroy();
    this.agents.clear();
  }

  private agentFor(url: URL): http.Agent {
    let agent = this.agents.get(url.origin);
    if (agent) return agent;
    const secure = url.protocol === 'https:';
    // Enough for --jobs blobs plus their HEADs and mounts at once; more would only queue at the registry.
    const base = { keepAlive: true, maxSockets: 64 };
    agent = secure ? new https.Agent({ ...base, ...this.tlsOptions }) : new http.Agent(base);
    const factory = this.options.connect;
    if (factory) {
      const tlsOptions = this.tlsOptions;
      // Node's Agent accepts a socket handed to the callback later, which lets the tunnel open asynchronously.
      agent.createConnection = (opts, callback) => {
        const host = opts.hostname ?? opts.host ?? url.hostname;
        const port = Number(opts.port ?? (secure ? 443 : 80));
        factory({ host, port }).then(
          (raw) => callback?.(null, secure ? tls.connect({ ...tlsOptions, socket: raw, servername: host.replace(/^\[|\]$/g, '') }) : raw),
          (err: Error) => callback?.(err, undefined as unknown as Duplex),
        );
        return undefined;
      };
    }
    this.agents.set(url.origin, agent);
    return agent;
  }
}

const DNS_CODES = new Set(['ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME']);
const TLS_CODE_RE = /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|HOSTNAME_MISMATCH|EPROTO$)/;

/** The errno of a TLS handshake answered by a plain-HTTP server. */
export function isPlainHttpAnswer(errno: unknown): boolean {
  return errno === 'EPROTO' || errno === 'ERR_SSL_WRONG_VERSION_NUMBER';
}

/** Turns a socket-level failure into a FerryError naming the host and what to check. Retry reads `details.errno`. */
export function networkError(err: unknown, url: URL): FerryError {
  if (err instanceof FerryError) return err;
  if (isAbortError(err)) return new FerryError('E_ABORTED', 'interrupted', { cause: err });
  const e = err as NodeJS.ErrnoException;
  const code = e.code ?? 'UNKNOWN';
  const host = url.host;
  const details = { host, errno: code };
  if (DNS_CODES.has(code)) {
    return new FerryError('E_NETWORK', `cannot resolve registry host ${url.hostname}`, {
      hint: 'check the registry name / DNS (is the name spelled right, and resolvable from this machine?)',
      cause: err,
      details,
    });
  }
  if (code === 'ECONNREFUSED') {
    return new FerryError('E_NETWORK', `connection to ${host} refused`, {
      hint: 'check that the registry is running and listening on that port, and the port in the image name',
      cause: err,
      details,
    });
  }
  if (TLS_CODE_RE.test(code)) {
    const plain = isPlainHttpAnswer(code);
    // OpenSSL's own text for a protocol error is a line of library internals; say what it means instead.
    const why = plain ? 'the server does not speak TLS' : e.message;
    return new FerryError('E_TLS', `TLS connection to ${host} failed: ${why}`, {
      hint: plain
        ? 'the registry may speak plain HTTP: configure it with --plain-http if that is intended'
        : 'if the registry uses a private CA, pass --ca-file <ca.pem>; to skip verification (unsafe) pass --insecure',
      cause: err,
      details,
    });
  }
  return new FerryError('E_NETWORK', `connection to ${host} failed: ${e.message} (${code})`, {
    hint: 'check the network path to the registry and try again',
    cause: err,
    details,
  });
}

/**
 * Reads a response body into memory, at most `limit` bytes. Returns undefined
 * (and destroys the stream) when the body is longer: callers decide whether
 * that is an error (manifests) or just a truncated message (error bodies).
 */
export async function readCapped(body: Readable, limit: number): Promise<Buffer | undefined> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > limit) {
      body.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

/** Reads and drops a small body we do not need, so the connection can be reused; a long one just closes it. */
export async function discard(body: Readable): Promise<void> {
  await readCapped(body, 64 * 1024).catch(() => undefined);
}
