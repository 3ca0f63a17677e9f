// A private Docker daemon (Debian's docker.io, 20.10) for `docker load` and `docker
// pull`: its own socket, data root, exec root and pid file in a temp dir, stopped and
// removed after. The client is Debian's /usr/bin/docker, the daemon's own version.
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startContainerd, type ContainerdHandle } from './containerd.js';
import { startDaemon, unmountUnder } from './daemon.js';
import { requireProgram, runProgram, type ProgramOptions, type ProgramResult } from './run.js';
import { makeTempDir } from './tmp.js';

export const DOCKERD_BIN = '/usr/sbin/dockerd';
/** Debian's client, not whatever `docker` is first on PATH: it matches the daemon's API. */
export const DOCKER_BIN = '/usr/bin/docker';

export interface DockerImage {
  /** `sha256:<config hex>`. */
  id: string;
  /** As docker shows them: `x:1` for docker.io/library/x, `quay.io/a/b:2` otherwise. */
  repoTags: string[];
  repoDigests: string[];
}

export interface DockerdHandle {
  /** `unix:///…/docker.sock`. */
  host: string;
  dataRoot: string;
  docker(args: string[], opts?: ProgramOptions): Promise<ProgramResult>;
  dockerOk(args: string[], opts?: ProgramOptions): Promise<ProgramResult>;
  /** Every image the daemon holds, inspected. */
  images(): Promise<DockerImage[]>;
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

// dockerd makes its data root a shared mount (a bind mount onto itself, when the parent
// mount is not shared, as here) and undoes it only on a clean shutdown: stop() and the exit
// hook unmount whatever is left below the temp dir (daemon.ts) before removing it.
/**
 * Temp dirs of daemons still running, with the plugin dirs that existed before each: a
 * worker that dies before afterAll unmounts and removes them (daemon.ts's exit hook,
 * registered first, has killed the daemons by then).
 */
const liveDirs = new Map<string, string[]>();
process.on('exit', () => {
  for (const [dir, preexisting] of liveDirs) {
    try {
      unmountUnder(dir);
      rmSync(dir, { recursive: true, force: true });
      removeCreatedDirs(preexisting);
    } catch {
      // best effort: the next run's leftovers are visible in mountinfo
    }
  }
});

/** Where dockerd 20.10 insists on creating plugin discovery directories, whatever the flags. */
const PLUGIN_SPEC_DIRS = ['/run/docker/plugins', '/run/docker'];

/**
 * The flags, and why (found by starting dockerd 20.10 in this sandbox):
 *   --host unix://…, --data-root, --exec-root, --pidfile   all state in the temp dir, no clash
 *       with a system daemon or another test's;
 *   --config-file (private)             /etc/docker/daemon.json cannot change the test; it sets
 *       `deprecated-key-path`, or 20.10 creates /etc/docker/key.json (no flag for it here);
 *   --bridge none --iptables=false --ip-forward=false --ip-masq=false
 *       no docker0, no NAT rules, no sysctl: the tests run no container and need no network
 *       (pulls from the loopback registry are the daemon's own connections);
 *   --storage-driver vfs                plain directories: no overlay mounts to outlive a
 *       killed daemon, nothing the kernel must support;
 *   DOCKER_CONFIG for the client        no ~/.docker written.
 *   --containerd (our own, containerd.ts)  the containerd dockerd would start itself creates
 *       /opt/containerd (its `opt` plugin, and dockerd 20.10 gives no way to move it); ours
 *       keeps everything in its temp dir and is stopped after dockerd.
 * 127.0.0.0/8 registries are insecure (plain HTTP) by default for dockerd, so a pull from
 * the test registry needs no daemon.json entry.
 * It still creates /run/docker/plugins (plugin discovery, hard-coded): stop() removes it
 * again when it is empty and was not there before.
 */
export async function startDockerd(): Promise<DockerdHandle> {
  requireProgram(DOCKERD_BIN, 'docker.io');
  requireProgram(DOCKER_BIN, 'docker.io');
  const dir = makeTempDir('ferry-dockerd-');
  const path = (name: string) => join(dir.path, name);
  for (const d of ['data', 'exec', 'client']) mkdirSync(path(d));
  // `deprecated-key-path`: 20.10 otherwise creates /etc/docker/key.json (Debian's build has no such flag, only the config key).
  writeFileSync(path('daemon.json'), `${JSON.stringify({ 'deprecated-key-path': path('key.json') })}\n`);
  const sock = path('docker.sock');
  const host = `unix://${sock}`;
  const preexisting = PLUGIN_SPEC_DIRS.filter((d) => existsSync(d));
  liveDirs.set(dir.path, preexisting);
  const clientEnv = { DOCKER_CONFIG: path('client'), DOCKER_HOST: host, DOCKER_CONTEXT: undefined, DOCKER_TLS_VERIFY: undefined, DOCKER_CERT_PATH: undefined };
  const docker = (args: string[], opts: ProgramOptions = {}) => runProgram(DOCKER_BIN, args, { ...opts, env: { ...clientEnv, ...(opts.env ?? {}) } });
  let daemon;
  let containerd: ContainerdHandle | undefined;
  try {
    containerd = await startContainerd();
    daemon = await startDaemon('dockerd', DOCKERD_BIN, [
      '--containerd', containerd.address,
      '--host', host, '--data-root', path('data'), '--exec-root', path('exec'), '--pidfile', path('docker.pid'),
      '--config-file', path('daemon.json'),
      '--bridge', 'none', '--iptables=false', '--ip-forward=false', '--ip-masq=false',
      '--storage-driver', 'vfs', '--log-level', 'warn',
    ], {
      logFile: path('dockerd.log'),
      ready: async () => existsSync(sock) && (await docker(['version', '--format', '{{.Server.Version}}'], { timeoutMs: 5000 })).code === 0,
      deadlineMs: 60_000,
    });
  } catch (e) {
    await containerd?.stop();
    removeCreatedDirs(preexisting);
    unmountUnder(dir.path);
    await dir.cleanup();
    liveDirs.delete(dir.path);
    throw e;
  }
  const started = daemon;
  const ownContainerd = containerd;
  let stopped = false;
  const handle: DockerdHandle = {
    host,
    dataRoot: path('data'),
    docker,
    async dockerOk(args, opts) {
      const r = await docker(args, opts);
      if (r.code !== 0) throw new Error(`docker ${args.join(' ')} exited ${r.code}:\n${r.stderr}\n${r.stdout}\n--- dockerd log:\n${started.logTail(15)}`);
      return r;
    },
    async images() {
      const ids = (await handle.dockerOk(['images', '--all', '--quiet', '--no-trunc'])).stdout.split('\n').map((s) => s.trim()).filter((s) => s !== '');
      if (ids.length === 0) return [];
      const r = await handle.dockerOk(['image', 'inspect', ...new Set(ids)]);
      return (JSON.parse(r.stdout) as { Id: string; RepoTags: string[] | null; RepoDigests: string[] | null }[])
        .map((i) => ({ id: i.Id, repoTags: i.RepoTags ?? [], repoDigests: i.RepoDigests ?? [] }));
    },
    logTail: (lines) => started.logTail(lines),
    async stop() {
      if (stopped) return;
      stopped = true;
      await started.stop(20_000);
      await ownContainerd.stop();
      removeCreatedDirs(preexisting);
      unmountUnder(dir.path);
      await dir.cleanup();
      liveDirs.delete(dir.path);
    },
  };
  return handle;
}

/** rmdir (never recursive) of the plugin directories this daemon created, if still empty; another daemon may be using them. */
function removeCreatedDirs(preexisting: string[]): void {
  for (const d of PLUGIN_SPEC_DIRS) {
    if (preexisting.includes(d) || !existsSync(d)) continue;
    try {
      if (readdirSync(d).length === 0) rmdirSync(d);
    } catch {
      // another daemon created something there meanwhile: leave it
    }
  }
}
