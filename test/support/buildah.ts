// A private buildah (Debian's 1.28) to build real images for the test registry and to
// pull what ferry writes: as root, its own store in a temp dir (same reasons and
// flags as podman.ts: vfs, private --root/--runroot, cgroupfs, private config files).
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireProgram, runProgram, runProgramOk, type ProgramOptions, type ProgramResult } from './run.js';
import { makeTempDir } from './tmp.js';

export const BUILDAH_BIN = '/usr/bin/buildah';

export interface BuildahImage {
  /** The config digest's hex (`--no-trunc`). */
  id: string;
  names: string[];
  digest: string;
}

export interface BuildahHandle {
  root: string;
  /** A scratch directory inside the handle's temp dir, for build contexts. */
  work: string;
  run(args: string[], opts?: ProgramOptions): Promise<ProgramResult>;
  ok(args: string[], opts?: ProgramOptions): Promise<ProgramResult>;
  images(): Promise<BuildahImage[]>;
  /**
   * Builds a one-file image from scratch (no base image, no network, no RUN: nothing
   * is executed) and pushes it to `dest` (`127.0.0.1:PORT/repo:tag`, plain HTTP).
   * Returns the pushed manifest's digest.
   */
  buildAndPush(dest: string, file: { name: string; content: string }, format?: 'oci' | 'docker', compression?: 'gzip' | 'zstd'): Promise<string>;
  stop(): Promise<void>;
}

export async function startBuildah(): Promise<BuildahHandle> {
  requireProgram(BUILDAH_BIN, 'buildah');
  const dir = makeTempDir('ferry-buildah-');
  const path = (name: string) => join(dir.path, name);
  mkdirSync(path('tmp'));
  mkdirSync(path('work'));
  writeFileSync(path('containers.conf'), '[engine]\ncgroup_manager = "cgroupfs"\n');
  writeFileSync(path('storage.conf'), `[storage]\ndriver = "vfs"\ngraphroot = ${JSON.stringify(path('root'))}\nrunroot = ${JSON.stringify(path('run'))}\n`);
  writeFileSync(path('registries.conf'), 'unqualified-search-registries = []\nshort-name-mode = "disabled"\n');
  const env = {
    CONTAINERS_CONF: path('containers.conf'),
    CONTAINERS_STORAGE_CONF: path('storage.conf'),
    CONTAINERS_REGISTRIES_CONF: path('registries.conf'),
    TMPDIR: path('tmp'),
  };
  const global = ['--root', path('root'), '--runroot', path('run'), '--storage-driver', 'vfs', '--cgroup-manager', 'cgroupfs'];
  const withEnv = (opts: ProgramOptions = {}): ProgramOptions => ({ ...opts, env: { ...env, ...(opts.env ?? {}) } });
  let built = 0;
  const handle: BuildahHandle = {
    root: path('root'),
    work: path('work'),
    run: (args, opts) => runProgram(BUILDAH_BIN, [...global, ...args], withEnv(opts)),
    ok: (args, opts) => runProgramOk(BUILDAH_BIN, [...global, ...args], withEnv(opts)),
    async images() {
      const r = await handle.ok(['images', '--all', '--json', '--no-trunc']);
      const list = JSON.parse(r.stdout || '[]') as { id: string; names?: string[] | null; digest: string }[];
      return list.map((i) => ({ id: i.id.replace(/^sha256:/, ''), names: i.names ?? [], digest: i.digest }));
    },
    async buildAndPush(dest, file, format = 'oci', compression = 'gzip') {
      const ctr = (await handle.ok(['from', '--pull-never', 'scratch'])).stdout.trim();
      try {
        const src = join(path('work'), file.name.replace(/\//g, '_'));
        writeFileSync(src, file.content);
        await handle.ok(['copy', ctr, src, `/${file.name}`]);
        await handle.ok(['config', '--cmd', `/${file.name}`, '--label', 'org.example.built-by=buildah', ctr]);
        const local = `localhost/ferry-build:${++built}`;
        await handle.ok(['commit', '--format', format, ctr, local]);
        const digestFile = join(path('work'), 'digest');
        await handle.ok(['push', '--tls-verify=false', '--compression-format', compression, '--digestfile', digestFile, local, `docker://${dest}`]);
        return readFileSync(digestFile, 'utf8').trim();
      } finally {
        await handle.run(['rm', ctr]);
      }
    },
    stop: () => dir.cleanup(),
  };
  return handle;
}
