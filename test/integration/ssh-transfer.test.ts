// Moving images and bundles over a real OpenSSH jump host: `ferry push --ssh` with the
// registry reached only through sshd's forwarding (proved from /proc, not assumed),
// `ferry import --to registry-layout DIR --ssh` served afterwards by the real registry,
// and `ferry send` cut off mid-transfer and resumed.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exportBundle } from '../../src/app/export.js';
import { importBundle } from '../../src/app/import.js';
import { filesToSend, PARTIAL_PREFIX, sendFiles, type SendEvent } from '../../src/app/send.js';
import { SshSession, type SshOptions } from '../../src/net/ssh/session.js';
import { RESUME_OVERLAP } from '../../src/fsys/sftp.js';
import { runFerry } from '../support/cli.js';
import { sampleCorpus, type PushedCorpus } from '../support/corpus.js';
import { Rng } from '../support/prng.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeoInspectDigest } from '../support/skopeo.js';
import { startSshd, type SshdHandle } from '../support/sshd.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { validateRegistryImage } from '../support/validate.js';
import { makeSshHome, startWitnessRelay, type SshHome } from './ssh-fixture.js';

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), async function* (src: AsyncIterable<Buffer>) {
    for await (const c of src) h.update(c);
  });
  return h.digest('hex');
}

function tempFilesUnder(dir: string): string[] {
  return (readdirSync(dir, { recursive: true }) as string[]).filter((p) => /(^|\/)\.ferry-(tmp|partial)-/.test(p));
}

