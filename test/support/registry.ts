// Launches the real CNCF registry (distribution v2.8, Debian's docker-registry) on a
// random loopback port with a temp storage dir, optionally behind htpasswd or
// Harbor-style token auth, and waits until it answers.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { createServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { makeTempDir, type TempDir } from './tmp.js';
import { startTokenIssuer, type TokenAccess, type TokenIssuer } from './token-issuer.js';

export type { Scope, TokenAccess, TokenIssuer } from './token-issuer.js';

/** Read per call so a test can point it at a missing binary. */
export function registryBin(): string {
  return process.env['FERRY_TEST_REGISTRY_BIN'] ?? '/usr/bin/docker-registry';
}
export const REGISTRY_BIN = registryBin();

export interface RegistryOptions {
  auth?: 'none' | 'htpasswd' | 'token';
  /** Reuse an existing storage root (kept on stop); default: a fresh temp dir removed on stop. */
  storageDir?: string;
  /** user → password, for htpasswd and token modes. Default: DEFAULT_USERS. */
  users?: Record<string, string>;
  /** Token mode: what the issuer grants. Default: everything asked for to a valid user, nothing to anonymous. */
  tokenAccess?: TokenAccess;
  tokenExpiresInSeconds?: number;
  /** Serve read-only (maintenance mode): pushes fail with 405. */
  readOnly?: boolean;
  /**
   * Regexes of the `urls` a manifest's foreign / non-distributable layers may carry
   * (`validation.manifests.urls.allow`). Distribution 2.8 allows none by default and then
   * refuses such manifests; with an allowed URL it stores them without the layer's blob.
   */
  foreignLayerUrls?: string[];
}

export interface RegistryHandle {
  /** `127.0.0.1:PORT`, for image references. */
  host: string;
  /** `http://127.0.0.1:PORT`. */
  url: string;
  port: number;
  /** The storage driver's rootdirectory (contains docker/registry/v2). */
  storageDir: string;
  /** `<storageDir>/docker/registry/v2`: where blobs/ and repositories/ live. */
  v2Dir: string;
  logFile: string;
  configFile: string;
  auth: 'none' | 'htpasswd' | 'token';
  users: Record<string, string>;
  issuer?: TokenIssuer;
  /** The log's last lines, for assertion messages. */
  logTail(lines?: number): string;
  stop(): Promise<void>;
}

export const DEFAULT_USERS: Readonly<Record<string, string>> = Object.freeze({ ferry: 'ferry-test-password' });

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

function writeHtpasswd(path: string, users: Record<string, string>): void {
  if (!existsSync('/usr/bin/htpasswd')) {
    throw new Error('htpasswd (apache2-utils) is needed for registry basic-auth tests: `npm test` installs it (scripts/ensure-peers.mjs) or run `apt-get install apache2-utils`');
  }
  const lines = Object.entries(users).map(([user, pass]) =>
    // -B bcrypt is the only hash distribution's htpasswd accepts; -i reads the password from stdin so it is not in argv.
    // -C 4, bcrypt's lowest cost: the registry checks the hash on every request (it keeps no session),
    // ~2.4 ms of its CPU each at htpasswd's default cost 5, ~1 ms at 4; what is tested is the same.
    execFileSync('htpasswd', ['-niB', '-C', '4', user], { input: pass, encoding: 'utf8' }).trim(),
  );
  writeFileSync(path, lines.join('\n') + '\n', { mode: 0o600 });
}

function configYaml(o: {
  port: number;
  storageDir: string;
  readOnly: boolean;
  authBlock: string;
  foreignLayerUrls?: string[] | undefined;
}): string {
  const q = (s: string): string => JSON.stringify(s); // a JSON string is a valid YAML double-quoted scalar
  return [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  formatter: text',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${q(o.storageDir)}`,
    '  delete:',
    '    enabled: true',
    '  maintenance:',
    '    uploadpurging:',
    '      enabled: false',
    ...(o.readOnly ? ['    readonly:', '      enabled: true'] : []),
    'http:',
    `  addr: ${q(`127.0.0.1:${o.port}`)}`,
    '  secret: ferry-test-secret',
    'health:',
    '  storagedriver:',
    '    enabled: false',
    ...(o.foreignLayerUrls?.length ? ['validation:', '  manifests:', '    urls:', '      allow:', ...o.foreignLayerUrls.map((u) => `        - ${q(u)}`)] : []),
    o.authBlock,
    '',
  ].join('\n');
}

function probe(url: string): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method: 'GET', timeout: 1000 }, (res) => {
      res.resume();
      resolve(res.statusCode);
    });
    req.on('error', () => resolve(undefined));
    req.on('timeout', () => {
      req.destroy();
      resolve(undefined);
    });
    req.end();
  });
}

