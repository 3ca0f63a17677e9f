// `ferry serve` speaks the read side of the distribution API as distribution 2.8 does:
// checked here request by request with a plain HTTP client against the real CLI serving
// a bundle exported from the real registry (the seeded corpus plus an OCI 1.1 SBOM
// referrer). Also: errors and their codes, writes refused, hostile request paths (nothing
// opened), htpasswd, TLS, a tampered blob (cut, then 500, exit 6), and the kept entry index
// (reused, rebuilt when stale, a wrong offset never serves wrong bytes).
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, stat, utimes, writeFile } from 'node:fs/promises';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeSubjectArtifact, pushReferrer } from '../support/cosign.js';
import type { Image, Index } from '../support/images.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { startServe, type ServeHandle } from '../support/serve.js';
import { skopeoOk } from '../support/skopeo.js';
import { type CliEnv, entry, ferryOk, flipByteInBlob, jsonOf, startCliEnv, tarOffsets } from './cli-fixture.js';
import { runFerry } from '../support/cli.js';

interface Res {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

const ACCEPT_ALL = [
  'application/vnd.oci.image.manifest.v1+json', 'application/vnd.oci.image.index.v1+json',
  'application/vnd.docker.distribution.manifest.v2+json', 'application/vnd.docker.distribution.manifest.list.v2+json',
].join(', ');

function get(base: string, path: string, opts: { method?: string; headers?: Record<string, string>; ca?: Buffer } = {}): Promise<Res> {
  const url = new URL(path, base);
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = send(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {}, agent: false, ...(opts.ca ? { ca: opts.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
}

/** A request line sent as raw bytes, so no client library normalises the path. */
function raw(host: string, requestLine: string): Promise<{ status: number; text: string }> {
  const [h, p] = host.split(':') as [string, string];
  return new Promise((resolve, reject) => {
    const s = connect(Number(p), h, () => s.end(`${requestLine}\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => {
      const text = Buffer.concat(chunks).toString('latin1');
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0), text });
    });
    s.on('error', reject);
  });
}

const errorCode = (r: Res): string => (JSON.parse(r.body.toString('utf8')) as { errors: { code: string }[] }).errors[0]!.code;
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let env: CliEnv;
let bundle: string;
let serve: ServeHandle;
let web: Image;
let sbom: Image;
let base: string;

beforeAll(async () => {
  env = await startCliEnv(0x5e7e);
  web = entry(env.corpus, 'apps/web').artifact as Image;
  sbom = makeSubjectArtifact(web, 'web');
  await pushReferrer(env.reg.url, 'apps/web', sbom, web.digest);
  bundle = env.path('release.tar');
  await ferryOk(['export', ...env.corpus.hostRefs, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
  serve = await startServe([bundle, '--cache', env.path('serve-cache')]);
  base = serve.url;
}, 120_000);
afterAll(async () => {
  await serve?.stop();
  await env?.stop();
});


describe('ferry serve: the startup document', () => {
  it('names the address, the bundle and every image with its served name and digest; valid against serveStarted', () => {
    const doc = serve.started;
    expect(schemaErrors(cliSchemaRef('serveStarted'), doc), describeErrors(schemaErrors(cliSchemaRef('serveStarted'), doc))).toEqual([]);
    for (const field of ['url', 'address', 'images', 'source']) {
      const { [field]: _, ...without } = doc;
      expect(schemaErrors(cliSchemaRef('serveStarted'), without).length, field).toBeGreaterThan(0);
    }
    const byRef = new Map(doc.images.map((i) => [i.reference, i.digest]));
    for (const e of env.corpus.entries) for (const ref of e.refs) expect(byRef.get(`${serve.host}/${ref}`), ref).toBe(e.digest);
    expect(doc.bundles![0]!.files[0]!.index.how).toBe('built');
  });
});

describe('ferry serve: the distribution API', () => {
  it('/v2/ answers 200 with the API version header', async () => {
    const r = await get(base, '/v2/');
    expect(r.status).toBe(200);
    expect(r.headers['docker-distribution-api-version']).toBe('registry/2.0');
  });

  it('manifests by tag and by digest: the stored bytes, media type, digest and length; HEAD without a body; If-None-Match', async () => {
    for (const e of env.corpus.entries) {
      const ref = e.tags[0] ?? e.digest;
      const r = await get(base, `/v2/${e.repo}/manifests/${ref}`, { headers: { Accept: ACCEPT_ALL } });
      expect(r.status, `${e.repo}:${ref}`).toBe(200);
      expect(r.body.equals(e.artifact.bytes)).toBe(true);
      expect(r.headers['content-type']).toBe(e.mediaType);
      expect(r.headers['docker-content-digest']).toBe(e.digest);
      expect(Number(r.headers['content-length'])).toBe(e.artifact.bytes.length);
      const h = await get(base, `/v2/${e.repo}/manifests/${e.digest}`, { method: 'HEAD', headers: { Accept: ACCEPT_ALL } });
      expect([h.status, h.body.length, h.headers['docker-content-digest']]).toEqual([200, 0, e.digest]);
      const cached = await get(base, `/v2/${e.repo}/manifests/${e.digest}`, { headers: { Accept: ACCEPT_ALL, 'If-None-Match': `"${e.digest}"` } });
      expect(cached.status).toBe(304);
    }
  });

  it('content negotiation as distribution 2.8: OCI types only to clients that accept them; a Docker list by tag becomes its linux/amd64 image', async () => {
    const oci = await get(base, `/v2/apps/web/manifests/v1`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    expect([oci.status, errorCode(oci)]).toEqual([404, 'MANIFEST_UNKNOWN']);
    const index = await get(base, '/v2/multi/arch/manifests/1.0', { headers: { Accept: 'application/vnd.oci.image.manifest.v1+json' } });
    expect([index.status, errorCode(index)]).toEqual([404, 'MANIFEST_UNKNOWN']);
    const tools = entry(env.corpus, 'multi/tools').artifact as Index;
    const amd = tools.manifests.find((m) => m.platform.architecture === 'amd64')!;
    const list = await get(base, '/v2/multi/tools/manifests/2024.1', { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    expect([list.status, list.headers['docker-content-digest']]).toEqual([200, amd.digest]);
    expect(list.body.equals(amd.bytes)).toBe(true);
    const byDigest = await get(base, `/v2/multi/tools/manifests/${tools.digest}`, { headers: { Accept: 'application/vnd.docker.distribution.manifest.v2+json' } });
    expect(byDigest.headers['docker-content-digest']).toBe(tools.digest);
  });

  it('blobs: whole, HEAD, Range (206 with Content-Range), suffix and open ranges, 416 past the end, several ranges served whole', async () => {
    const layer = web.layers[1]!;
    const bytes = layer.bytes!;
    const whole = await get(base, `/v2/apps/web/blobs/${layer.digest}`);
    expect([whole.status, sha(whole.body), whole.headers['docker-content-digest'], whole.headers['accept-ranges']]).toEqual([200, layer.digest, layer.digest, 'bytes']);
    const head = await get(base, `/v2/apps/web/blobs/${layer.digest}`, { method: 'HEAD' });
    expect([head.status, Number(head.headers['content-length']), head.body.length]).toEqual([200, layer.size, 0]);
    const part = await get(base, `/v2/apps/web/blobs/${layer.digest}`, { headers: { Range: 'bytes=100-1099' } });
    expect([part.status, part.headers['content-range'], part.body.equals(bytes.subarray(100, 1100))]).toEqual([206, `bytes 100-1099/${layer.size}`, true]);
    const suffix = await get(base, `/v2/apps/web/blobs/${layer.digest}`, { headers: { Range: 'bytes=-10' } });
    expect([suffix.status, suffix.body.equals(bytes.subarray(layer.size - 10))]).toEqual([206, true]);
    const open = await get(base, `/v2/apps/web/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size - 5}-` } });
    expect([open.status, open.body.length, open.headers['content-range']]).toEqual([206, 5, `bytes ${layer.size - 5}-${layer.size - 1}/${layer.size}`]);
    const past = await get(base, `/v2/apps/web/blobs/${layer.digest}`, { headers: { Range: `bytes=${layer.size}-` } });
    expect([past.status, past.headers['content-range']]).toEqual([416, `bytes */${layer.size}`]);
    const multi = await get(base, `/v2/apps/web/blobs/${layer.digest}`, { headers: { Range: 'bytes=0-1,5-6' } });
    expect([multi.status, sha(multi.body)]).toEqual([200, layer.digest]);
  });

  it('tags list and catalog page with n/last and Link as distribution does; a bad n is PAGINATION_NUMBER_INVALID', async () => {
    const first = await get(base, '/v2/library/base-os/tags/list?n=1');
    expect(JSON.parse(first.body.toString())).toEqual({ name: 'library/base-os', tags: ['1.0'] });
    expect(first.headers.link).toBe('</v2/library/base-os/tags/list?last=1.0&n=1>; rel="next"');
    const firstLink = String(first.headers.link);
    const next = await get(base, firstLink.slice(1, firstLink.indexOf('>')));
    expect(JSON.parse(next.body.toString())).toEqual({ name: 'library/base-os', tags: ['latest'] });
    expect(next.headers.link).toBeUndefined();
    const all = await get(base, '/v2/library/base-os/tags/list');
    expect(JSON.parse(all.body.toString()).tags).toEqual(['1.0', 'latest']);
    const bad = await get(base, '/v2/library/base-os/tags/list?n=abc');
    expect([bad.status, errorCode(bad)]).toEqual([400, 'PAGINATION_NUMBER_INVALID']);

    const repos: string[] = [];
    let path: string | undefined = '/v2/_catalog?n=2';
    let pages = 0;
    while (path !== undefined) {
      const r = await get(base, path);
      const body = JSON.parse(r.body.toString()) as { repositories: string[] };
      expect(body.repositories.length).toBeLessThanOrEqual(2);
      repos.push(...body.repositories);
      const link = r.headers.link === undefined ? undefined : String(r.headers.link);
      path = link === undefined ? undefined : link.slice(1, link.indexOf('>'));
      pages++;
    }
    expect(repos).toEqual([...env.corpus.repos.keys()].sort());
    expect(pages).toBe(Math.ceil(repos.length / 2));
    const tooMany = await get(base, '/v2/_catalog?n=1001');
    expect([tooMany.status, errorCode(tooMany)]).toEqual([400, 'PAGINATION_NUMBER_INVALID']);
  });

  it('OCI 1.1 referrers: an index of the manifests whose subject is the digest, filtered by artifactType', async () => {
    const r = await get(base, `/v2/apps/web/referrers/${web.digest}`);
    expect([r.status, r.headers['content-type']]).toEqual([200, 'application/vnd.oci.image.index.v1+json']);
    const doc = JSON.parse(r.body.toString()) as { manifests: { digest: string; artifactType?: string; size: number }[] };
    expect(doc.manifests.map((m) => [m.digest, m.artifactType, m.size])).toEqual([[sbom.digest, 'application/spdx+json', sbom.size]]);
    const filtered = await get(base, `/v2/apps/web/referrers/${web.digest}?artifactType=application/vnd.example`);
    expect([filtered.headers['oci-filters-applied'], JSON.parse(filtered.body.toString()).manifests]).toEqual(['artifactType', []]);
    const none = await get(base, `/v2/apps/web/referrers/sha256:${'0'.repeat(64)}`);
    expect([none.status, JSON.parse(none.body.toString()).manifests]).toEqual([200, []]);
  });

  it('every error code with its status and distribution\'s body', async () => {
    const web1 = web.layers[1]!.digest;
    const arm = (entry(env.corpus, 'multi/arch').artifact as Index).manifests[1]!.layers[0]!.digest;
    const cases: [string, string, number, string][] = [
      ['GET', '/v2/no/such/repo/tags/list', 404, 'NAME_UNKNOWN'],
      ['GET', '/v2/no/such/manifests/latest', 404, 'NAME_UNKNOWN'],
      ['GET', '/v2/Apps/Web/manifests/v1', 400, 'NAME_INVALID'],
      ['GET', `/v2/${'a'.repeat(256)}/manifests/v1`, 400, 'NAME_INVALID'],
      ['GET', '/v2/apps/web/manifests/nope', 404, 'MANIFEST_UNKNOWN'],
      ['GET', `/v2/apps/web/manifests/sha256:${'1'.repeat(64)}`, 404, 'MANIFEST_UNKNOWN'],
      ['GET', `/v2/apps/web/blobs/sha256:${'1'.repeat(64)}`, 404, 'BLOB_UNKNOWN'],
      // In a repository whose images do not use it, as distribution (no _layers link there).
      ['GET', `/v2/apps/web/blobs/${arm}`, 404, 'BLOB_UNKNOWN'],
      ['GET', '/v2/apps/web/blobs/sha256:abc', 400, 'DIGEST_INVALID'],
      ['GET', '/v2/apps/web/manifests/sha256:XYZ', 400, 'DIGEST_INVALID'],
      ['POST', '/v2/apps/web/blobs/uploads/', 405, 'UNSUPPORTED'],
      ['PUT', '/v2/apps/web/manifests/v2', 405, 'UNSUPPORTED'],
      ['PATCH', '/v2/apps/web/blobs/uploads/x', 405, 'UNSUPPORTED'],
      ['DELETE', `/v2/apps/web/blobs/${web1}`, 405, 'UNSUPPORTED'],
      ['DELETE', '/v2/apps/web/manifests/v1', 405, 'UNSUPPORTED'],
    ];
    for (const [method, path, status, code] of cases) {
      const r = await get(base, path, { method, headers: { Accept: ACCEPT_ALL } });
      expect([method, path.slice(0, 80), r.status, errorCode(r)]).toEqual([method, path.slice(0, 80), status, code]);
      expect(r.headers['docker-distribution-api-version']).toBe('registry/2.0');
    }
    // Nothing was written: the same tag still answers with the same digest.
    const still = await get(base, '/v2/apps/web/manifests/v1', { headers: { Accept: ACCEPT_ALL } });
    expect(still.headers['docker-content-digest']).toBe(web.digest);
  });

  it('hostile request paths get 400/404, echo nothing of the file system, and the server opens no file', async () => {
    const before = serve.openFiles();
    expect(before).toEqual([bundle]);
    const paths = [
      '/v2/../../etc/passwd/manifests/x', '/v2/..%2f..%2fetc%2fpasswd/manifests/x', '/v2/%2e%2e/%2e%2e/etc/passwd/manifests/x',
      '/v2/apps/web/blobs/..%2f..%2f..%2fetc%2fpasswd', '/v2/apps/web/manifests/..%2F..%2Fferry.json', '/v2/apps//web/manifests/v1',
      '/v2/apps/web/manifests/v1%00', '/v2/apps\\web/manifests/v1', `/v2/${'a/'.repeat(200)}b/manifests/v1`, '/../../etc/passwd', '/v2/_catalog/../../etc/passwd',
      `/v2/apps/web/manifests/${'x'.repeat(300)}`, '/v2/apps/web/tags/list/../../../etc/passwd',
    ];
    const statuses: number[] = [];
    for (const p of paths) {
      const r = await raw(serve.host, `GET ${p} HTTP/1.1`);
      statuses.push(r.status);
      expect(r.text).not.toContain('root:');
      expect(r.text).not.toContain('ferry-bundle');
    }
    expect(statuses.every((s) => s === 400 || s === 404), `${paths.map((p, i) => `${statuses[i]} ${p}`).join('\n')}`).toBe(true);
    const huge = await raw(serve.host, `GET /v2/${'a'.repeat(20_000)}/manifests/v1 HTTP/1.1`);
    expect([400, 414, 431]).toContain(huge.status);
    expect(serve.openFiles()).toEqual(before);
    // The access log shows what was asked, in printable ASCII only.
    expect(serve.stderr()).toContain('"GET /v2/apps/web/manifests/v1%00 HTTP/1.1" 404 ');
    expect(/[\x00-\x08\x0b-\x1f]/.test(serve.stderr())).toBe(false);
  });

  it('skopeo reads it like a registry: inspect and copy --all of every image', async () => {
    for (const e of env.corpus.entries) {
      const ref = `${serve.host}/${e.repo}${e.tags.length ? `:${e.tags[0]}` : `@${e.digest}`}`;
      const raw = await skopeoOk(['inspect', '--raw', '--tls-verify=false', `docker://${ref}`]);
      expect(sha(raw.stdoutBytes), ref).toBe(e.digest);
    }
  });
});

describe('ferry serve --htpasswd', () => {
  it('401 with a Basic challenge without or with wrong credentials, 200 with right ones; skopeo with --creds; no secret in the log', async () => {
    const file = env.path('htpasswd');
    await writeFile(file, execFileSync('htpasswd', ['-niB', 'site'], { input: 'right-password-1' }));
    const s = await startServe([bundle, '--htpasswd', file, '--cache', env.path('serve-cache')]);
    try {
      expect(s.started.auth).toBe(true);
      const none = await get(s.url, '/v2/');
      expect([none.status, none.headers['www-authenticate'], errorCode(none)]).toEqual([401, 'Basic realm="ferry"', 'UNAUTHORIZED']);
      const basic = (u: string, p: string) => ({ Authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });
      expect((await get(s.url, '/v2/apps/web/tags/list', { headers: basic('site', 'wrong') })).status).toBe(401);
      expect((await get(s.url, '/v2/apps/web/tags/list', { headers: basic('nobody', 'right-password-1') })).status).toBe(401);
      expect((await get(s.url, '/v2/apps/web/tags/list', { headers: basic('site', 'right-password-1') })).status).toBe(200);
      expect((await get(s.url, '/v2/apps/web/blobs/uploads/', { method: 'POST' })).status).toBe(401);
      const inspected = await skopeoOk(['inspect', '--raw', '--tls-verify=false', '--creds', 'site:right-password-1', `docker://${s.host}/apps/web:v1`]);
      expect(sha(inspected.stdoutBytes)).toBe(web.digest);
      const log = s.stderr();
      expect(log).toContain(' - site [');
      for (const secret of ['right-password-1', Buffer.from('site:right-password-1').toString('base64'), 'Authorization', 'Basic ']) expect(log).not.toContain(secret);
    } finally {
      await s.stop();
    }
  });

  it('a file with a non-bcrypt entry is refused before listening (E_CONFIG, exit 2), naming file and line', async () => {
    const file = env.path('htpasswd-md5');
    await writeFile(file, `# users\n${execFileSync('htpasswd', ['-nbm', 'old', 'pw']).toString().trim()}\n`);
    const r = await runFerry(['serve', bundle, '--htpasswd', file, '--listen', '127.0.0.1:0', '--json']);
    const err = jsonOf<{ error: { code: string; message: string } }>(r).error;
    expect([r.code, err.code]).toEqual([2, 'E_CONFIG']);
    expect(err.message).toContain(`${file} line 2`);
  });
});

describe('ferry serve over TLS', () => {
  it('serves HTTPS with a given certificate (checked by a client that trusts only it, and by skopeo); a key that is not the certificate\'s is E_CONFIG before listening', async () => {
    const dir = env.path('tls');
    await mkdir(dir);
    const cert = join(dir, 'cert.pem');
    const key = join(dir, 'key.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
      '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
    const s = await startServe([bundle, '--tls-cert', cert, '--tls-key', key, '--cache', env.path('serve-cache')]);
    try {
      expect(s.url.startsWith('https://')).toBe(true);
      const ca = await readFile(cert);
      const r = await get(s.url, '/v2/apps/web/manifests/v1', { ca, headers: { Accept: ACCEPT_ALL } });
      expect([r.status, sha(r.body)]).toEqual([200, web.digest]);
      await expect(get(s.url, '/v2/')).rejects.toThrow(/self.signed|certificate/i);
      const certDir = join(dir, 'certs');
      await mkdir(certDir);
      await writeFile(join(certDir, 'ca.crt'), ca);
      const inspected = await skopeoOk(['inspect', '--raw', '--cert-dir', certDir, `docker://${s.host}/apps/web:v1`]);
      expect(sha(inspected.stdoutBytes)).toBe(web.digest);
    } finally {
      await s.stop();
    }
    const otherKey = join(dir, 'other.pem');
    execFileSync('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', otherKey], { stdio: 'ignore' });
    const bad = await runFerry(['serve', bundle, '--tls-cert', cert, '--tls-key', otherKey, '--listen', '127.0.0.1:0', '--json']);
    expect([bad.code, jsonOf<{ error: { code: string } }>(bad).error.code]).toEqual([2, 'E_CONFIG']);
    const half = await runFerry(['serve', bundle, '--tls-cert', cert, '--listen', '127.0.0.1:0', '--json']);
    expect([half.code, jsonOf<{ error: { code: string } }>(half).error.code]).toEqual([2, 'E_USAGE']);
  });
});

describe('ferry serve: a blob damaged in the bundle', () => {
  it('the first GET is cut short (never complete), later requests get 500 naming the digest, other blobs are served; the stop lists it', async () => {
    const damaged = env.path('damaged.tar');
    await writeFile(damaged, await readFile(bundle));
    const layer = web.layers[1]!;
    await flipByteInBlob(damaged, layer.digest);
    const s = await startServe([damaged, '--cache', env.path('serve-cache')]);
    try {
      const first = await new Promise<{ bytes: number; complete: boolean }>((resolve) => {
        const req = httpRequest(new URL(`/v2/apps/web/blobs/${layer.digest}`, s.url), { agent: false }, (res) => {
          let bytes = 0;
          res.on('data', (c: Buffer) => { bytes += c.length; });
          res.on('end', () => resolve({ bytes, complete: res.complete }));
          res.on('error', () => resolve({ bytes, complete: false }));
          res.on('aborted', () => resolve({ bytes, complete: false }));
        });
        req.on('error', () => resolve({ bytes: 0, complete: false }));
        req.end();
      });
      expect(first.complete).toBe(false);
      expect(first.bytes).toBeLessThan(layer.size);
      for (const headers of [{}, { Range: 'bytes=0-9' }] as Record<string, string>[]) {
        const again = await get(s.url, `/v2/apps/web/blobs/${layer.digest}`, { headers });
        expect([again.status, errorCode(again)]).toEqual([500, 'UNKNOWN']);
        expect(again.body.toString()).toContain(layer.digest);
      }
      const other = web.layers[0]!;
      const fine = await get(s.url, `/v2/apps/web/blobs/${other.digest}`);
      expect(sha(fine.body)).toBe(other.digest);
      expect(s.stderr()).toContain(`blob ${layer.digest} failed verification`);
    } finally {
      // The stop is clean; the stop document lists what was refused.
      const r = await s.stop();
      expect(r.code).toBe(0);
      const result = JSON.parse(r.stderr.slice(r.stderr.lastIndexOf('\n{\n') + 1)) as { failedBlobs: { digest: string; code: string }[] };
      expect(schemaErrors(cliSchemaRef('serveResult'), result)).toEqual([]);
      expect(result.failedBlobs.map((f) => [f.digest, f.code])).toEqual([[layer.digest, 'E_DIGEST_MISMATCH']]);
    }
  });

  it('a Range request for a blob not yet verified verifies it whole first: a damaged one answers 500, no byte of it', async () => {
    const damaged = env.path('damaged-range.tar');
    await writeFile(damaged, await readFile(bundle));
    const layer = web.layers[1]!;
    await flipByteInBlob(damaged, layer.digest);
    const s = await startServe([damaged, '--cache', env.path('serve-cache')]);
    try {
      const r = await get(s.url, `/v2/apps/web/blobs/${layer.digest}`, { headers: { Range: 'bytes=0-99' } });
      expect([r.status, errorCode(r)]).toEqual([500, 'UNKNOWN']);
    } finally {
      expect((await s.stop()).code).toBe(0);
    }
  });
});

describe('ferry serve: the entry index kept beside the bundle', () => {
  it('is reused on the next start, rebuilt when the bundle changed, and a wrong offset in it serves no wrong byte', async () => {
    const copy = env.path('indexed.tar');
    await writeFile(copy, await readFile(bundle));
    const indexFile = copy.replace(/\.tar$/, '.ferry-index.json');
    const runOnce = async (): Promise<ServeHandle> => startServe([copy, '--cache', env.path('serve-cache')]);
    let s = await runOnce();
    expect(s.started.bundles![0]!.files[0]!.index).toEqual({ how: 'built', file: indexFile });
    expect((await s.stop()).code).toBe(0);
    s = await runOnce();
    expect(s.started.bundles![0]!.files[0]!.index).toEqual({ how: 'kept', file: indexFile });
    const layer = web.layers[1]!;
    expect(sha((await get(s.url, `/v2/apps/web/blobs/${layer.digest}`)).body)).toBe(layer.digest);
    expect((await s.stop()).code).toBe(0);

    const later = new Date(Date.now() + 5000);
    await utimes(copy, later, later);
    s = await runOnce();
    expect(s.started.bundles![0]!.files[0]!.index.how).toBe('built');
    expect(s.started.bundles![0]!.files[0]!.index.stale).toContain('changed');
    expect((await s.stop()).code).toBe(0);

    // Same bundle, same size and mtime, but the last entry's offset moved one block: its header no longer matches.
    const kept = JSON.parse(await readFile(indexFile, 'utf8')) as { entries: [string, number][] };
    const last = kept.entries[kept.entries.length - 1]!;
    last[1] += 512;
    await writeFile(indexFile, JSON.stringify(kept));
    const digest = `sha256:${last[0].slice('blobs/sha256/'.length)}`;
    const offsets = await tarOffsets(copy);
    expect(offsets.get(last[0])!.offset).toBe(last[1] - 512);
    s = await runOnce();
    try {
      expect(s.started.bundles![0]!.files[0]!.index.how).toBe('kept');
      const repo = env.corpus.entries.find((e) => [...env.corpus.repos.get(e.repo)!.blobs].includes(digest))!.repo;
      const r = await get(s.url, `/v2/${repo}/blobs/${digest}`);
      expect(r.status).toBe(500);
      expect(r.body.toString()).toMatch(/kept index|checksum/);
    } finally {
      await s.stop();
    }
  });

  it('goes to the cache directory when it cannot be written beside the bundle', async () => {
    const dir = env.path('ro');
    await mkdir(dir);
    const copy = join(dir, 'rel.tar');
    await writeFile(copy, await readFile(bundle));
    // A directory where the index file would go: the write beside the bundle fails as on a read-only medium.
    await mkdir(join(dir, 'rel.ferry-index.json'));
    const cache = env.path('index-cache');
    const s = await startServe([copy, '--cache', cache]);
    try {
      const where = s.started.bundles![0]!.files[0]!.index.file!;
      expect(where.startsWith(join(cache, 'serve-index'))).toBe(true);
      expect((await stat(where)).isFile()).toBe(true);
    } finally {
      await s.stop();
    }
  });
});
