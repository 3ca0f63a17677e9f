// A loopback HTTP(S) proxy in front of a real registry, for fault injection in the
// registry client tests: answer a request itself, or alter the registry's answer.
import { createServer as createHttpServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';

export interface Injected {
  status: number;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

export interface ProxyHooks {
  /**
   * Return a response to send instead of forwarding, or 'reset' to drop the
   * connection; `n` counts requests with the same method and path, from 1.
   */
  inject?(req: IncomingMessage, n: number): Injected | 'reset' | undefined;
  /** Return a function to rewrite the upstream body (it is buffered); headers other than length pass unchanged. */
  rewrite?(req: IncomingMessage): ((body: Buffer, headers: Record<string, string | string[] | undefined>) => Buffer) | undefined;
  /** Serve over TLS with this key pair. */
  tls?: { key: string; cert: string };
}

export interface Proxy {
  host: string;
  port: number;
  /** Every request seen: method, path with query, and the request headers. */
  log: Array<{ method: string; path: string; headers: IncomingMessage['headers'] }>;
  count(method: string, pathPrefix: string): number;
  stop(): Promise<void>;
}

export async function startProxy(upstream: string, hooks: ProxyHooks = {}): Promise<Proxy> {
  const target = new URL(upstream);
  const seen = new Map<string, number>();
  const log: Proxy['log'] = [];

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = req.url ?? '/';
    log.push({ method: req.method ?? '', path, headers: req.headers });
    const key = `${req.method} ${path.split('?')[0]}`;
    const n = (seen.get(key) ?? 0) + 1;
    seen.set(key, n);
    const injected = hooks.inject?.(req, n);
    if (injected === 'reset') {
      req.socket.destroy();
      return;
    }
    if (injected) {
      req.resume();
      res.writeHead(injected.status, injected.headers ?? {});
      res.end(injected.body);
      return;
    }
    const rewrite = hooks.rewrite?.(req);
    // Host is kept, so the registry builds upload Locations that point back at the proxy.
    const up = request({ host: target.hostname, port: target.port, method: req.method, path, headers: req.headers }, (upRes) => {
      if (!rewrite) {
        res.writeHead(upRes.statusCode ?? 502, upRes.headers);
        upRes.pipe(res);
        return;
      }
      const chunks: Buffer[] = [];
      upRes.on('data', (c: Buffer) => chunks.push(c));
      upRes.on('end', () => {
        const body = rewrite(Buffer.concat(chunks), upRes.headers);
        res.writeHead(upRes.statusCode ?? 502, { ...upRes.headers, 'content-length': String(body.length) });
        res.end(req.method === 'HEAD' ? undefined : body);
      });
    });
    up.on('error', () => res.destroy());
    req.pipe(up);
  };

  const server: Server = hooks.tls ? createHttpsServer(hooks.tls, handle) : createHttpServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    port,
    log,
    count: (method, prefix) => log.filter((l) => l.method === method && l.path.startsWith(prefix)).length,
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
