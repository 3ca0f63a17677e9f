// The SSH jump host against a real OpenSSH sshd: host-key checking (unknown, accepted,
// changed, hashed known_hosts), authentication, forwarding refused by the server,
// ProxyJump, and HTTP to a real registry through direct-tcpip channels.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FerryError } from '../../src/errors.js';
import { HttpClient, readCapped } from '../../src/net/http.js';
import { SshSession, type SshOptions } from '../../src/net/ssh/session.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { startSshd, type SshdHandle } from '../support/sshd.js';
import { makeSshHome, opensshFingerprint, startWitnessRelay, type SshHome } from './ssh-fixture.js';

async function refused(p: Promise<unknown>): Promise<FerryError> {
  const e = await p.then(() => undefined, (err: unknown) => err);
  if (!(e instanceof FerryError)) throw new Error(`expected a FerryError, got ${e instanceof Error ? e.stack : String(e)}`);
  return e;
}

describe('ssh jump host (real sshd)', () => {
  let sshd: SshdHandle;
  let noFwd: SshdHandle;
  let reg: RegistryHandle;
  let home: SshHome;
  const opts = (h: SshHome, extra: Partial<SshOptions> = {}): SshOptions => ({
    destination: h.alias, configFile: h.configFile, knownHostsFile: h.knownHostsFile, agentSocket: '', ...extra,
  });

  beforeAll(async () => {
    [sshd, noFwd, reg] = await Promise.all([startSshd(), startSshd({ allowTcpForwarding: false }), startRegistry()]);
    home = makeSshHome(sshd);
  });
  afterAll(async () => {
    await Promise.all([sshd?.stop(), noFwd?.stop(), reg?.stop(), home?.tmp.cleanup()]);
  });

  it('speaks HTTP to the registry through direct-tcpip channels opened by sshd, not directly', async () => {
    const relay = await startWitnessRelay(reg.port);
    const session = await SshSession.open(opts(home));
    const http = new HttpClient({ connect: session.connectionFactory });
    try {
      // Several requests at once: channels multiplexed on the one SSH connection.
      const answers = await Promise.all([0, 1, 2, 3].map(async () => {
        const res = await http.request({ method: 'GET', url: new URL(`http://${relay.host}/v2/`) });
        await readCapped(res.body, 4096);
        return res.status;
      }));
      expect(answers).toEqual([200, 200, 200, 200]);
      expect(relay.connections.length).toBeGreaterThan(0);
      for (const c of relay.connections) expect(c.comm).toMatch(/^sshd/);
      expect(relay.connections.map((c) => c.pid)).not.toContain(process.pid);
    } finally {
      http.close();
      session.close();
      await relay.stop();
    }
    // The witness can tell: a direct connection is recorded as this process.
    const direct = await startWitnessRelay(reg.port);
    const http2 = new HttpClient();
    try {
      const res = await http2.request({ method: 'GET', url: new URL(`http://${direct.host}/v2/`) });
      await readCapped(res.body, 4096);
      expect(direct.connections.map((c) => c.pid)).toEqual([process.pid]);
    } finally {
      http2.close();
      await direct.stop();
    }
  });

  it('reaches the target through a ProxyJump hop (--ssh-jump)', async () => {
    const session = await SshSession.open(opts(home, { jump: home.alias }));
    const http = new HttpClient({ connect: session.connectionFactory });
    try {
      const res = await http.request({ method: 'GET', url: new URL(`${reg.url}/v2/`) });
      await readCapped(res.body, 4096);
      expect(res.status).toBe(200);
    } finally {
      http.close();
      session.close();
    }
  });

  it('refuses an unknown host key, showing the fingerprint; --ssh-accept-new records it where OpenSSH finds it', async () => {
    const h = makeSshHome(sshd, 'jump', '');
    try {
      const fp = opensshFingerprint(sshd.hostPublicKey, h.tmp.path);
      const e = await refused(SshSession.open(opts(h)));
      expect(e.code).toBe('E_AUTH');
      expect(e.message).toContain(fp);
      expect(e.message).toMatch(/not known/);
      expect(e.hint).toMatch(/--ssh-accept-new/);
      expect(readFileSync(h.knownHostsFile, 'utf8')).toBe('');

      const lines: string[] = [];
      const session = await SshSession.open(opts(h, { acceptNew: true, info: (l) => lines.push(l) }));
      session.close();
      expect(lines.join('\n')).toContain(fp);
      // OpenSSH's own lookup finds the recorded key under [127.0.0.1]:port.
      const found = execFileSync('ssh-keygen', ['-F', `[127.0.0.1]:${sshd.port}`, '-f', h.knownHostsFile], { encoding: 'utf8' });
      expect(found).toContain(sshd.hostPublicKey.split(' ')[1]!);
      // Now known: no flag needed.
      (await SshSession.open(opts(h))).close();
    } finally {
      await h.tmp.cleanup();
    }
  });

  it('refuses a changed host key loudly, even with --ssh-accept-new', async () => {
    const otherPub = readFileSync(`${sshd.otherKeyPath}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
    const h = makeSshHome(sshd, 'jump', `# a stale entry\n[127.0.0.1]:${sshd.port} ${otherPub}\n`);
    try {
      const fp = opensshFingerprint(sshd.hostPublicKey, h.tmp.path);
      for (const acceptNew of [false, true]) {
        const e = await refused(SshSession.open(opts(h, { acceptNew })));
        expect(e.code).toBe('E_AUTH');
        expect(e.message).toMatch(/HOST KEY CHANGED/);
        expect(e.message).toContain(fp);
        expect(e.message).toContain(`${h.knownHostsFile}:2`);
        expect(e.hint).toMatch(/ssh-keygen -R/);
      }
      expect(readFileSync(h.knownHostsFile, 'utf8')).not.toContain(sshd.hostPublicKey.split(' ')[1]!);
    } finally {
      await h.tmp.cleanup();
    }
  });

  it('reads hashed known_hosts entries (ssh-keygen -H)', async () => {
    const h = makeSshHome(sshd);
    try {
      execFileSync('ssh-keygen', ['-H', '-f', h.knownHostsFile], { stdio: 'ignore' });
      const text = readFileSync(h.knownHostsFile, 'utf8');
      expect(text).toMatch(/^\|1\|/);
      expect(text).not.toContain('127.0.0.1');
      (await SshSession.open(opts(h))).close();
    } finally {
      await h.tmp.cleanup();
    }
  });

  it('fails authentication with a key the server does not accept, naming what was tried', async () => {
    const h = makeSshHome(sshd);
    try {
      writeFileSync(h.configFile, readFileSync(h.configFile, 'utf8').replace(`IdentityFile ${sshd.keyPath}`, `IdentityFile ${sshd.otherKeyPath}`));
      const e = await refused(SshSession.open(opts(h)));
      expect(e.code).toBe('E_AUTH');
      expect(e.message).toContain(sshd.otherKeyPath);
      expect(e.hint).toMatch(/--ssh-key/);
      // --ssh-key adds the right one.
      (await SshSession.open(opts(h, { keyFiles: [sshd.keyPath] }))).close();
    } finally {
      await h.tmp.cleanup();
    }
  });

  it('says so when nothing listens on the SSH port', async () => {
    const e = await refused(SshSession.open({ destination: `${sshd.user}@127.0.0.1:1`, knownHostsFile: home.knownHostsFile, configFile: join(home.home, 'none'), agentSocket: '', keyFiles: [sshd.keyPath] }));
    expect(e.code).toBe('E_NETWORK');
    expect(e.message).toMatch(/connection refused/);
  });

  it('explains a jump host with AllowTcpForwarding no', async () => {
    const h = makeSshHome(noFwd);
    const session = await SshSession.open(opts(h));
    try {
      const e = await refused(session.connectTo('127.0.0.1', reg.port));
      expect(e.code).toBe('E_NETWORK');
      expect(e.message).toMatch(/administratively prohibited/);
      expect(e.hint).toMatch(/AllowTcpForwarding yes/);
      // Through the HTTP client the same error reaches the caller.
      const http = new HttpClient({ connect: session.connectionFactory });
      const e2 = await refused(http.request({ method: 'GET', url: new URL(`${reg.url}/v2/`) }));
      http.close();
      expect(e2.message).toMatch(/administratively prohibited/);
    } finally {
      session.close();
      await h.tmp.cleanup();
    }
  });
});
