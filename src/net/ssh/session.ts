import { setMaxListeners } from 'node:events';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import type { Client, ClientChannel, SFTPWrapper, ServerHostKeyAlgorithm } from 'ssh2';
import { FerryError, isFerryError } from '../../errors.js';
import type { ConnectionFactory } from '../http.js';
import { planAuth } from './auth.js';
import { loadSshConfig, resolveEndpoint, type SshEndpoint } from './config.js';
import { fingerprint, hostLookupName, keyTypeOf, KnownHosts } from './known-hosts.js';
import { socketLike } from './socket-like.js';
import { ssh2 } from './ssh2.js';

/**
 * One SSH connection to a jump host (through any ProxyJump hops before it),
 * shared by everything a command does there: `direct-tcpip` channels for
 * registry connections, an SFTP session, `exec` for a remote checksum. ssh2
 * multiplexes the channels on the one connection; keep-alives notice a dead
 * link instead of hanging on it.
 */

export interface SshOptions {
  /** --ssh: [user@]host[:port] or an alias from ~/.ssh/config. */
  destination: string;
  /** --ssh-jump: hops before the destination (comma-separated, as ProxyJump); overrides the config's ProxyJump. */
  jump?: string | undefined;
  /** --ssh-key: identity files tried first. */
  keyFiles?: string[] | undefined;
  passphrase?: string | undefined;
  /** --ssh-accept-new: trust and record a host key never seen before (never a changed one). */
  acceptNew?: boolean | undefined;
  askPassword?: ((prompt: string) => Promise<string | undefined>) | undefined;
  /** Default ~/.ssh/known_hosts. */
  knownHostsFile?: string | undefined;
  /** Default ~/.ssh/config. */
  configFile?: string | undefined;
  agentSocket?: string | undefined;
  keepaliveIntervalMs?: number | undefined;
  readyTimeoutMs?: number | undefined;
  /** Lines for the user (a host key added, say). */
  info?: ((line: string) => void) | undefined;
}

export interface ExecResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

const EXEC_OUTPUT_MAX = 64 * 1024;

const HOST_KEY_ALGOS: Record<string, ServerHostKeyAlgorithm[]> = {
  'ssh-ed25519': ['ssh-ed25519'],
  'ecdsa-sha2-nistp256': ['ecdsa-sha2-nistp256'],
  'ecdsa-sha2-nistp384': ['ecdsa-sha2-nistp384'],
  'ecdsa-sha2-nistp521': ['ecdsa-sha2-nistp521'],
  'ssh-rsa': ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'],
};

function label(ep: SshEndpoint): string {
  return `${ep.user}@${hostLookupName(ep.host, ep.port)}`;
}

export class SshSession {
  private sftpSession: Promise<SFTPWrapper> | undefined;
  private closed = false;
  private lastError: Error | undefined;
  /** Every SFTP request and tunnelled connection in flight listens to it: as many as --jobs allows, not a leak. */
  private readonly drop = (() => {
    const c = new AbortController();
    setMaxListeners(0, c.signal);
    return c;
  })();

  private constructor(readonly endpoint: SshEndpoint, private readonly clients: Client[]) {
    const target = clients[clients.length - 1]!;
    target.on('error', (e: Error) => (this.lastError = e));
    target.on('close', () => {
      this.closed = true;
      // ssh2 leaves requests on a dead connection unanswered: whoever waits on one listens to this instead.
      this.drop.abort(new FerryError('E_NETWORK', `ssh ${this.description}: the connection dropped${this.lastError ? ` (${this.lastError.message})` : ''}`, {
        hint: 'run the command again: what was written completely stays, uploads resume where they stopped',
      }));
    });
  }

  /** Aborted when the SSH connection goes away (dropped, or closed by us). */
  get dropped(): AbortSignal {
    return this.drop.signal;
  }

  /** `user@host:port` of the last hop: where channels open from. */
  get description(): string {
    return label(this.endpoint);
  }

