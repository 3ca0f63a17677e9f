import { Duplex } from 'node:stream';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { socketLike } from '../../../src/net/ssh/socket-like.js';

type SocketLike = Duplex & { setTimeout(ms: number, cb?: () => void): SocketLike };

function channel(): Duplex {
  return new Duplex({ read() {}, write(_c, _e, done) { done(); } });
}

describe('socketLike: an ssh2 channel with the socket methods node:http calls', () => {
  it('setTimeout(0, cb) takes cb off, as net.Socket does: a kept-alive channel does not gather one listener per request', () => {
    const s = socketLike(channel()) as SocketLike;
    const cbs = Array.from({ length: 50 }, () => () => undefined);
    for (const cb of cbs) {
      s.setTimeout(5_000, cb); // a request starts
      s.setTimeout(0, cb); // its response ended
    }
    expect(s.listenerCount('timeout')).toBe(0);
    s.destroy();
  });

  afterEach(() => {
    vi.useRealTimers();
  });

  it('emits timeout after the idle time, and traffic either way resets it', () => {
    vi.useFakeTimers();
    const s = socketLike(channel()) as SocketLike;
    let fired = 0;
    s.setTimeout(80, () => { fired++; });
    for (let i = 0; i < 4; i++) {
      vi.advanceTimersByTime(40);
      if (i % 2) s.write('x');
      else s.push(Buffer.from('y'));
    }
    expect(fired, 'traffic every 40 ms keeps an 80 ms idle timeout from firing').toBe(0);
    vi.advanceTimersByTime(81);
    expect(fired).toBe(1);
    s.destroy();
  });
});
