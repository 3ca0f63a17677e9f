// A private podman (Debian's 4.3) for loading and pulling what ferry writes: as root,
// its own image store in a temp dir, so it never touches /var/lib/containers/storage
// or another test's images, and needs no daemon, network, systemd or fuse.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireProgram, runProgram, runProgramOk, type ProgramOptions, type ProgramResult } from './run.js';
import { makeTempDir } from './tmp.js';

export const PODMAN_BIN = '/usr/bin/podman';

export interface PodmanImage {
  /** The config digest's hex (podman's image ID). */
  id: string;
  /** Every name, fully qualified (`docker.io/library/x:1`, `localhost/y:2`). */
  names: string[];
  /** The manifest digest podman stored first (a load computes its own). */
  digest: string;
  /** `name@digest` for every manifest digest podman knows the image by (a pull adds the registry's). */
  repoDigests: string[];
}

export interface PodmanHandle {
  /** Store root (--root). */
  root: string;
  run(args: string[], opts?: ProgramOptions): Promise<ProgramResult>;
  ok(args: string[], opts?: ProgramOptions): Promise<ProgramResult>;
  images(): Promise<PodmanImage[]>;
  /** Removes the store; nothing runs between calls, so there is nothing to stop. */
  stop(): Promise<void>;
}

/**
 * Why each flag:
 *   --storage-driver vfs      plain directories: no overlay mounts to leave behind, no fuse-overlayfs;
 *   --root/--runroot/--tmpdir the store, its locks and libpod's state (default /run/libpod) in the temp dir;
 *   --cgroup-manager cgroupfs no systemd in the test machine;
 *   --events-backend file     no journald (the events log lands in --tmpdir).
 * CONTAINERS_CONF / CONTAINERS_STORAGE_CONF / CONTAINERS_REGISTRIES_CONF point at files
 * in the temp dir, so the host's configuration cannot change what a test sees, and no
 * short name is ever resolved against a network registry. TMPDIR keeps podman's
 * copy-through temp files (default /var/tmp) inside the temp dir too.
 * One thing stays shared: containers/image's blob-info cache
 * (/var/lib/containers/cache/blob-info-cache-v1.boltdb, which skopeo uses as well);
 * podman 4.3 has no flag for it and it only records digest ↔ location hints.
 */
export async function startPodman(): Promise<PodmanHandle> {
  requireProgram(PODMAN_BIN, 'podman');
  const dir = makeTempDir('ferry-podman-');
  const path = (name: string) => join(dir.path, name);
  mkdirSync(path('tmp'));
  writeFileSync(path('containers.conf'), '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\n');
  writeFileSync(path('storage.conf'), `[storage]\ndriver = "vfs"\ngraphroot = ${JSON.stringify(path('root'))}\nrunroot = ${JSON.stringify(path('run'))}\n`);
  writeFileSync(path('registries.conf'), 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n');
  const env = {
    CONTAINERS_CONF: path('containers.conf'),
    CONTAINERS_STORAGE_CONF: path('storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path('registries.conf'),
    TMPDIR: path('tmp'),
  };
  const global = [
    '--root', path('root'), '--runroot', path('run'), '--tmpdir', path('libpod'),
    '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs', '--events-backend', 'file',
  ];
  const withEnv = (opts: ProgramOptions = {}): ProgramOptions => ({ ...opts, env: { ...env, ...(opts.env ?? {}) } });
  const handle: PodmanHandle = {
    root: path('root'),
    run: (args, opts) => runProgram(PODMAN_BIN, [...global, ...args], withEnv(opts)),
    ok: (args, opts) => runProgramOk(PODMAN_BIN, [...global, ...args], withEnv(opts)),
    async images() {
      const r = await handle.ok(['images', '--all', '--format', 'json']);
      // podman 4.3 repeats an image once per name: one entry per ID.
      const list = JSON.parse(r.stdout || '[]') as { Id: string; Names?: string[] | null; Digest: string; RepoDigests?: string[] | null }[];
      const byId = new Map(list.map((i) => [i.Id, i]));
      return [...byId.values()].map((i) => ({ id: i.Id, names: [...(i.Names ?? [])].sort(), digest: i.Digest, repoDigests: [...(i.RepoDigests ?? [])].sort() }));
    },
    stop: () => dir.cleanup(),
  };
  return handle;
}