  static async open(opts: SshOptions): Promise<SshSession> {
    const blocks = await loadSshConfig(opts.configFile);
    const target = resolveEndpoint(opts.destination, blocks, '--ssh');
    const jumpSpec = opts.jump ?? target.proxyJump;
    const hops = jumpSpec ? jumpSpec.split(',').map((h) => resolveEndpoint(h.trim(), blocks, '--ssh-jump')) : [];
    const knownHosts = await KnownHosts.load(opts.knownHostsFile ?? join(homedir(), '.ssh', 'known_hosts'));
    const clients: Client[] = [];
    try {
      let sock: Duplex | undefined;
      for (const ep of [...hops, target]) {
        const client = await connectHop(ep, sock, knownHosts, opts, opts.keyFiles ?? []);
        clients.push(client);
        if (ep !== target) {
          const next = hops[clients.length] ?? target;
          sock = await forward(client, label(ep), next.host, next.port);
        }
      }
    } catch (e) {
      for (const c of clients.reverse()) c.end();
      throw e;
    }
    return new SshSession(target, clients);
  }

  /** Opens a TCP connection from the jump host to host:port; the result behaves enough like a socket for node:http and node:tls. */
  async connectTo(host: string, port: number): Promise<Duplex> {
    this.assertOpen();
    return socketLike(await forward(this.client, this.description, host, port));
  }

  /** The HTTP client's connection factory: every registry connection goes through the jump host. */
  get connectionFactory(): ConnectionFactory {
    return ({ host, port }) => this.connectTo(host.replace(/^\[|\]$/g, ''), port);
  }

  sftp(): Promise<SFTPWrapper> {
    this.assertOpen();
    if (!this.sftpSession) {
      this.sftpSession = new Promise<SFTPWrapper>((resolve, reject) => {
        this.client.sftp((err, sftp) => {
          if (err) {
            reject(new FerryError('E_NETWORK', `ssh ${this.description}: the server refused an SFTP session: ${err.message}`, {
              hint: 'the SSH server needs an sftp subsystem (Subsystem sftp internal-sftp in sshd_config)', cause: err,
            }));
          } else resolve(sftp);
        });
      });
      this.sftpSession.catch(() => (this.sftpSession = undefined));
    }
    return this.sftpSession;
  }

  /** Runs a command on the remote host (output capped); rejects only when no command could be started. */
  exec(command: string): Promise<ExecResult> {
    this.assertOpen();
    return new Promise((resolve, reject) => {
      this.client.exec(command, (err, stream) => {
        if (err) return reject(err);
        const out: Buffer[] = [];
        const errOut: Buffer[] = [];
        let size = 0;
        let code: number | null = null;
        const keep = (into: Buffer[]) => (c: Buffer) => {
          size += c.length;
          if (size <= EXEC_OUTPUT_MAX) into.push(c);
        };
        stream.on('data', keep(out));
        stream.stderr.on('data', keep(errOut));
        // sshd sends the output, EOF, then exit-status; its channel close can lag by seconds, so we do not wait for it.
        let exited = false;
        let ended = false;
        const finish = (): void => {
          if (exited && ended) resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errOut).toString('utf8') });
        };
        stream.on('exit', (c: number | null) => {
          code = c;
          exited = true;
          finish();
        });
        stream.on('end', () => {
          ended = true;
          finish();
        });
        stream.on('close', () => {
          exited = ended = true;
          finish();
        });
        stream.on('error', reject);
      });
    });
  }

  /** Cuts the connection at once (tests use it to simulate a dropped link). */
  destroy(): void {
    this.closed = true;
    for (const c of [...this.clients].reverse()) c.destroy();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.clients].reverse()) c.end();
  }

  private get client(): Client {
    return this.clients[this.clients.length - 1]!;
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new FerryError('E_NETWORK', `ssh ${this.description}: the connection is closed${this.lastError ? ` (${this.lastError.message})` : ''}`, {
        hint: 'the SSH connection dropped; run the command again (transfers resume where they stopped)',
      });
    }
  }
}

