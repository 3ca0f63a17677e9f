// A small seeded PRNG (xorshift128, seeded through splitmix32) so generated test
// images are the same bytes on every run and machine. Never Math.random.

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function hashLabel(label: string): number {
  // FNV-1a: enough to turn a label into a distinct 32-bit stream id.
  let h = 0x811c9dc5;
  for (let i = 0; i < label.length; i++) {
    h ^= label.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h >>> 0;
}

export class Rng {
  private x: number;
  private y: number;
  private z: number;
  private w: number;
  readonly seed: number;

  constructor(seed: number) {
    this.seed = seed >>> 0;
    const sm = splitmix32(this.seed);
    this.x = sm();
    this.y = sm();
    this.z = sm();
    this.w = sm() || 1; // xorshift128 must not start all-zero
  }

  u32(): number {
    const t = this.x ^ (this.x << 11);
    this.x = this.y;
    this.y = this.z;
    this.z = this.w;
    this.w = (this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
    return this.w;
  }

  /** Uniform in [lo, hi] (inclusive). */
  int(lo: number, hi: number): number {
    return lo + (this.u32() % (hi - lo + 1));
  }

  pick<T>(items: readonly T[]): T {
    const item = items[this.u32() % items.length];
    if (item === undefined) throw new Error('pick from an empty list');
    return item;
  }

  /** An independent stream derived from this seed and a label, without advancing this one. */
  fork(label: string): Rng {
    return new Rng((this.seed ^ hashLabel(label)) >>> 0);
  }

  /** Fills `out` with random bytes, four at a time (this runs over gigabytes for big layers). */
  fill(out: Uint8Array): void {
    const whole = out.length & ~3;
    if (out.byteOffset % 4 === 0 && whole > 0) {
      const words = new Uint32Array(out.buffer, out.byteOffset, whole / 4);
      for (let i = 0; i < words.length; i++) {
        const t = this.x ^ (this.x << 11);
        this.x = this.y;
        this.y = this.z;
        this.z = this.w;
        this.w = (this.w ^ (this.w >>> 19) ^ (t ^ (t >>> 8))) >>> 0;
        words[i] = this.w;
      }
    } else {
      for (let i = 0; i < whole; i += 4) {
        const v = this.u32();
        out[i] = v & 0xff;
        out[i + 1] = (v >>> 8) & 0xff;
        out[i + 2] = (v >>> 16) & 0xff;
        out[i + 3] = v >>> 24;
      }
    }
    for (let i = whole; i < out.length; i++) out[i] = this.u32() & 0xff;
  }

  bytes(n: number): Buffer {
    const buf = Buffer.alloc(n);
    this.fill(buf);
    return buf;
  }
}

const WORDS = [
  'ferry', 'layer', 'digest', 'manifest', 'registry', 'harbor', 'bundle', 'import', 'export', 'verify',
  'the', 'of', 'and', 'a', 'to', 'in', 'is', 'for', 'on', 'with', 'blob', 'index', 'platform', 'linux',
  'amd64', 'arm64', 'config', 'tar', 'gzip', 'sha256', 'path', '/usr/lib', '/etc/ssl', 'export PATH=$PATH:/opt',
  '#!/bin/sh', 'echo', 'set -eu', 'if', 'then', 'fi', '{', '}', '=', '0', '1', '42', 'true', 'false',
];

/** Text-like (compressible) bytes: lines of words, like scripts and docs in a real image. */
export function fillText(rng: Rng, out: Uint8Array): void {
  let i = 0;
  let col = 0;
  while (i < out.length) {
    const w = rng.pick(WORDS);
    const piece = col > 60 ? '\n' : col === 0 ? w : ` ${w}`;
    for (let k = 0; k < piece.length && i < out.length; k++) out[i++] = piece.charCodeAt(k);
    col = piece === '\n' ? 0 : col + piece.length;
  }
}