async function launchOnce(
  configFile: string,
  logFile: string,
  url: string,
  deadlineMs: number,
): Promise<{ child: ChildProcess } | { failed: string; portInUse: boolean }> {
  const logFd = openSync(logFile, 'a');
  const child = spawn(registryBin(), ['serve', configFile], { stdio: ['ignore', logFd, logFd] });
  closeSync(logFd);
  live.add(child);
  let exited: string | undefined;
  child.once('exit', (code, signal) => {
    live.delete(child);
    exited = `exited with ${signal ?? `code ${code}`}`;
  });
  child.once('error', (err) => {
    exited = `failed to start: ${err.message}`;
  });
  const deadline = Date.now() + deadlineMs;
  while (Date.now() < deadline) {
    if (exited !== undefined) break;
    const status = await probe(`${url}/v2/`);
    if (status === 200 || status === 401) return { child };
    await new Promise((r) => setTimeout(r, 50));
  }
  if (exited === undefined) {
    await killAndWait(child);
    exited = `did not answer GET /v2/ within ${deadlineMs} ms`;
  }
  const log = tail(logFile);
  return { failed: `${exited}\n--- ${logFile} (tail) ---\n${log}`, portInUse: /address already in use/i.test(log) };
}

async function killAndWait(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const done = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await done;
  clearTimeout(timer);
}

export async function startRegistry(opts: RegistryOptions = {}): Promise<RegistryHandle> {
  const bin = registryBin();
  if (!existsSync(bin)) {
    throw new Error(
      `${bin} not found: the tests need the real CNCF registry. \`npm test\` installs it (scripts/ensure-peers.mjs), or run \`apt-get install docker-registry\``,
    );
  }
  const auth = opts.auth ?? 'none';
  const users = { ...(opts.users ?? DEFAULT_USERS) };
  const work: TempDir = makeTempDir('ferry-registry-');
  const ownStorage: TempDir | undefined = opts.storageDir === undefined ? makeTempDir('ferry-registry-storage-') : undefined;
  const storageDir = opts.storageDir ?? ownStorage!.path;
  mkdirSync(storageDir, { recursive: true });
  const configFile = join(work.path, 'config.yml');
  const logFile = join(work.path, 'registry.log');

  let issuer: TokenIssuer | undefined;
  let authBlock = '';
  try {
    if (auth === 'htpasswd') {
      const htpasswd = join(work.path, 'htpasswd');
      writeHtpasswd(htpasswd, users);
      authBlock = ['auth:', '  htpasswd:', '    realm: ferry-test-realm', `    path: ${JSON.stringify(htpasswd)}`].join('\n');
    } else if (auth === 'token') {
      issuer = await startTokenIssuer({
        dir: work.path,
        users,
        ...(opts.tokenAccess !== undefined ? { tokenAccess: opts.tokenAccess } : {}),
        ...(opts.tokenExpiresInSeconds !== undefined ? { expiresInSeconds: opts.tokenExpiresInSeconds } : {}),
      });
      authBlock = [
        'auth:',
        '  token:',
        `    realm: ${JSON.stringify(issuer.realm)}`,
        `    service: ${JSON.stringify(issuer.service)}`,
        `    issuer: ${JSON.stringify(issuer.issuer)}`,
        `    rootcertbundle: ${JSON.stringify(issuer.certPath)}`,
      ].join('\n');
    }

    // The free-port probe can race with other workers; retry on a fresh port if the registry loses it.
    let lastFailure = '';
    for (let attempt = 0; attempt < 3; attempt++) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      writeFileSync(configFile, configYaml({ port, storageDir, readOnly: opts.readOnly ?? false, authBlock, foreignLayerUrls: opts.foreignLayerUrls }));
      const r = await launchOnce(configFile, logFile, url, 15_000);
      if ('child' in r) {
        const child = r.child;
        let stopped = false;
        return {
          host: `127.0.0.1:${port}`,
          url,
          port,
          storageDir,
          v2Dir: join(storageDir, 'docker', 'registry', 'v2'),
          logFile,
          configFile,
          auth,
          users,
          ...(issuer !== undefined ? { issuer } : {}),
          logTail: (lines?: number) => tail(logFile, lines),
          async stop() {
            if (stopped) return;
            stopped = true;
            await killAndWait(child);
            await issuer?.stop();
            await ownStorage?.cleanup();
            await work.cleanup();
          },
        };
      }
      lastFailure = r.failed;
      if (!r.portInUse) break;
    }
    throw new Error(`docker-registry did not come up: ${lastFailure}`);
  } catch (err) {
    await issuer?.stop();
    await ownStorage?.cleanup();
    // keep `work` (config + log) for diagnosis; the exit hook removes it
    throw err;
  }
}