async function connectHop(ep: SshEndpoint, sock: Duplex | undefined, knownHosts: KnownHosts, opts: SshOptions, extraKeys: string[]): Promise<Client> {
  const { Client: SshClient } = await ssh2();
  const where = label(ep);
  const auth = planAuth({
    user: ep.user,
    keyFiles: [...extraKeys, ...ep.identityFiles],
    passphrase: opts.passphrase,
    agentSocket: opts.agentSocket,
    askPassword: opts.askPassword,
  });
  let hostKeyFailure: FerryError | undefined;
  const preferred = knownHosts.keyTypesFor(ep.host, ep.port).flatMap((t) => HOST_KEY_ALGOS[t] ?? []);

  return new Promise<Client>((resolve, reject) => {
    const client = new SshClient();
    let ready = false;
    const fail = (e: FerryError): void => {
      if (ready) return;
      client.destroy();
      reject(e);
    };
    client.once('ready', () => {
      ready = true;
      resolve(client);
    });
    client.on('error', (err: Error & { level?: string; code?: string }) => {
      if (ready) return; // later errors surface on the channel that meets them
      if (hostKeyFailure) return fail(hostKeyFailure);
      fail(connectError(err, where, ep, auth.tried, auth.problems));
    });
    client.once('close', () => {
      if (!ready) fail(hostKeyFailure ?? new FerryError('E_NETWORK', `ssh ${where}: the server closed the connection during the handshake`, {
        hint: 'check the SSH server log; it may refuse this client address or user',
      }));
    });
    client.connect({
      host: ep.host,
      port: ep.port,
      username: ep.user,
      ...(sock ? { sock } : {}),
      keepaliveInterval: opts.keepaliveIntervalMs ?? 15_000,
      keepaliveCountMax: 4,
      readyTimeout: opts.readyTimeoutMs ?? 30_000,
      ...(preferred.length > 0 ? { algorithms: { serverHostKey: { prepend: preferred, append: [], remove: [] } } } : {}),
      authHandler: auth.handler,
      hostVerifier: (key: Buffer, verify: (ok: boolean) => void) => {
        const verdict = knownHosts.check(ep.host, ep.port, key);
        const fp = fingerprint(key);
        const type = keyTypeOf(key);
        const name = hostLookupName(ep.host, ep.port);
        if (verdict.kind === 'known') return verify(true);
        if (verdict.kind === 'unknown' && opts.acceptNew) {
          knownHosts.add(ep.host, ep.port, key).then(
            () => {
              opts.info?.(`ssh: added ${name} (${type} ${fp}) to ${knownHosts.file}`);
              verify(true);
            },
            (e: Error) => {
              hostKeyFailure = new FerryError('E_IO', `ssh ${where}: cannot add the host key to ${knownHosts.file}: ${e.message}`, { cause: e });
              verify(false);
            },
          );
          return;
        }
        hostKeyFailure = hostKeyError(verdict.kind, name, where, type, fp, knownHosts.file, 'knownAt' in verdict ? verdict.knownAt : []);
        verify(false);
      },
    });
  });
}

