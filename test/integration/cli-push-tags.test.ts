// `ferry push` against tags that already exist at the target (--on-existing-tag
// overwrite | skip | fail) and into registries that cap repository depth
// (--flatten), end to end through the CLI against the real registry.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { runFerry } from '../support/cli.js';
import type { Image } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';
import { skopeoInspectDigest } from '../support/skopeo.js';
import { validateRegistryImage } from '../support/validate.js';
import { catalog, type CliEnv, entry, expectationsOf, ferryOk, imagesList, jsonOf, manifestStatus, pushExtraImage, startCliEnv, writeList } from './cli-fixture.js';

interface Receipt {
  images: { origin: string; repository: string; tag?: string; digest: string; status: string; current?: string; reason?: string }[];
  blobs: { copied: number; skipped: number; mounted: number; bytesCopied: number };
}
interface ErrorDoc {
  error: { code: string; exitStatus: number; message: string; hint?: string; details: { conflicts?: { repository: string; tag: string; current: string; new: string }[]; collisions?: { target: string }[] } };
}

let env: CliEnv;
let bundle: string;
const targets: RegistryHandle[] = [];

beforeAll(async () => {
  env = await startCliEnv(0x7a95);
  const list = await writeList(env.path('images.list'), imagesList(env.corpus));
  bundle = env.path('B.tar');
  await ferryOk(['export', '-f', list, '-o', bundle, '--cache', env.path('cache'), ...env.net, '-q']);
});
afterEach(async () => {
  await Promise.all(targets.splice(0).map((t) => t.stop()));
});
afterAll(async () => {
  await env?.stop();
});

async function freshTarget(): Promise<RegistryHandle> {
  const t = await startRegistry();
  targets.push(t);
  return t;
}

const push = (t: RegistryHandle, ...extra: string[]) => ['push', bundle, '--to', t.host, '--plain-http', t.host, '--receipt', env.path('receipt.json'), ...extra];

/** Every file under the registry's storage, with its size and (for small files: links) its content. */
function storageSnapshot(t: RegistryHandle): string[] {
  if (!existsSync(t.v2Dir)) return [];
  return (readdirSync(t.v2Dir, { recursive: true }) as string[])
    .map((rel) => {
      const file = join(t.v2Dir, rel);
      const st = statSync(file);
      if (st.isDirectory()) return `${rel}/`;
      return `${rel} ${st.size} ${st.size <= 100 ? readFileSync(file, 'utf8') : ''}`;
    })
    .sort();
}

function hasBlobData(t: RegistryHandle, digest: string): boolean {
  const hex = digest.slice(7);
  return existsSync(join(t.v2Dir, 'blobs/sha256', hex.slice(0, 2), hex, 'data'));
}

const digestAt = (t: RegistryHandle, repo: string, tag: string) => skopeoInspectDigest(`${t.host}/${repo}:${tag}`);

