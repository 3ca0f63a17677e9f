// Shared set-up for the SSH tests: a HOME with ~/.ssh/config and known_hosts for a
// real sshd, and a TCP relay in front of a registry that records WHICH PROCESS opened
// each connection (from /proc), so a test can prove the registry was reached only
// through sshd's forwarding and never directly by ferry.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import type { SshdHandle } from '../support/sshd.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

export interface SshHome {
  tmp: TempDir;
  home: string;
  configFile: string;
  knownHostsFile: string;
  /** The Host alias in ~/.ssh/config that names the sshd (HostName, Port, User, IdentityFile set). */
  alias: string;
}

/** A throwaway HOME whose ~/.ssh/config names the sshd as `alias`, with its known_hosts copied in. */
export function makeSshHome(sshd: SshdHandle, alias = 'jump', knownHosts?: string): SshHome {
  const tmp = makeTempDir('ferry-ssh-home-');
  const dir = join(tmp.path, '.ssh');
  mkdirSync(dir, { mode: 0o700 });
  const configFile = join(dir, 'config');
  writeFileSync(configFile, [
    '# written by the ferry SSH tests',
    `Host ${alias}`,
    '    HostName 127.0.0.1',
    `    Port ${sshd.port}`,
    `    User ${sshd.user}`,
    `    IdentityFile ${sshd.keyPath}`,
    'Host *',
    '    User nobody-should-use-this',
    '',
  ].join('\n'), { mode: 0o600 });
  const knownHostsFile = join(dir, 'known_hosts');
  writeFileSync(knownHostsFile, knownHosts ?? readFileSync(sshd.knownHostsPath, 'utf8'), { mode: 0o600 });
  return { tmp, home: tmp.path, configFile, knownHostsFile, alias };
}

/** The fingerprint OpenSSH itself prints for a public key line (independent of ferry's code). */
export function opensshFingerprint(publicKeyLine: string, dir: string): string {
  const f = join(dir, `fp-${Date.now()}.pub`);
  writeFileSync(f, `${publicKeyLine}\n`);
  const out = execFileSync('ssh-keygen', ['-l', '-E', 'sha256', '-f', f], { encoding: 'utf8' });
  const m = /(SHA256:\S+)/.exec(out);
  if (!m) throw new Error(`ssh-keygen -l printed no fingerprint: ${out}`);
  return m[1]!;
}

function hexPort(field: string): number {
  return parseInt(field.split(':')[1]!, 16);
}

/** The process that owns the client end of a loopback connection to `serverPort` from `clientPort`. */
export function ownerOfClientSocket(clientPort: number, serverPort: number): { pid: number; comm: string } | undefined {
  let inode: string | undefined;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (hexPort(f[1]!) === clientPort && hexPort(f[2]!) === serverPort) inode = f[9];
    }
  }
  if (inode === undefined || inode === '0') return undefined;
  const want = `socket:[${inode}]`;
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        if (readlinkSync(`/proc/${pid}/fd/${fd}`) === want) {
          return { pid: Number(pid), comm: readFileSync(`/proc/${pid}/comm`, 'utf8').trim() };
        }
      } catch {
        // the process or fd went away
      }
    }
  }
  return undefined;
}

export interface WitnessRelay {
  port: number;
  host: string;
  /** One entry per accepted connection: the command name of the process that opened it. */
  connections: { comm: string; pid: number }[];
  stop(): Promise<void>;
}

/** A relay 127.0.0.1:port → 127.0.0.1:targetPort that records who connected. */
export async function startWitnessRelay(targetPort: number): Promise<WitnessRelay> {
  const connections: { comm: string; pid: number }[] = [];
  const sockets = new Set<Socket>();
  let port = 0;
  const server: Server = createServer({ pauseOnConnect: true }, (client) => {
    // Looked up before a byte flows, while the client end certainly exists.
    const owner = ownerOfClientSocket(client.remotePort ?? -1, port) ?? { pid: -1, comm: '(unknown)' };
    connections.push(owner);
    const upstream = connect({ host: '127.0.0.1', port: targetPort });
    sockets.add(client);
    sockets.add(upstream);
    client.on('close', () => sockets.delete(client));
    upstream.on('close', () => sockets.delete(upstream));
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
    client.pipe(upstream).pipe(client);
    client.resume();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as { port: number }).port;
  return {
    port, host: `127.0.0.1:${port}`, connections,
    stop: () => new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    }),
  };
}
