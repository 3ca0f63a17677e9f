// What a field engineer sees when things go wrong: exit status (src/errors.ts
// EXIT_STATUS), error code in --json, and a message naming the file, line, image
// or digest. One htpasswd registry holds the corpus; a proxy in front of it alters bytes.
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXIT_STATUS, type ErrorCode } from '../../src/errors.js';
import { runFerry, type FerryResult } from '../support/cli.js';
import { DEFAULT_USERS } from '../support/registry.js';
import { startProxy, type Proxy } from './registry-proxy.js';
import { type CliEnv, entry, expectNoSecret, ferryOk, jsonOf, startCliEnv, writeList } from './cli-fixture.js';

let env: CliEnv;
let proxy: Proxy;
const PASSWORD = DEFAULT_USERS['ferry']!;

interface ErrorDoc { error: { code: ErrorCode; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** Asserts the run failed with `code`: exit status from the table, same code in --json, returns the error. */
function failedWith(r: FerryResult, code: ErrorCode): ErrorDoc['error'] {
  const doc = jsonOf<ErrorDoc>(r);
  expect(doc.error?.code, doc.error?.message).toBe(code);
  expect(r.code).toBe(EXIT_STATUS[code]);
  expect(doc.error.exitStatus).toBe(EXIT_STATUS[code]);
  return doc.error;
}

beforeAll(async () => {
  env = await startCliEnv(0xe6, { auth: 'htpasswd' });
  // Alters every manifest body (same length, different bytes: still valid JSON).
  proxy = await startProxy(env.reg.url, {
    rewrite: (req) => (req.method === 'GET' && /\/manifests\//.test(req.url ?? '')
      ? (body) => Buffer.from(body.toString('utf8').replace(/\n {2}"/, '\n \t"'), 'utf8')
      : undefined),
  });
});
afterAll(async () => {
  await proxy?.stop();
  await env?.stop();
});

/** The hint tells the engineer what to type: every flag it names must be one ferry accepts. */
async function expectHintFlagsExist(hint: string | undefined): Promise<void> {
  const help = (await ferryOk(['export', '--help'])).stdout;
  for (const flag of (hint ?? '').match(/--[a-z][a-z-]*/g) ?? []) expect(help, `hint names ${flag}: ${hint}`).toMatch(new RegExp(`${flag}(?![a-z-])`));
}

const auth = (): { args: string[]; input: string } => ({ args: ['--username', 'ferry', '--password-stdin'], input: `${PASSWORD}\n` });

describe('ferry errors through the CLI', () => {
  it('a bad line in the image list → E_LIST_SYNTAX naming file:line; nothing is written', async () => {
    const list = await writeList(env.path('images.list'), `# header\n${env.corpus.hostRefs[0]!}\n\n${env.reg.host}/Bad Name:1\n`);
    const out = env.path('never.tar');
    const r = await runFerry(['export', '-f', list, '-o', out, ...env.net, '--json']);
    const err = failedWith(r, 'E_LIST_SYNTAX');
    expect(err.message).toContain(`${list}:4`);
    expect(existsSync(out)).toBe(false);
    const human = await runFerry(['export', '-f', list, '-o', out, ...env.net]);
    expect(human.code).toBe(EXIT_STATUS.E_LIST_SYNTAX);
    expect(human.stderr).toContain(`${list}:4`);
    expect(human.stderr).toMatch(/hint:/);
  });

  it('an unknown host → E_NETWORK naming the host', async () => {
    const r = await runFerry(['export', 'no-such-host.invalid/x/y:1', '-o', env.path('never.tar'), '--plain-http', 'no-such-host.invalid', '--cache', env.path('c'), '--json']);
    const err = failedWith(r, 'E_NETWORK');
    expect(err.message).toContain('no-such-host.invalid');
  });

  it('a wrong password → E_AUTH, and the password never appears in the output', async () => {
    const wrong = 'Wr0ng-Passw0rd-4-ferry';
    const ref = `${env.corpus.hostRefs[0]!}`;
    const r = await runFerry(['export', ref, '-o', env.path('never.tar'), ...env.net, '--cache', env.path('c'), '--username', 'ferry', '--password-stdin', '--json'], { input: `${wrong}\n` });
    const err = failedWith(r, 'E_AUTH');
    expectNoSecret(r, wrong);
    await expectHintFlagsExist(err.hint);
    const human = await runFerry(['export', ref, '-o', env.path('never.tar'), ...env.net, '--cache', env.path('c'), '--username', 'ferry', '--password-stdin', '--debug'], { input: `${wrong}\n` });
    expect(human.code).toBe(EXIT_STATUS.E_AUTH);
    expectNoSecret(human, wrong);
    expect(human.stderr).toContain('E_AUTH');
  });

  it('no credentials at all → E_AUTH whose hint names only flags ferry has', async () => {
    const home = env.path('empty-home');
    const r = await runFerry(['export', env.corpus.hostRefs[0]!, '-o', env.path('never.tar'), ...env.net, '--cache', env.path('c'), '--json'], {
      env: { HOME: home, DOCKER_CONFIG: home, FERRY_USERNAME: undefined, FERRY_PASSWORD: undefined },
    });
    const err = failedWith(r, 'E_AUTH');
    expect(err.hint).toBeDefined();
    await expectHintFlagsExist(err.hint);
  });

  it('the right password works (so the E_AUTH above is about the password), and is not echoed either', async () => {
    const a = auth();
    const r = await ferryOk(['export', env.corpus.hostRefs[0]!, '-o', env.path('ok.tar'), ...env.net, '--cache', env.path('c'), ...a.args, '--debug'], { input: a.input });
    expectNoSecret(r, PASSWORD);
  });

  it('a bundle on stdin together with --password-stdin → E_USAGE up front, not a confusing "truncated bundle"', async () => {
    const r = await runFerry(['push', '-', '--to', env.reg.host, ...env.net, '--username', 'ferry', '--password-stdin', '--json'], { input: 'bundle bytes would be here\n' });
    const err = failedWith(r, 'E_USAGE');
    expect(err.message).toContain('--password-stdin');
    const list = await runFerry(['export', '-f', '-', '-o', env.path('never.tar'), ...env.net, '--username', 'ferry', '--password-stdin', '--json'], { input: `${env.corpus.hostRefs[0]!}\n` });
    expect(failedWith(list, 'E_USAGE').message).toContain('-f -');
  });

  it('an image that does not exist → E_NOT_FOUND naming the image', async () => {
    const a = auth();
    const ref = `${env.reg.host}/library/base-os:9.9-missing`;
    const r = await runFerry(['export', ref, '-o', env.path('never.tar'), ...env.net, '--cache', env.path('c'), ...a.args, '--json'], { input: a.input });
    const err = failedWith(r, 'E_NOT_FOUND');
    expect(err.message).toContain(ref);
  });

  it('a registry answering with bytes that do not match the requested digest → E_DIGEST_MISMATCH', async () => {
    const a = auth();
    const os = entry(env.corpus, 'library/base-os');
    const ref = `${proxy.host}/${os.repo}@${os.digest}`;
    const out = env.path('never.tar');
    const r = await runFerry(['export', ref, '-o', out, '--plain-http', proxy.host, '--cache', env.path('c'), ...a.args, '--json'], { input: a.input });
    const err = failedWith(r, 'E_DIGEST_MISMATCH');
    expect(err.message).toContain(os.digest);
    expect(existsSync(out)).toBe(false);
    expect(proxy.count('GET', `/v2/${os.repo}/manifests/`)).toBeGreaterThan(0);
  });

  it('by tag, altered manifest bytes that no longer match Docker-Content-Digest are refused too', async () => {
    const a = auth();
    const os = entry(env.corpus, 'library/base-os');
    const r = await runFerry(['export', `${proxy.host}/${os.repo}:${os.tags[0]!}`, '-o', env.path('never.tar'), '--plain-http', proxy.host, '--cache', env.path('c'), ...a.args, '--json'], { input: a.input });
    const err = failedWith(r, 'E_DIGEST_MISMATCH');
    expect(err.message).toContain(os.digest);
  });

  it('a bundle path that does not exist → E_NOT_FOUND naming the path (verify, inspect, import)', async () => {
    const missing = env.path('no-such-bundle.tar');
    for (const args of [['verify', missing], ['inspect', missing], ['import', missing, '--to', 'registry-layout', env.path('layout')]]) {
      const err = failedWith(await runFerry([...args, '--json']), 'E_NOT_FOUND');
      expect(err.message).toContain(missing);
    }
  });

  it('--to with an unknown kind → E_USAGE listing the kinds', async () => {
    const r = await runFerry(['import', env.path('whatever.tar'), '--to', 'floppy', env.path('x'), '--json']);
    const err = failedWith(r, 'E_USAGE');
    expect(err.message).toContain('floppy');
    expect(err.hint).toContain('registry-layout');
  });

  it('an OCI layout image whose ref name is not a name → E_NAME_UNSAFE before any blob is read', async () => {
    // "app:1" (no registry) is a name a bundle takes (interop-names.test.ts); "../app:1" is not.
    const dir = env.path('oci-short-name');
    const layer = Buffer.alloc(4096, 7);
    const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: [sha(layer)] } }));
    const manifest = Buffer.from(JSON.stringify({
      schemaVersion: 2, mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha(layer), size: layer.length }],
    }));
    await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true });
    for (const b of [layer, config, manifest]) await writeFile(join(dir, 'blobs', 'sha256', sha(b).slice(7)), b);
    await writeFile(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
    await writeFile(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: sha(manifest), size: manifest.length, annotations: { 'org.opencontainers.image.ref.name': '../app:1' } }] }));
    const cache = env.path('cache-short-name');
    const out = env.path('short-name.tar');
    const err = failedWith(await runFerry(['export', '--from', `oci:${dir}`, '-o', out, '--cache', cache, '--json']), 'E_NAME_UNSAFE');
    expect(err.message).toContain('"../app:1"');
    expect(existsSync(out)).toBe(false);
    // Nothing was copied into the cache: the check came before the blobs.
    const cached = existsSync(join(cache, 'blobs')) ? await readdir(join(cache, 'blobs'), { recursive: true }) : [];
    expect(cached.filter((f) => /[0-9a-f]{64}$/.test(String(f)))).toEqual([]);
  });

  it('no command and unknown flags → E_USAGE (exit 2)', async () => {
    failedWith(await runFerry(['--json']), 'E_USAGE');
    failedWith(await runFerry(['verify', 'x.tar', '--no-such-flag', '--json']), 'E_USAGE');
    const t = failedWith(await runFerry(['verify', 'x.tar', '--idle-timeout', '0', '--json']), 'E_USAGE');
    expect(t.message).toContain('--idle-timeout 0');
    expect(failedWith(await runFerry(['verify', 'x.tar', '--json'], { env: { FERRY_CONNECT_TIMEOUT: 'soon' } }), 'E_CONFIG').message).toContain('FERRY_CONNECT_TIMEOUT');
  });
});