describe('ferry push --on-existing-tag', () => {
  it('overwrite (the default) moves a tag that points at another image; the report names images, blobs, bytes and time', async () => {
    const t = await freshTarget();
    const old = await pushExtraImage(t.url, 'library/base-os', '1.0', 0x51);
    const r = await ferryOk(push(t));
    const base = entry(env.corpus, 'library/base-os');
    expect(old.digest).not.toBe(base.digest);
    expect(await digestAt(t, 'library/base-os', '1.0')).toBe(base.digest);
    expect((await validateRegistryImage(t.url, 'library/base-os', '1.0')).digest).toBe(base.digest);
    const total = expectationsOf(env.corpus).length;
    expect(r.stdout).toMatch(new RegExp(`^${total} of ${total} images pushed to registry ${t.host.replace(/\./g, '\\.')} in \\d+(\\.\\d)?s$`, 'm'));
    expect(r.stdout).toMatch(/^blobs: [1-9]\d* uploaded \(\d+(\.\d+)? (B|KiB|MiB)(, [\d.]+ (B|KiB|MiB)\/s)?\), \d+ already there, \d+ linked\/mounted; \d+ manifests$/m);
  });

  it('skip leaves the tag and sends nothing of that image; the other images land', async () => {
    const t = await freshTarget();
    const oldBase = await pushExtraImage(t.url, 'library/base-os', '1.0', 0x52);
    const oldWeb = await pushExtraImage(t.url, 'apps/web', 'v1', 0x53);
    const r = jsonOf<Receipt>(await ferryOk(push(t, '--on-existing-tag', 'skip', '--json')));

    const skipped = r.images.filter((i) => i.status === 'skipped').map((i) => `${i.repository}:${i.tag} ${i.current}`).sort();
    expect(skipped).toEqual([`apps/web:v1 ${oldWeb.digest}`, `library/base-os:1.0 ${oldBase.digest}`].sort());
    expect(r.images.filter((i) => i.status !== 'skipped').every((i) => i.status === 'done')).toBe(true);
    expect(await digestAt(t, 'library/base-os', '1.0')).toBe(oldBase.digest);
    expect(await digestAt(t, 'apps/web', 'v1')).toBe(oldWeb.digest);
    // The same image under a tag that did not exist goes as usual.
    expect(await digestAt(t, 'library/base-os', 'latest')).toBe(entry(env.corpus, 'library/base-os').digest);
    expect(await digestAt(t, 'a/b/c', 'stable')).toBe(entry(env.corpus, 'a/b/c').digest);

    // Nothing of the skipped web image was sent: not its manifest, not the blobs only it has.
    const web = entry(env.corpus, 'apps/web').artifact as Image;
    expect(await manifestStatus(t.url, 'apps/web', web.digest)).toBe(404);
    const others = new Set(env.corpus.entries.filter((e) => e.digest !== web.digest).flatMap((e) => [...(e.artifact.kind === 'index' ? e.artifact.manifests : [e.artifact])].flatMap((m) => m.blobs.map((b) => b.digest))));
    const ownBlobs = web.blobs.map((b) => b.digest).filter((d) => !others.has(d));
    expect(ownBlobs.length).toBeGreaterThan(0);
    for (const d of [...ownBlobs, web.digest]) expect(hasBlobData(t, d), d).toBe(false);

    const human = await ferryOk(push(t, '--on-existing-tag', 'skip'));
    expect(human.stdout).toMatch(/images pushed to registry .*, 2 skipped in /);
    expect(human.stdout).toContain(`skipped apps/web:v1: the tag exists and points at ${oldWeb.digest}`);
  });

  it('fail lists every conflicting tag with current → new digest and sends nothing', async () => {
    const t = await freshTarget();
    const oldBase = await pushExtraImage(t.url, 'library/base-os', '1.0', 0x54);
    const oldMulti = await pushExtraImage(t.url, 'multi/arch', '1.0', 0x55);
    // Already on the bundle's digest: never a conflict.
    const abc = entry(env.corpus, 'a/b/c');
    await pushArtifact(t.url, 'a/b/c', abc.artifact, ['stable']);
    const before = storageSnapshot(t);

    const r = await runFerry(push(t, '--on-existing-tag', 'fail', '--json'));
    expect(r.code, r.stderr).toBe(2);
    const err = jsonOf<ErrorDoc>(r).error;
    expect(err.code).toBe('E_USAGE');
    const want = [
      { repository: 'library/base-os', tag: '1.0', current: oldBase.digest, new: entry(env.corpus, 'library/base-os').digest },
      { repository: 'multi/arch', tag: '1.0', current: oldMulti.digest, new: entry(env.corpus, 'multi/arch').digest },
    ];
    expect([...(err.details.conflicts ?? [])].map((c) => ({ repository: c.repository, tag: c.tag, current: c.current, new: c.new })).sort((a, b) => a.repository.localeCompare(b.repository))).toEqual(want);
    for (const c of want) expect(err.message).toContain(`${c.repository}:${c.tag}  ${c.current} → ${c.new}`);
    expect(err.message).not.toContain('a/b/c:stable');
    expect(storageSnapshot(t)).toEqual(before);

    const human = await runFerry(push(t, '--on-existing-tag', 'fail'));
    expect(human.code).toBe(2);
    expect(human.stderr).toContain('ferry: error [E_USAGE]: 2 tags on');
    expect(human.stderr).toContain('hint: rerun with --on-existing-tag overwrite');
    expect(storageSnapshot(t)).toEqual(before);
  });

  it('a tag already on the image digest is no conflict: skip pushes that image, fail passes', async () => {
    const t = await freshTarget();
    const abc = entry(env.corpus, 'a/b/c');
    await pushArtifact(t.url, 'a/b/c', abc.artifact, ['stable']);
    const r = jsonOf<Receipt>(await ferryOk(push(t, '--on-existing-tag', 'skip', '--json')));
    expect(r.images.map((i) => i.status)).not.toContain('skipped');
    expect(r.images.find((i) => i.repository === 'a/b/c')?.status).toBe('done');
    // Now every tag is on its digest: fail has nothing to refuse.
    const again = jsonOf<Receipt>(await ferryOk(push(t, '--on-existing-tag', 'fail', '--json')));
    expect(again.images.every((i) => i.status === 'done')).toBe(true);
    expect(again.blobs.copied).toBe(0);
    for (const x of expectationsOf(env.corpus).filter((x) => !x.ref.startsWith('sha256:'))) expect(await digestAt(t, x.repo, x.ref), `${x.repo}:${x.ref}`).toBe(x.digest);
  });

  it('--dry-run with fail reports the conflicts too', async () => {
    const t = await freshTarget();
    await pushExtraImage(t.url, 'apps/web', 'v1', 0x56);
    const before = storageSnapshot(t);
    const r = await runFerry(push(t, '--on-existing-tag', 'fail', '--dry-run', '--json'));
    expect(r.code).toBe(2);
    expect(jsonOf<ErrorDoc>(r).error.details.conflicts?.map((c) => `${c.repository}:${c.tag}`)).toEqual(['apps/web:v1']);
    expect(storageSnapshot(t)).toEqual(before);
  });
});

