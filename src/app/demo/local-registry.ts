import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { FerryError } from '../../errors.js';
import { mkdirp } from '../../fsys/files.js';

export const REGISTRY_BINARY = '/usr/bin/docker-registry';

export interface LocalRegistry {
  host: string;
  storageDir: string;
  stop(): Promise<void>;
}

/**
 * A throwaway CNCF registry (Debian's docker-registry, distribution v2.8) on a
 * free loopback port, serving `storageDir`. Used by `ferry demo` to show the
 * whole job without any network: the registry we pull from, and the one that
 * serves what we imported.
 */
export async function startLocalRegistry(storageDir: string, workDir: string): Promise<LocalRegistry> {
  if (!existsSync(REGISTRY_BINARY)) {
    throw new FerryError('E_PEER_MISSING', `${REGISTRY_BINARY} is not installed`, {
      hint: 'install it with: sudo apt-get install -y docker-registry  (npm run demo does this when run as root)',
    });
  }
  const port = await freePort();
  const config = join(workDir, `registry-${port}.yml`);
  await mkdirp(storageDir);
  await writeFile(config, [
    'version: 0.1',
    'log:', '  level: error',
    'storage:', '  filesystem:', `    rootdirectory: ${storageDir}`, '  delete:', '    enabled: true',
    'http:', `  addr: 127.0.0.1:${port}`,
  ].join('\n'));
  const child = spawn(REGISTRY_BINARY, ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
  const host = `127.0.0.1:${port}`;
  await waitUntilServing(host, child, () => stderr);
  return {
    host, storageDir,
    stop: () => new Promise((resolve) => {
      if (child.exitCode !== null) return resolve();
      child.once('exit', () => resolve());
      child.kill('SIGTERM');
    }),
  };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

async function waitUntilServing(host: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    const ok = await new Promise<boolean>((resolve) => {
      const req = request(`http://${host}/v2/`, (res) => { res.resume(); resolve(res.statusCode === 200); });
      req.on('error', () => resolve(false));
      req.end();
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill('SIGKILL');
  throw new FerryError('E_PEER_MISSING', `the local registry did not start on ${host}: ${log().trim().split('\n').slice(-3).join(' | ')}`, {
    hint: `check that ${REGISTRY_BINARY} runs: ${REGISTRY_BINARY} --version`,
  });
}
