// Launches a real OpenSSH sshd on a random loopback port with throwaway host and user
// keys, a temp authorized_keys and a matching known_hosts, for the SSH jump-host tests.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './registry.js';
import { makeTempDir } from './tmp.js';

export const SSHD_BIN = '/usr/sbin/sshd';

export interface SshdOptions {
  /** Default true; false sets AllowTcpForwarding no (a jump host that refuses tunnels). */
  allowTcpForwarding?: boolean;
  /** Extra sshd_config lines. */
  extraConfig?: string[];
}

export interface SshKey {
  /** Private key (OpenSSH format, no passphrase). */
  path: string;
  publicKey: string;
}

export interface SshdHandle {
  host: string;
  port: number;
  user: string;
  /** The authorized user key. */
  keyPath: string;
  /** known_hosts with this server's host key under `[127.0.0.1]:PORT`. */
  knownHostsPath: string;
  /** The host public key line (`ssh-ed25519 AAAA…`). */
  hostPublicKey: string;
  /** A key that is NOT authorized, for negative tests. */
  otherKeyPath: string;
  logFile: string;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

function ensureBins(): void {
  for (const [bin, pkg] of [
    [SSHD_BIN, 'openssh-server'],
    ['/usr/bin/ssh-keygen', 'openssh-client'],
  ] as const) {
    if (!existsSync(bin)) throw new Error(`${bin} not found: \`npm test\` installs it (scripts/ensure-peers.mjs), or run \`apt-get install ${pkg}\``);
  }
}

export function makeSshKey(dir: string, name: string, type: 'ed25519' | 'rsa' = 'ed25519'): SshKey {
  const path = join(dir, name);
  execFileSync('ssh-keygen', ['-q', '-t', type, ...(type === 'rsa' ? ['-b', '2048'] : []), '-N', '', '-C', `ferry-test-${name}`, '-f', path], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return { path, publicKey: readFileSync(`${path}.pub`, 'utf8').trim() };
}

function banner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(1000, () => done(false));
    s.once('data', (d: Buffer) => done(d.toString('latin1').startsWith('SSH-2.0-')));
    s.once('error', () => done(false));
  });
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

export async function startSshd(opts: SshdOptions = {}): Promise<SshdHandle> {
  ensureBins();
  // sshd refuses to start without its privilege-separation directory.
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const work = makeTempDir('ferry-sshd-');
  const hostKey = makeSshKey(work.path, 'ssh_host_ed25519_key');
  const userKey = makeSshKey(work.path, 'id_ed25519');
  const otherKey = makeSshKey(work.path, 'id_other');
  const authorizedKeys = join(work.path, 'authorized_keys');
  writeFileSync(authorizedKeys, `${userKey.publicKey}\n`, { mode: 0o600 });
  const user = userInfo().username;
  const logFile = join(work.path, 'sshd.log');
  const configFile = join(work.path, 'sshd_config');
  const knownHostsPath = join(work.path, 'known_hosts');

  let lastFailure = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    writeFileSync(
      configFile,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey.path}`,
        `PidFile ${join(work.path, 'sshd.pid')}`,
        `AuthorizedKeysFile ${authorizedKeys}`,
        'PermitRootLogin prohibit-password',
        'StrictModes no',
        'UsePAM no',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        `AllowTcpForwarding ${opts.allowTcpForwarding === false ? 'no' : 'yes'}`,
        'AllowStreamLocalForwarding no',
        'X11Forwarding no',
        'PermitTunnel no',
        'Subsystem sftp internal-sftp',
        'LogLevel VERBOSE',
        'UseDNS no',
        ...(opts.extraConfig ?? []),
        '',
      ].join('\n'),
    );
    writeFileSync(knownHostsPath, `[127.0.0.1]:${port} ${hostKey.publicKey}\n`);
    const fd = openSync(logFile, 'a');
    // -D: stay in the foreground; -e: log to stderr (our log file).
    const child = spawn(SSHD_BIN, ['-D', '-e', '-f', configFile], { stdio: ['ignore', fd, fd] });
    closeSync(fd);
    live.add(child);
    let exited: string | undefined;
    child.once('exit', (code, signal) => {
      live.delete(child);
      exited = `exited with ${signal ?? `code ${code}`}`;
    });
    child.once('error', (e) => (exited = `failed to start: ${e.message}`));
    const deadline = Date.now() + 10_000;
    let up = false;
    while (Date.now() < deadline && exited === undefined) {
      if (await banner(port)) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (up) {
      let stopped = false;
      return {
        host: '127.0.0.1',
        port,
        user,
        keyPath: userKey.path,
        knownHostsPath,
        hostPublicKey: hostKey.publicKey,
        otherKeyPath: otherKey.path,
        logFile,
        logTail: (n?: number) => tail(logFile, n),
        async stop() {
          if (stopped) return;
          stopped = true;
          if (child.exitCode === null && child.signalCode === null) {
            const done = new Promise<void>((r) => child.once('exit', () => r()));
            child.kill('SIGTERM');
            const t = setTimeout(() => child.kill('SIGKILL'), 5000);
            await done;
            clearTimeout(t);
          }
          await work.cleanup();
        },
      };
    }
    if (exited === undefined) child.kill('SIGKILL');
    lastFailure = `${exited ?? 'did not answer with an SSH banner within 10 s'}\n--- ${logFile} (tail) ---\n${tail(logFile)}`;
    if (!/address already in use/i.test(tail(logFile))) break;
  }
  throw new Error(`sshd did not come up: ${lastFailure}`);
}
