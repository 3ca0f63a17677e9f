// A loopback HTTP proxy that puts a registry "far away": every round trip costs `rttMs`
// more (half on the way in, before the request is forwarded; half on the way out, before
// the response's first byte), and every new connection one round trip more (the TCP
// handshake a real WAN link charges). Bandwidth is left alone: this isolates round trips.
// It also measures how the client used the link: requests, how many were in flight at
// once (max, time-weighted mean) and how many ran with nothing else in flight ("alone",
// strictly one after another) — which is what latency multiplies.
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface LinkStats {
  rttMs: number;
  requests: number;
  byMethod: Record<string, number>;
  /** New client connections (each paid one extra round trip). */
  connections: number;
  /** Requests that arrived when no other request was in flight: the serial part of the run. */
  alone: number;
  maxInFlight: number;
  /** Time-weighted mean of requests in flight while at least one was (the link's useful parallelism). */
  meanInFlightBusy: number;
  /** Seconds from the first request to the last response, and how much of that had nothing in flight. */
  windowS: number;
  idleS: number;
}

export interface LatencyProxy {
  /** `127.0.0.1:PORT`: use it in place of the registry's host. */
  host: string;
  /** The figures since the last reset (or start). */
  stats(): LinkStats;
  reset(): void;
  stop(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function startLatencyProxy(upstream: string, rttMs: number): Promise<LatencyProxy> {
  const target = new URL(upstream);
  const half = rttMs / 2;
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity });
  const fresh = new WeakSet<Socket>();

  let requests = 0;
  let connections = 0;
  let alone = 0;
  let inFlight = 0;
  let maxInFlight = 0;
  let byMethod: Record<string, number> = {};
  // Time-weighted in-flight integral and busy time, advanced at every change of inFlight.
  let area = 0;
  let busy = 0;
  let first = 0;
  let last = 0;
  let changedAt = 0;
  const advance = (now: number): void => {
    if (inFlight > 0) {
      area += inFlight * (now - changedAt);
      busy += now - changedAt;
    }
    changedAt = now;
  };

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const now = performance.now();
    if (requests === 0) first = now;
    advance(now);
    requests++;
    byMethod[req.method ?? '?'] = (byMethod[req.method ?? '?'] ?? 0) + 1;
    if (inFlight === 0) alone++;
    inFlight++;
    maxInFlight = Math.max(maxInFlight, inFlight);
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      const t = performance.now();
      advance(t);
      inFlight--;
      last = t;
    };
    res.once('close', finish);

    // A new connection's first request pays for the handshake too.
    const wait = half + (fresh.has(req.socket) ? rttMs : 0);
    fresh.delete(req.socket);
    req.pause();
    void sleep(wait).then(() => {
      // Host is kept, so the registry builds upload Locations that point back here.
      const up = request({ host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers, agent }, (upRes) => {
        void sleep(half).then(() => {
          res.writeHead(upRes.statusCode ?? 502, upRes.headers);
          upRes.pipe(res);
        });
      });
      up.on('error', () => res.destroy());
      // A client that went away mid-answer: stop the upstream request (a finished one keeps its pooled socket).
      res.once('close', () => {
        if (!res.writableFinished) up.destroy();
      });
      req.pipe(up);
      req.resume();
    });
  };

  const server = createServer({ keepAlive: true }, handle);
  server.on('connection', (socket: Socket) => {
    connections++;
    fresh.add(socket);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    host: `127.0.0.1:${port}`,
    stats: () => {
      advance(performance.now());
      return {
        rttMs, requests, byMethod: { ...byMethod }, connections, alone, maxInFlight,
        meanInFlightBusy: busy > 0 ? area / busy : 0,
        windowS: requests > 0 ? (last - first) / 1000 : 0,
        idleS: requests > 0 ? Math.max(0, (last - first - busy) / 1000) : 0,
      };
    },
    reset: () => {
      requests = connections = alone = maxInFlight = area = busy = first = last = 0;
      byMethod = {};
      changedAt = performance.now();
    },
    stop: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}
