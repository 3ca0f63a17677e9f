// Writes over SFTP to a real OpenSSH sshd (internal-sftp): requests are pipelined
// (many in flight, each as large as the server allows) — ssh2's own write stream
// waits for every request's answer, half of scp's speed — yet never more than the
// write window is unacknowledged, which is what send's resume (one window back) and
// the layout's temp-then-rename rely on. A dropped link ends the write with an
// error instead of a wait for answers that never come.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SFTPWrapper } from 'ssh2';
import { RESUME_OVERLAP, SftpFileSystem } from '../../src/fsys/sftp.js';
import { SshSession, type SshOptions } from '../../src/net/ssh/session.js';
import { Rng } from '../support/prng.js';
import { startSshd, type SshdHandle } from '../support/sshd.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { makeSshHome, type SshHome } from './ssh-fixture.js';

let sshd: SshdHandle;
let home: SshHome;
let tmp: TempDir;
const sshOpts = (): SshOptions => ({ destination: home.alias, configFile: home.configFile, knownHostsFile: home.knownHostsFile, agentSocket: '' });

beforeAll(async () => {
  sshd = await startSshd();
  home = makeSshHome(sshd);
  tmp = makeTempDir('ferry-sftp-writer-');
});
afterAll(async () => {
  await Promise.all([sshd?.stop(), home?.tmp.cleanup(), tmp?.cleanup()]);
});

/** Watches the real SFTP session's write requests (they still go to sshd): how many and how many bytes were unanswered at once. */
function watchWrites(sftp: SFTPWrapper): { maxRequests: () => number; maxBytes: () => number; sizes: number[] } {
  const original = sftp.write.bind(sftp);
  let requests = 0;
  let bytes = 0;
  let maxRequests = 0;
  let maxBytes = 0;
  const sizes: number[] = [];
  (sftp as unknown as { write: typeof sftp.write }).write = ((handle: Buffer, buf: Buffer, off: number, len: number, pos: number, cb: (err?: Error | null) => void) => {
    requests++;
    bytes += len;
    sizes.push(len);
    maxRequests = Math.max(maxRequests, requests);
    maxBytes = Math.max(maxBytes, bytes);
    original(handle, buf, off, len, pos, (err?: Error | null) => {
      requests--;
      bytes -= len;
      cb(err);
    });
  });
  return { maxRequests: () => maxRequests, maxBytes: () => maxBytes, sizes };
}

function chunks(buf: Buffer, size: number): Readable {
  return Readable.from((function* () {
    for (let off = 0; off < buf.length; off += size) yield buf.subarray(off, off + size);
  })());
}

describe('SFTP writes', () => {
  it('keep many large requests in flight, never more than the resume window, and land byte-exact', async () => {
    const data = Buffer.alloc(24 * 1024 * 1024 + 4321);
    new Rng(7).fill(data);
    const session = await SshSession.open(sshOpts());
    try {
      const sftp = await session.sftp();
      const seen = watchWrites(sftp);
      const fs = new SftpFileSystem(sftp, 'sftp test', session.dropped);
      const target = join(tmp.path, 'out', 'blob.bin');
      // Chunks of 1 MiB: larger than one request, so each is cut, and the window is what holds it back.
      await fs.streamToFileAtomic(target, chunks(data, 1024 * 1024));
      expect(createHash('sha256').update(readFileSync(target)).digest('hex')).toBe(createHash('sha256').update(data).digest('hex'));
      expect(seen.maxRequests(), 'write requests in flight at once').toBeGreaterThanOrEqual(8);
      expect(seen.maxBytes()).toBeLessThanOrEqual(RESUME_OVERLAP);
      // OpenSSH takes ~255 KiB a request (its limits extension): requests are that large, not 32 KiB.
      expect(Math.max(...seen.sizes)).toBeGreaterThan(128 * 1024);
      expect(Math.max(...seen.sizes)).toBeLessThanOrEqual(256 * 1024);
      expect(readdirSync(join(tmp.path, 'out'))).toEqual(['blob.bin']);
    } finally {
      session.close();
    }
  });

  it('a link that drops mid-write ends the write with an error; the file never appears', async () => {
    const data = Buffer.alloc(64 * 1024 * 1024);
    new Rng(8).fill(data);
    const session = await SshSession.open(sshOpts());
    const sftp = await session.sftp();
    const fs = new SftpFileSystem(sftp, 'sftp test', session.dropped);
    const target = join(tmp.path, 'dropped', 'blob.bin');
    let sent = 0;
    const source = Readable.from((function* () {
      for (let off = 0; off < data.length; off += 256 * 1024) {
        sent += 256 * 1024;
        if (sent === 8 * 1024 * 1024) session.destroy();
        yield data.subarray(off, off + 256 * 1024);
      }
    })());
    const err = await fs.streamToFileAtomic(target, source).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect(existsSync(target)).toBe(false);
  });

  it('a write the server refuses fails with E_IO naming the path', async () => {
    const session = await SshSession.open(sshOpts());
    try {
      const fs = new SftpFileSystem(await session.sftp(), 'sftp test', session.dropped);
      // A directory where the file should go: open() for writing fails on the server.
      const target = join(tmp.path, 'is-a-dir');
      await fs.mkdirs(join(target, 'x'));
      const err = await new Promise<unknown>((resolve) => {
        const w = fs.createWriteStream(target);
        w.on('error', resolve);
        w.end(Buffer.from('x'), (e?: Error | null) => resolve(e ?? undefined));
      });
      expect(err).toBeInstanceOf(Error);
      const viaAtomic = await fs.streamToFileAtomic(join(target, 'x'), Readable.from([Buffer.from('y')])).then(() => undefined, (e: unknown) => e);
      expect(viaAtomic).toMatchObject({ code: 'E_IO' });
      expect((viaAtomic as Error).message).toContain(join(target, 'x'));
    } finally {
      session.close();
    }
  });
});