describe('ssh transfers (real sshd, real registry, skopeo)', () => {
  let sshd: SshdHandle;
  let src: RegistryHandle;
  let corpus: PushedCorpus;
  let home: SshHome;
  let tmp: TempDir;
  let bundle: string;
  const sshOpts = (): SshOptions => ({ destination: home.alias, configFile: home.configFile, knownHostsFile: home.knownHostsFile, agentSocket: '' });
  const env = () => ({ HOME: home.home, SSH_AUTH_SOCK: '' });

  beforeAll(async () => {
    [sshd, src] = await Promise.all([startSshd(), startRegistry()]);
    home = makeSshHome(sshd);
    tmp = makeTempDir('ferry-ssh-transfer-');
    corpus = await sampleCorpus(src.url, 4242);
    bundle = join(tmp.path, 'release.tar');
    await exportBundle({
      references: corpus.hostRefs, output: bundle, compression: 'none', jobs: 4,
      registry: { insecureAll: false, insecure: [], plainHttp: [src.host] },
    });
  }, 120_000);
  afterAll(async () => {
    await Promise.all([sshd?.stop(), src?.stop(), home?.tmp.cleanup(), tmp?.cleanup()]);
  });

  async function expectCorpusIn(reg: RegistryHandle | string): Promise<void> {
    const host = typeof reg === 'string' ? reg : reg.host;
    for (const e of corpus.entries) {
      for (const ref of e.refs) {
        expect(await skopeoInspectDigest(`${host}/${ref}`), `${host}/${ref}`).toBe(e.digest);
        const walked = await validateRegistryImage(typeof reg === 'string' ? `http://${reg}` : reg.url, e.repo, ref.slice(e.repo.length + 1));
        expect(walked.digest).toBe(e.digest);
      }
    }
  }

  it('ferry push --ssh: every registry connection comes from sshd; digests verified with skopeo; timed against a direct push', async () => {
    const [viaTunnel, direct] = await Promise.all([startRegistry(), startRegistry()]);
    const relayT = await startWitnessRelay(viaTunnel.port);
    const relayD = await startWitnessRelay(direct.port);
    try {
      let t0 = Date.now();
      const r = await runFerry(['push', bundle, '--to', relayT.host, '--plain-http', relayT.host, '--ssh', home.alias, '--json', '-j', '4'], { env: env() });
      const tunnelMs = Date.now() - t0;
      expect(r.code, r.stderr).toBe(0);
      expect(relayT.connections.length).toBeGreaterThan(0);
      expect(new Set(relayT.connections.map((c) => c.comm.replace(/-session$/, '')))).toEqual(new Set(['sshd']));

      t0 = Date.now();
      const d = await runFerry(['push', bundle, '--to', relayD.host, '--plain-http', relayD.host, '--json', '-j', '4'], { env: env() });
      const directMs = Date.now() - t0;
      expect(d.code, d.stderr).toBe(0);
      // The control: a direct push is seen as ferry's own process (node), never sshd.
      expect(relayD.connections.every((c) => !/^sshd/.test(c.comm) && c.pid > 0)).toBe(true);

      await expectCorpusIn(viaTunnel);
      await expectCorpusIn(direct);
      const bytes = statSync(bundle).size;
      console.log(`[ssh-bench] push ${corpus.entries.length} images, bundle ${bytes} bytes: direct ${directMs} ms, through sshd ${tunnelMs} ms (${relayT.connections.length} tunnelled connections)`);
    } finally {
      await Promise.all([relayT.stop(), relayD.stop()]);
      await Promise.all([viaTunnel.stop(), direct.stop()]);
    }
  }, 180_000);

  it('ferry import --to registry-layout DIR --ssh writes over SFTP a layout the real registry serves', async () => {
    const layout = join(tmp.path, 'remote-layout');
    const receiptFile = join(tmp.path, 'ssh-import-receipt.json');
    const receipt = await importBundle({ bundle, to: { kind: 'registry-layout', location: layout }, jobs: 4, registry: { insecureAll: false, insecure: [], plainHttp: [] }, ssh: sshOpts(), receiptFile });
    expect(receipt.images.every((i) => i.status === 'done')).toBe(true);
    // The receipt stays with whoever ran the import (here), not inside the remote target.
    expect(receipt.receipt).toBe(receiptFile);
    expect(existsSync(receiptFile)).toBe(true);
    expect(existsSync(join(layout, 'ferry-receipts'))).toBe(false);
    expect(tempFilesUnder(layout)).toEqual([]);
    const mode = statSync(join(layout, 'docker', 'registry', 'v2', 'blobs')).mode & 0o777;
    expect(mode).toBe(0o755);
    // Run again: everything already there, nothing rewritten.
    const again = await importBundle({ bundle, to: { kind: 'registry-layout', location: layout }, jobs: 4, registry: { insecureAll: false, insecure: [], plainHttp: [] }, ssh: sshOpts(), receiptFile });
    expect(again.blobs.copied).toBe(0);
    const served = await startRegistry({ storageDir: layout });
    try {
      await expectCorpusIn(served);
    } finally {
      await served.stop();
    }
  }, 180_000);

  it('ferry send: a transfer cut off mid-way resumes from the partial file and ends with the same sha256', async () => {
    const file = join(tmp.path, 'big.tar');
    const size = 24 * 1024 * 1024 + 12345;
    const buf = Buffer.alloc(size);
    new Rng(99).fill(buf);
    writeFileSync(file, buf);
    writeFileSync(`${file}.ferry.json`, JSON.stringify({ note: 'sidecar', seed: 99 }));
    const want = await sha256File(file);
    const dest = join(tmp.path, 'inbox');
    await mkdir(dest);

    const first = await SshSession.open(sshOpts());
    let cut = false;
    const err = await sendFiles(first, await filesToSend([file]), dest, {
      onEvent: (e: SendEvent) => {
        // Past the write window (up to RESUME_OVERLAP may still be unanswered when the link drops): the partial file then holds more than one window.
        if (e.type === 'progress' && e.bytes > 14 * 1024 * 1024 && !cut) {
          cut = true;
          first.destroy();
        }
      },
    }).then(() => undefined, (e: unknown) => e);
    expect(cut).toBe(true);
    expect(err).toBeInstanceOf(Error);
    const partial = join(dest, `${PARTIAL_PREFIX}big.tar`);
    // sshd still writes the requests it had received when the client went away (several are in flight at once):
    // the partial file is what it is once its size stops changing.
    let partialSize = statSync(partial).size;
    for (let same = 0; same < 3; ) {
      await new Promise((r) => setTimeout(r, 100));
      const now = statSync(partial).size;
      same = now === partialSize ? same + 1 : 0;
      partialSize = now;
    }
    expect(partialSize).toBeGreaterThan(0);
    expect(partialSize).toBeLessThan(size);
    expect(existsSync(join(dest, 'big.tar'))).toBe(false);

    // The resumed run goes through the CLI (scp-style destination with a ~/.ssh/config alias).
    const r = await runFerry(['send', file, `${home.alias}:${dest}/`, '--json'], { env: env() });
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout) as { files: { local: string; resumedFrom: number; uploaded: number; sha256: string; status: string; verifiedBy: string }[] };
    const big = report.files.find((f) => f.local === file)!;
    expect(big.resumedFrom).toBeGreaterThan(0);
    // Writes in flight when the link dropped may have landed out of order: the last window is sent again.
    expect(big.resumedFrom).toBe(partialSize - RESUME_OVERLAP);
    expect(big.uploaded).toBe(size - big.resumedFrom);
    expect(big.sha256).toBe(want);
    expect(big.verifiedBy).toBe('sha256sum');
    expect(report.files.map((f) => f.local)).toEqual([file, `${file}.ferry.json`]);
    expect(await sha256File(join(dest, 'big.tar'))).toBe(want);
    expect(await sha256File(join(dest, 'big.tar.ferry.json'))).toBe(await sha256File(`${file}.ferry.json`));
    expect(tempFilesUnder(dest)).toEqual([]);

    // A third run finds the copy complete and verified, and sends nothing.
    const second = await SshSession.open(sshOpts());
    try {
      const again = await sendFiles(second, await filesToSend([file]), dest);
      expect(again.files.map((f) => f.status)).toEqual(['already-there', 'already-there']);
    } finally {
      second.close();
    }
  }, 180_000);

  it('push --ssh through a jump host that refuses forwarding fails with the clear error and exit status 3', async () => {
    const noFwd = await startSshd({ allowTcpForwarding: false });
    const h = makeSshHome(noFwd, 'nofwd');
    try {
      const r = await runFerry(['push', bundle, '--to', src.host, '--plain-http', src.host, '--ssh', 'nofwd'], { env: { HOME: h.home, SSH_AUTH_SOCK: '' } });
      expect(r.code).toBe(3);
      expect(r.stderr).toMatch(/administratively prohibited/);
      expect(r.stderr).toMatch(/AllowTcpForwarding/);
    } finally {
      await noFwd.stop();
      await h.tmp.cleanup();
    }
  });

  it('an unknown host is refused by the CLI with its fingerprint, and accepted with --ssh-accept-new', async () => {
    const h = makeSshHome(sshd, 'jump', '');
    try {
      const r = await runFerry(['send', bundle, `jump:${join(tmp.path, 'inbox2')}`], { env: { HOME: h.home, SSH_AUTH_SOCK: '' } });
      expect(r.code).toBe(4);
      expect(r.stderr).toMatch(/SHA256:[A-Za-z0-9+/]{43}/);
      expect(r.stderr).toMatch(/--ssh-accept-new/);
      const ok = await runFerry(['send', bundle, `jump:${join(tmp.path, 'inbox2')}`, '--ssh-accept-new'], { env: { HOME: h.home, SSH_AUTH_SOCK: '' } });
      expect(ok.code, ok.stderr).toBe(0);
      expect(await sha256File(join(tmp.path, 'inbox2', 'release.tar'))).toBe(await sha256File(bundle));
    } finally {
      await h.tmp.cleanup();
    }
  });
});
