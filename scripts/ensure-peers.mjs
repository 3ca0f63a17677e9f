#!/usr/bin/env node
// Makes sure what ferry's tests, demo and benchmark need is installed: the npm
// dependencies (npm install when they are missing), and the peer programs they
// run against — the CNCF registry, skopeo, OpenSSH's sshd, and the image consumers
// the interop tests load ferry's output into (podman, buildah, umoci, containerd's
// ctr, Docker's dockerd). Peers come from Debian's packages when running as root;
// otherwise it says exactly what to run. The consumers run as root with the vfs
// storage driver (test/support/podman.ts, dockerd.ts): no fuse-overlayfs needed.
// On a machine with systemd, installing docker.io and containerd also enables their
// system services; the tests never use those (each starts its own on a private socket).
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
if (!['typescript', 'vitest', 'zstd-napi', 'ssh2', 'yargs', 'tar-stream'].every((m) => existsSync(join(root, 'node_modules', m, 'package.json')))) {
  console.error('ferry: installing npm dependencies (npm install)…');
  execFileSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}

const peers = [
  { bin: ['/usr/bin/docker-registry'], pkg: 'docker-registry', why: 'the real CNCF registry the tests run against' },
  { bin: ['/usr/bin/skopeo'], pkg: 'skopeo', why: 'the interop peer' },
  { bin: ['/usr/sbin/sshd'], pkg: 'openssh-server', why: 'the SSH jump-host tests' },
  { bin: ['/usr/bin/ssh-keygen'], pkg: 'openssh-client', why: 'throwaway SSH keys for tests' },
  { bin: ['/usr/bin/htpasswd'], pkg: 'apache2-utils', why: 'bcrypt htpasswd files for the registry auth tests' },
  { bin: ['/usr/bin/openssl'], pkg: 'openssl', why: 'throwaway token-signing keys for the registry token-auth tests' },
  { bin: ['/usr/bin/time'], pkg: 'time', why: 'CPU time and peak RSS of each benchmark run (npm run bench)' },
  { bin: ['/usr/bin/podman'], pkg: 'podman', why: 'podman load / podman pull of what ferry writes' },
  { bin: ['/usr/bin/buildah'], pkg: 'buildah', why: 'builds real images for the interop tests and pulls what ferry writes' },
  { bin: ['/usr/bin/newuidmap', '/usr/bin/newgidmap'], pkg: 'uidmap', why: 'user namespace maps podman and buildah expect' },
  { bin: ['/usr/bin/umoci'], pkg: 'umoci', why: 'the OCI image-spec reference tool reading ferry\'s OCI layouts' },
  { bin: ['/usr/bin/containerd', '/usr/bin/ctr'], pkg: 'containerd', why: 'ctr images import / pull against a private containerd' },
  { bin: ['/usr/sbin/dockerd', '/usr/bin/docker'], pkg: 'docker.io', why: 'docker load / docker pull against a private dockerd' },
  { bin: ['/usr/sbin/iptables'], pkg: 'iptables', why: 'dockerd\'s network setup (docker.io depends on it; the tests run it with --iptables=false)' },
  { bin: ['/usr/bin/docker-credential-pass'], pkg: 'golang-docker-credential-helpers', why: 'the real docker credential helper the ferry login tests store through' },
  { bin: ['/usr/bin/pass'], pkg: 'pass', why: 'the password store docker-credential-pass keeps credentials in' },
  { bin: ['/usr/bin/gpg'], pkg: 'gnupg', why: 'a throwaway key for the pass store of the credential-helper tests' },
  { bin: ['/usr/bin/script'], pkg: 'bsdutils', why: 'a real terminal for the password-prompt test (script from util-linux)' },
  { bin: ['/usr/bin/unshare'], pkg: 'util-linux', why: 'runs the packaged ferry with no network for the offline-install test' },
  { bin: ['/usr/bin/zsh'], pkg: 'zsh', why: 'the shell the zsh completion script is tested in (bash is always there)' },
];

const missing = peers.filter((p) => !p.bin.every((b) => existsSync(b)));
if (missing.length === 0) process.exit(0);

const pkgs = missing.map((p) => p.pkg);
const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
if (!isRoot || spawnSync('apt-get', ['--version']).status !== 0) {
  console.error(`ferry: missing peer programs: ${missing.map((p) => `${p.pkg} (${p.why})`).join(', ')}`);
  console.error(`ferry: install them with:  sudo apt-get update && sudo apt-get install -y ${pkgs.join(' ')}`);
  process.exit(9);
}
console.error(`ferry: installing ${pkgs.join(' ')} from Debian packages…`);
const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env });
execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], { stdio: 'inherit', env });
const still = peers.filter((p) => !p.bin.every((b) => existsSync(b)));
if (still.length > 0) {
  console.error(`ferry: still missing after install: ${still.map((p) => p.pkg).join(', ')}`);
  process.exit(9);
}