describe('ferry push --flatten', () => {
  it('--flatten 2 places a/b/c at a/b-c and leaves two-level names alone', async () => {
    const t = await freshTarget();
    const r = jsonOf<Receipt>(await ferryOk(push(t, '--flatten', '2', '--json')));
    expect(r.images.every((i) => i.status === 'done')).toBe(true);
    const flat = (repo: string) => (repo === 'a/b/c' ? 'a/b-c' : repo);
    expect(await catalog(t.url)).toEqual([...env.corpus.repos.keys()].map(flat).sort());
    for (const x of expectationsOf(env.corpus)) expect((await validateRegistryImage(t.url, flat(x.repo), x.ref)).digest).toBe(x.digest);
    expect(await digestAt(t, 'a/b-c', 'stable')).toBe(entry(env.corpus, 'a/b/c').digest);
  });

  it('applies after --project-map and before the --to prefix', async () => {
    const t = await freshTarget();
    await ferryOk(['push', bundle, '--to', `${t.host}/mirror`, '--plain-http', t.host, '--project-map', `${env.corpus.host}/multi=x/y/multi`, '--flatten', '1', '--receipt', env.path('r.json'), '--json']);
    const flat = (repo: string) => `mirror/${(repo.startsWith('multi/') ? `x/y/${repo}` : repo).replace(/\//g, '-')}`;
    const want = [...env.corpus.repos.keys()].map(flat).sort();
    expect(want).toContain('mirror/x-y-multi-arch');
    expect(await catalog(t.url)).toEqual(want);
    expect(await digestAt(t, 'mirror/a-b-c', 'stable')).toBe(entry(env.corpus, 'a/b/c').digest);
    expect(await digestAt(t, 'mirror/x-y-multi-arch', '1.0')).toBe(entry(env.corpus, 'multi/arch').digest);
  });

  it('refuses two images landing on one repo:tag, naming both; different tags in one flattened repository are fine', async () => {
    // a/b-c:stable (another image) collides with a/b/c:stable under --flatten 2; a/b-c:other does not.
    const clash = await pushExtraImage(env.reg.url, 'a/b-c', 'stable', 0x57);
    const other = await pushExtraImage(env.reg.url, 'a/b-c', 'other', 0x58);
    const host = env.corpus.host;
    const list = await writeList(env.path('flat.list'), [`${host}/a/b/c:stable`, `${host}/a/b-c:stable`, `${host}/a/b-c:other`].join('\n'));
    const flatBundle = env.path('flat.tar');
    await ferryOk(['export', '-f', list, '-o', flatBundle, '--cache', env.path('cache'), ...env.net, '-q']);
    const t = await freshTarget();

    const r = await runFerry(['push', flatBundle, '--to', t.host, '--plain-http', t.host, '--flatten', '2', '--json']);
    expect(r.code).toBe(2);
    const err = jsonOf<ErrorDoc>(r).error;
    expect(err.code).toBe('E_USAGE');
    expect(err.message).toContain('a/b-c:stable');
    expect(err.message).toContain(`${host}/a/b/c:stable (${entry(env.corpus, 'a/b/c').digest})`);
    expect(err.message).toContain(`${host}/a/b-c:stable (${clash.digest})`);
    expect(err.message).not.toContain('a/b-c:other');
    expect(await catalog(t.url)).toEqual([]);

    await ferryOk(['push', flatBundle, '--to', t.host, '--plain-http', t.host, '--flatten', '2', '--image', '*/a/b/c:stable', '--image', '*/a/b-c:other', '--receipt', env.path('r.json')]);
    expect(await catalog(t.url)).toEqual(['a/b-c']);
    expect(await digestAt(t, 'a/b-c', 'stable')).toBe(entry(env.corpus, 'a/b/c').digest);
    expect(await digestAt(t, 'a/b-c', 'other')).toBe(other.digest);
  });

  it('refuses a --flatten that is not a depth', async () => {
    for (const bad of ['0', 'two', '1.5']) {
      const r = await runFerry(['push', bundle, '--to', '127.0.0.1:1', '--flatten', bad]);
      expect(r.code, bad).toBe(2);
      expect(r.stderr).toContain(`--flatten ${bad}`);
    }
  });
});
