import { createServer as createHttp, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttps } from 'node:https';
import type { AddressInfo } from 'node:net';
import { FerryError } from '../errors.js';

/**
 * The HTTP(S) listener around the registry API: keep-alive on, one handler
 * for every request, and a graceful stop — no new connections, idle
 * keep-alive connections closed, responses in flight finished for up to
 * `timeoutMs`, then whatever is left cut.
 */

export interface ListenAddress {
  host: string;
  port: number;
}

export interface ServerOptions {
  listen: ListenAddress;
  tls?: { cert: Buffer; key: Buffer } | undefined;
  handle: (req: IncomingMessage, res: ServerResponse) => Promise<void>;
}

/** Idle keep-alive connections are kept this long: pullers reuse them across a pull's many requests. */
const KEEP_ALIVE_MS = 60_000;

export class RegistryServer {
  private inFlight = 0;
  private drained: (() => void) | undefined;
  requests = 0;

  private constructor(private readonly server: Server, readonly address: ListenAddress) {}

  static async start(opts: ServerOptions): Promise<RegistryServer> {
    const server: Server = opts.tls ? createHttps({ cert: opts.tls.cert, key: opts.tls.key }) : createHttp();
    server.keepAliveTimeout = KEEP_ALIVE_MS;
    server.headersTimeout = KEEP_ALIVE_MS + 5_000;
    // Requests arrive only after listen() resolved, when the instance they count on exists.
    const made: { self?: RegistryServer } = {};
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      const s = made.self!;
      s.requests++;
      s.inFlight++;
      res.once('close', () => {
        s.inFlight--;
        if (s.inFlight === 0) s.drained?.();
      });
      void opts.handle(req, res);
    });
    // A client that sends garbage gets a 400 from Node and nothing else happens.
    server.on('clientError', (_e, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n');
      else socket.destroy();
    });
    await new Promise<void>((resolve, reject) => {
      const onError = (e: NodeJS.ErrnoException) => reject(listenError(e, opts.listen));
      server.once('error', onError);
      server.listen(opts.listen.port, opts.listen.host, () => {
        server.off('error', onError);
        resolve();
      });
    });
    const a = server.address() as AddressInfo;
    made.self = new RegistryServer(server, { host: a.address, port: a.port });
    return made.self;
  }

  /** Stops accepting, lets responses in flight finish for up to `timeoutMs`, then cuts the rest. Resolves with how many were cut. */
  async stop(timeoutMs: number): Promise<number> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    this.server.closeIdleConnections();
    if (this.inFlight > 0) {
      const done = new Promise<void>((resolve) => {
        this.drained = resolve;
      });
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([done, new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      })]);
      clearTimeout(timer);
    }
    const cut = this.inFlight;
    this.server.closeAllConnections();
    await closed;
    return cut;
  }
}

function listenError(e: NodeJS.ErrnoException, at: ListenAddress): FerryError {
  const where = `${at.host.includes(':') ? `[${at.host}]` : at.host}:${at.port}`;
  const why = e.code === 'EADDRINUSE' ? 'the port is in use (another registry or ferry serve?)'
    : e.code === 'EACCES' ? 'not allowed (ports below 1024 need root or CAP_NET_BIND_SERVICE)'
      : e.code === 'EADDRNOTAVAIL' ? 'that address is not one of this host\'s'
        : e.message;
  return new FerryError('E_NETWORK', `cannot listen on ${where}: ${why}`, {
    hint: 'choose another address or port with --listen ADDR:PORT (port 0 picks a free one)', details: { listen: where, code: e.code }, cause: e,
  });
}