function hostKeyError(kind: 'unknown' | 'changed' | 'revoked', name: string, where: string, type: string, fp: string, file: string, knownAt: string[]): FerryError {
  const details = { host: name, fingerprint: fp, keyType: type, knownHosts: file, knownAt };
  if (kind === 'unknown') {
    return new FerryError('E_AUTH', `ssh ${where}: host key not known: ${name} offers ${type} key ${fp}, which is not in ${file}`, {
      hint: `check that ${fp} is the server's key (on the server: ssh-keygen -lf /etc/ssh/ssh_host_${type.replace(/^ssh-|-sha2-nistp\d+$/g, '')}_key.pub), then run again with --ssh-accept-new to record it`,
      details,
    });
  }
  if (kind === 'revoked') {
    return new FerryError('E_AUTH', `ssh ${where}: the host key ${type} ${fp} is marked @revoked in ${knownAt.join(', ')}`, {
      hint: 'this key must not be trusted; ask the server\'s administrator for its new key', details,
    });
  }
  return new FerryError('E_AUTH', `ssh ${where}: HOST KEY CHANGED: ${name} now offers ${type} key ${fp}, but ${knownAt.join(', ')} holds a different key. Someone could be intercepting the connection (man in the middle), or the host key was replaced`, {
    hint: `ferry never trusts a changed key. Confirm the new key with the server's administrator; if the change is genuine, remove the old entry with \`ssh-keygen -R '${name}' -f ${file}\` and connect again with --ssh-accept-new`,
    details,
  });
}

function connectError(err: Error & { level?: string; code?: string }, where: string, ep: SshEndpoint, tried: string[], problems: string[]): FerryError {
  const details = { host: hostLookupName(ep.host, ep.port), errno: err.code };
  if (err.level === 'client-authentication') {
    return new FerryError('E_AUTH', `ssh ${where}: authentication failed (tried: ${tried.join(', ') || 'nothing'})${problems.length > 0 ? `; ${problems.join('; ')}` : ''}`, {
      hint: `pass the key authorized for ${ep.user} with --ssh-key (or load it into ssh-agent), check the user name, and --ssh-passphrase-stdin for an encrypted key`,
      cause: err, details,
    });
  }
  if (err.code === 'ECONNREFUSED') {
    return new FerryError('E_NETWORK', `ssh ${where}: connection refused`, {
      hint: 'check that sshd runs on that host and port (--ssh user@host:port, or Port in ~/.ssh/config)', cause: err, details,
    });
  }
  if (err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN') {
    return new FerryError('E_NETWORK', `ssh ${where}: cannot resolve ${ep.host}`, { hint: 'check the jump host name, or its HostName in ~/.ssh/config', cause: err, details });
  }
  if (err.level === 'client-timeout') {
    return new FerryError('E_NETWORK', `ssh ${where}: no SSH handshake within the time limit`, { hint: 'check that the port is an SSH server and that no firewall drops the traffic', cause: err, details });
  }
  return new FerryError('E_NETWORK', `ssh ${where}: ${err.message}`, { hint: 'check the SSH server and the network path to it', cause: err, details });
}

/** A direct-tcpip channel from `client` to host:port, with sshd's refusal translated. */
function forward(client: Client, where: string, host: string, port: number): Promise<ClientChannel> {
  return new Promise((resolve, reject) => {
    try {
      client.forwardOut('127.0.0.1', 0, host, port, (err, channel) => {
        if (!err) return resolve(channel);
        const target = hostLookupName(host, port);
        const e = err as Error & { reason?: number };
        if (/administratively prohibited/i.test(e.message) || e.reason === 1) {
          return reject(new FerryError('E_NETWORK', `ssh ${where}: the server refused to forward a connection to ${target} (administratively prohibited): TCP forwarding is disabled for this user`, {
            hint: 'on the jump host set `AllowTcpForwarding yes` (or `local`) in sshd_config, or allow this target with PermitOpen, and reload sshd',
            cause: err, details: { target, reason: 'administratively prohibited' },
          }));
        }
        reject(new FerryError('E_NETWORK', `ssh ${where}: the jump host could not connect to ${target}: ${e.message}`, {
          hint: `check from the jump host that ${target} is reachable (is the registry up, and the name resolvable there?)`,
          cause: err, details: { target },
        }));
      });
    } catch (e) {
      reject(isFerryError(e) ? e : new FerryError('E_NETWORK', `ssh ${where}: ${(e as Error).message}`, { cause: e, hint: 'the SSH connection dropped; run the command again' }));
    }
  });
}
