import type { Duplex } from 'node:stream';

/**
 * node:http's agent and client call socket methods an ssh2 channel lacks
 * (setTimeout, setNoDelay, setKeepAlive, ref, unref). This gives a channel
 * those: the idle timeout is real (reset by traffic either way, 'timeout'
 * emitted on silence, as net.Socket does); the rest are meaningless on a channel
 * multiplexed over one TCP connection, whose keep-alives the SSH layer sends.
 */
export function socketLike(channel: Duplex): Duplex {
  const s = channel as Duplex & {
    setTimeout?: unknown; setNoDelay?: unknown; setKeepAlive?: unknown; ref?: unknown; unref?: unknown; connecting?: boolean;
  };
  let idleMs = 0;
  let timer: NodeJS.Timeout | undefined;
  const arm = (): void => {
    if (timer) clearTimeout(timer);
    timer = idleMs > 0 ? setTimeout(() => s.emit('timeout'), idleMs) : undefined;
    timer?.unref();
  };
  // Incoming bytes are counted where the channel pushes them: a 'data' listener would start the flow before http reads.
  const push = s.push.bind(s);
  s.push = (chunk: unknown, encoding?: BufferEncoding) => {
    if (idleMs > 0) arm();
    return push(chunk, encoding);
  };
  const write = s.write.bind(s) as (...a: unknown[]) => boolean;
  s.write = ((...a: unknown[]) => {
    if (idleMs > 0) arm();
    return write(...a);
  }) as typeof s.write;
  s.once('close', () => timer && clearTimeout(timer));
  s.setTimeout = (ms: number, cb?: () => void) => {
    idleMs = ms;
    // As net.Socket: 0 with a callback takes that listener off (http does so after every
    // response on a kept-alive connection); adding it instead piled up one per request.
    if (cb) {
      if (ms === 0) s.removeListener('timeout', cb);
      else s.once('timeout', cb);
    }
    arm();
    return s;
  };
  s.setNoDelay = () => s;
  s.setKeepAlive = () => s;
  s.ref = () => s;
  s.unref = () => s;
  s.connecting = false;
  return s;
}
