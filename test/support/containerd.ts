// A private containerd (Debian's 1.6) for `ctr images import` and `ctr images pull`:
// its own socket, root and state directory in a temp dir, stopped and removed after.
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startDaemon, unmountUnder } from './daemon.js';
import { requireProgram, runProgram, type ProgramOptions, type ProgramResult } from './run.js';
import { makeTempDir } from './tmp.js';

export const CONTAINERD_BIN = '/usr/bin/containerd';
export const CTR_BIN = '/usr/bin/ctr';

export interface CtrImage {
  /** `docker.io/library/x:1`: ctr keeps names as given, normalised. */
  name: string;
  /** The manifest (or index) digest containerd stored. */
  digest: string;
  mediaType: string;
}

export interface ContainerdHandle {
  /** The gRPC socket. */
  address: string;
  pid: number;
  root: string;
  /** `ctr --address SOCK -n NAMESPACE …` (namespace default `test`). */
  ctr(args: string[], opts?: ProgramOptions & { namespace?: string }): Promise<ProgramResult>;
  ctrOk(args: string[], opts?: ProgramOptions & { namespace?: string }): Promise<ProgramResult>;
  images(namespace?: string): Promise<CtrImage[]>;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

/**
 * The configuration, and why:
 * - `root`, `state`, `[grpc]`/`[ttrpc]` addresses in the temp dir: nothing under
 *   /var/lib/containerd or /run/containerd, and no clash with a system containerd
 *   or another test's;
 * - the CRI plugin disabled: it wants CNI and a kubelet's directories and is not what
 *   `ctr` talks to;
 * - the `opt` plugin's path moved from /opt/containerd (which it creates at start);
 * - debug and metrics listeners off.
 * `ctr` runs with CONTAINERD_SNAPSHOTTER=native (its `--snapshotter` default), so
 * unpacking a layer is a plain copy into the root: no overlay mounts that would need
 * the kernel's overlayfs and could outlive a killed daemon.
 */
function configToml(dir: string): string {
  const q = (s: string) => JSON.stringify(s);
  return [
    'version = 2',
    `root = ${q(join(dir, 'root'))}`,
    `state = ${q(join(dir, 'state'))}`,
    'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '[grpc]',
    `  address = ${q(join(dir, 'containerd.sock'))}`,
    '[ttrpc]',
    `  address = ${q(join(dir, 'containerd.sock.ttrpc'))}`,
    '[debug]',
    '  address = ""',
    '[metrics]',
    '  address = ""',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(join(dir, 'opt'))}`,
    '',
  ].join('\n');
}

/** Temp dirs of running daemons: removed on worker exit after daemon.ts killed the daemons (an unpack's bind mount may remain). */
const liveDirs = new Set<string>();
process.on('exit', () => {
  for (const dir of liveDirs) {
    try {
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true });
    } catch {
      // best effort
    }
  }
});

/** The snapshotter every `ctr images import|pull` here unpacks into (see configToml). */
export const CTR_SNAPSHOTTER = 'native';

export async function startContainerd(): Promise<ContainerdHandle> {
  requireProgram(CONTAINERD_BIN, 'containerd');
  requireProgram(CTR_BIN, 'containerd');
  const dir = makeTempDir('ferry-containerd-');
  liveDirs.add(dir.path);
  const config = join(dir.path, 'config.toml');
  writeFileSync(config, configToml(dir.path));
  const address = join(dir.path, 'containerd.sock');
  const ctr = (args: string[], opts: ProgramOptions & { namespace?: string } = {}) =>
    runProgram(CTR_BIN, ['--address', address, '--namespace', opts.namespace ?? 'test', ...args], {
      ...opts, env: { CONTAINERD_SNAPSHOTTER: CTR_SNAPSHOTTER, ...(opts.env ?? {}) },
    });
  let daemon;
  try {
    daemon = await startDaemon('containerd', CONTAINERD_BIN, ['--config', config], {
      logFile: join(dir.path, 'containerd.log'),
      ready: async () => (await runProgram(CTR_BIN, ['--address', address, 'version'], { timeoutMs: 5000 })).code === 0,
    });
  } catch (e) {
    unmountUnder(dir.path);
    await dir.cleanup();
    liveDirs.delete(dir.path);
    throw e;
  }
  const started = daemon;
  let stopped = false;
  const handle: ContainerdHandle = {
    address,
    pid: started.child.pid!,
    root: join(dir.path, 'root'),
    ctr,
    async ctrOk(args, opts = {}) {
      const r = await ctr(args, opts);
      if (r.code !== 0) throw new Error(`ctr ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}\n--- containerd log:\n${started.logTail(15)}`);
      return r;
    },
    async images(namespace) {
      // `ls -q` prints names only; the full table is fixed-width text, so read it column by column.
      const r = await handle.ctrOk(['images', 'ls'], namespace !== undefined ? { namespace } : {});
      return r.stdout.split('\n').slice(1).filter((l) => l.trim() !== '').map((l) => {
        const [name, mediaType, digest] = l.trim().split(/\s+/);
        return { name: name!, mediaType: mediaType!, digest: digest! };
      });
    },
    logTail: (lines) => started.logTail(lines),
    async stop() {
      if (stopped) return;
      stopped = true;
      await started.stop();
      unmountUnder(dir.path);
      await dir.cleanup();
      liveDirs.delete(dir.path);
    },
  };
  return handle;
}
