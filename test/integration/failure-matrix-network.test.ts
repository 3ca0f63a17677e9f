// The failure matrix, registry side (issue #14, "How to prove it"): every command that
// talks to a registry × every fault a registry or the link to it can have. Each cell
// runs the command through a fault proxy in front of a real docker-registry 2.8 with
// htpasswd (in this process, through the main() bin/ferry exits with; the interrupt
// cells as a child process, which the user's Ctrl-C reaches), then asserts the contract
// (failure-matrix-fixture.ts: the documented status, one schema-valid error document
// naming the registry, image or blob), that nothing looks complete that is not, and that
// a rerun through the same address with the fault switched off completes, checked by
// the real registry, skopeo and the independent validators.
// Cells run side by side: most of their time is ferry's retry back-off. (In-process runs
// take turns, but a ferry process per cell cost ~0.7 s of CPU each, 21 s for the file.)
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runFerry, type FerryResult } from '../support/cli.js';
import { clientFor } from '../support/http.js';
import { blobsOf, type Image, makeImage, makeIndex, makeLayer, makeStreamLayer, manifestsOf, Rng, type Artifact } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { DEFAULT_USERS, startRegistry, type RegistryHandle } from '../support/registry.js';
import { cliSchemaRef, describeErrors, INVENTORY_ID, schemaErrors } from '../support/schemas.js';
import { skopeoInspectDigest } from '../support/skopeo.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';
import { validateRegistryImage } from '../support/validate.js';
import { ferryOk, readBundleTar } from './cli-fixture.js';
import { expectFailure, type Expected, type Fault, type FaultSwitch, isPing, leftovers, type Match, startFaultSwitch } from './failure-matrix-fixture.js';

const PASSWORD = DEFAULT_USERS['ferry']!;
const CREDS = { FERRY_USERNAME: 'ferry', FERRY_PASSWORD: PASSWORD };
const WRONG = { FERRY_USERNAME: 'ferry', FERRY_PASSWORD: 'not-the-password' };
/** Short timeouts, so a stalled or trickling registry fails in seconds (the flags users have). */
const QUICK = ['--jobs', '2', '--idle-timeout', '1', '--connect-timeout', '1', '--min-rate', '64K'];

let tmp: TempDir;
let src: RegistryHandle;
let bundle: string;
/** What the images are: repository:tag → artifact. */
const IMAGES = new Map<string, Artifact>();
let n = 0;
const fresh = (name: string) => join(tmp.path, `${String(++n).padStart(3, '0')}-${name}`);

beforeAll(async () => {
  tmp = makeTempDir('ferry-matrix-net-');
  src = await startRegistry({ auth: 'htpasswd' });
  const rng = new Rng(0x3a71);
  // One layer over 1 MiB, so a fault mid-blob has bytes in flight; a small two-platform index beside it.
  IMAGES.set('m/big:1', makeImage({ layers: [await makeStreamLayer({ seed: 0x3a72, size: 1_200_000, compressible: false, files: 1 })], mediaTypes: 'oci' }));
  const shared = await makeLayer(rng.fork('shared'), { size: 20_000 });
  IMAGES.set('m/multi:1', makeIndex(['amd64', 'arm64'].map((architecture) => makeImage({ layers: [shared], mediaTypes: 'docker', platform: { os: 'linux', architecture }, labels: { a: architecture } })), 'docker'));
  for (const [ref, a] of IMAGES) await pushArtifact({ url: src.url, username: 'ferry', password: PASSWORD }, ref.split(':')[0]!, a, [ref.split(':')[1]!]);
  bundle = fresh('rel.tar');
  await ferryOk(['export', ...refsAt(src.host), '-o', bundle, '--cache', fresh('cache'), '--plain-http', src.host, '-q'], { env: CREDS });
}, 120_000);

afterAll(async () => {
  await src?.stop();
  await tmp?.cleanup();
});

/** The layer over 1 MiB: faults strike its transfer only, so one blob (not every one) goes through ferry's retries. */
const bigLayer = () => (IMAGES.get('m/big:1') as Image).layers[0]!.digest;
const isBigLayerGet: Match = (req) => req.method === 'GET' && (req.url ?? '').includes(`/blobs/${bigLayer()}`);
/** The PUT that carries the big layer (`?digest=` names it). */
const isBigLayerUpload: Match = (req) => req.method === 'PUT' && (req.url ?? '').includes('/blobs/uploads/') && (req.url ?? '').includes(bigLayer().slice(7));
/** Every blob GET: the registry died behind a proxy that still accepts connections and drops each one. */
const isBlobGet: Match = (req) => req.method === 'GET' && (req.url ?? '').includes('/blobs/sha256:');
/** The manifest of m/big, by tag or digest (plan and inventory read manifests only). */
const isBigManifestGet: Match = (req) => req.method === 'GET' && (req.url ?? '').startsWith('/v2/m/big/manifests/');

function refsAt(host: string): string[] {
  return [...IMAGES.keys()].map((r) => `${host}/${r}`);
}

/** Every digest the images consist of (manifests, configs, layers). */
function expectedDigests(): Set<string> {
  const out = new Set<string>();
  for (const a of IMAGES.values()) {
    for (const m of manifestsOf(a)) out.add(m.digest);
    for (const b of blobsOf(a)) out.add(b.digest);
  }
  return out;
}

/** Every tag a registry serves passes the deep validator: no tag on an incomplete image. */
async function everyServedTagIsWhole(reg: RegistryHandle): Promise<number> {
  const c = clientFor({ url: reg.url, username: 'ferry', password: PASSWORD });
  const cat = await c.request('GET', '/v2/_catalog?n=1000');
  expect(cat.status).toBe(200);
  let tags = 0;
  for (const repo of (JSON.parse(cat.body.toString('utf8')) as { repositories?: string[] }).repositories ?? []) {
    const t = await c.request('GET', `/v2/${repo}/tags/list`, { repo });
    for (const tag of (JSON.parse(t.body.toString('utf8')) as { tags?: string[] | null }).tags ?? []) {
      await validateRegistryImage(c, repo, tag);
      tags++;
    }
  }
  return tags;
}

/** The destination serves every image whole, skopeo reading each digest. */
async function servedWhole(reg: RegistryHandle, repoPrefix = ''): Promise<void> {
  const target = { url: reg.url, username: 'ferry', password: PASSWORD };
  for (const [ref, a] of IMAGES) {
    const [repo, tag] = ref.split(':') as [string, string];
    expect((await validateRegistryImage(target, `${repoPrefix}${repo}`, tag)).digest).toBe(a.digest);
    const got = await skopeoInspectDigest(`${reg.host}/${repoPrefix}${repo}:${tag}`, target);
    expect(got).toBe(a.digest);
  }
}

type NetFault = 'reset' | 'cut' | '5xx' | 'trickle' | 'digest' | 'auth' | 'refuse-writes' | 'interrupt' | 'dead';

const EXPECTED: Record<NetFault, Omit<Expected, 'names'>> = {
  reset: { status: 3, codes: ['E_NETWORK'] },
  cut: { status: 3, codes: ['E_NETWORK'] },
  '5xx': { status: 3, codes: ['E_REGISTRY'] },
  trickle: { status: 3, codes: ['E_NETWORK'] },
  digest: { status: 6, codes: ['E_DIGEST_MISMATCH'] },
  auth: { status: 4, codes: ['E_AUTH'] },
  'refuse-writes': { status: 3, codes: ['E_REGISTRY'] },
  interrupt: { status: 130, codes: ['E_ABORTED'] },
  dead: { status: 3, codes: ['E_NETWORK'] },
};

interface Cell {
  proxy: FaultSwitch;
  /** Where this cell's files go. */
  dir: string;
  /** The registry behind the proxy when it is the destination. */
  dest?: RegistryHandle;
}

interface NetCommand {
  name: string;
  /** Which registry the faults are put before. */
  side: 'source' | 'destination';
  /** The requests that carry this command's data: where reset, cut, 5xx, trickle and digest faults strike. */
  match: Match;
  faults: NetFault[];
  args(cell: Cell): string[];
  /** Anything besides the proxy (or, for login, the config) the message must name; the proxy's address always. */
  names?(cell: Cell, fault: NetFault): string[];
  /** What the failed run left must not look complete. */
  incomplete(cell: Cell): Promise<void> | void;
  /** The rerun's result, checked by an independent reader or the real consumer. */
  complete(cell: Cell, r: FerryResult): Promise<void> | void;
  /** stdin and environment of a run (credentials right or wrong). */
  run?(cell: Cell, creds: 'right' | 'wrong'): { input?: string; env: Record<string, string> };
}

const exportOut = (c: Cell) => join(c.dir, 'out', 'rel.tar');
const inventoryOut = (c: Cell) => join(c.dir, 'site.inventory.json');
const dockerConfig = (c: Cell) => join(c.dir, 'docker');

const COMMANDS: NetCommand[] = [
  {
    name: 'export', side: 'source', match: isBigLayerGet,
    faults: ['reset', 'cut', '5xx', 'trickle', 'digest', 'auth', 'interrupt', 'dead'],
    args: (c) => ['export', ...refsAt(c.proxy.host), '-o', exportOut(c), '--cache', join(c.dir, 'cache'), '--plain-http', c.proxy.host],
    // dead: every blob request dropped (the registry died behind a proxy). With two images each fails at its first
    // blob, before the client's give-up (test/unit/transports/registry-give-up.test.ts) is reached; the contract holds.
    names: (_c, f) => (['reset', 'cut', '5xx', 'trickle', 'digest'].includes(f) ? ['m/big:1', `blob ${bigLayer()}`] : []),
    incomplete(c) {
      expect(existsSync(exportOut(c)), 'no bundle at its final name').toBe(false);
      expect(existsSync(`${exportOut(c)}.ferry.json`), 'no metadata sidecar').toBe(false);
      expect(leftovers(c.dir)).toEqual([]);
    },
    async complete(c) {
      const entries = await readBundleTar(exportOut(c));
      const blobs = new Map(entries.filter((e) => e.type === 'file' && e.name.startsWith('blobs/sha256/')).map((e) => [`sha256:${e.name.slice(13)}`, e.digest]));
      for (const [name, digest] of blobs) expect(digest, name).toBe(name);
      for (const d of expectedDigests()) expect(blobs.has(d), `${d} in the bundle`).toBe(true);
    },
  },
  {
    name: 'plan', side: 'source', match: isBigManifestGet,
    faults: ['reset', 'cut', '5xx', 'trickle', 'digest', 'auth'],
    names: (_c, f) => (f === 'auth' ? [] : ['m/big']),
    args: (c) => ['plan', ...refsAt(c.proxy.host), '--cache', join(c.dir, 'cache'), '--plain-http', c.proxy.host],
    incomplete: () => undefined, // plan writes nothing; its stdout held the error document alone
    complete(_c, r) {
      const doc = JSON.parse(r.stdout) as { images: unknown[] };
      const errors = schemaErrors(cliSchemaRef('planResult'), doc);
      expect(errors, describeErrors(errors)).toEqual([]);
      expect(doc.images).toHaveLength(IMAGES.size);
    },
  },
  {
    name: 'inventory --registry', side: 'source', match: isBigManifestGet,
    faults: ['reset', 'cut', '5xx', 'trickle', 'auth'],
    names: (_c, f) => (f === 'auth' ? [] : ['m/big']),
    args: (c) => ['inventory', '--registry', c.proxy.host, '-o', inventoryOut(c), '--plain-http', c.proxy.host],
    incomplete(c) {
      expect(existsSync(inventoryOut(c)), 'no inventory at its final name').toBe(false);
      expect(leftovers(c.dir)).toEqual([]);
    },
    complete(c) {
      const inv = JSON.parse(readFileSync(inventoryOut(c), 'utf8')) as { images: { repository: string; digest: string }[] };
      const errors = schemaErrors(INVENTORY_ID, inv);
      expect(errors, describeErrors(errors)).toEqual([]);
      for (const a of IMAGES.values()) expect(inv.images.some((i) => i.digest === a.digest), a.digest).toBe(true);
    },
  },
  {
    name: 'push', side: 'destination', match: isBigLayerUpload,
    faults: ['refuse-writes', 'reset', 'cut', '5xx', 'auth', 'interrupt'],
    names: (_c, f) => (['reset', 'cut', '5xx'].includes(f) ? [bigLayer()] : []),
    args: (c) => ['push', bundle, '--to', c.proxy.host, '--plain-http', c.proxy.host, '--receipt', join(c.dir, 'receipt.json')],
    async incomplete(c) {
      await everyServedTagIsWhole(c.dest!);
    },
    async complete(c) {
      await servedWhole(c.dest!, '');
    },
  },
  {
    name: 'import --to registry', side: 'destination', match: isBigLayerUpload,
    faults: ['refuse-writes', 'reset', 'cut', '5xx', 'auth'],
    names: (_c, f) => (['reset', 'cut', '5xx'].includes(f) ? [bigLayer()] : []),
    args: (c) => ['import', bundle, '--to', `registry:${c.proxy.host}/mirror`, '--plain-http', c.proxy.host, '--receipt', join(c.dir, 'receipt.json')],
    async incomplete(c) {
      await everyServedTagIsWhole(c.dest!);
    },
    async complete(c) {
      await servedWhole(c.dest!, 'mirror/');
    },
  },
  {
    name: 'login', side: 'source', match: isPing,
    faults: ['reset', '5xx', 'auth'],
    args: (c) => ['login', c.proxy.host, '-u', 'ferry', '--password-stdin', '--plain-http', c.proxy.host],
    run: (c, creds) => ({ input: `${creds === 'right' ? PASSWORD : 'not-the-password'}\n`, env: { DOCKER_CONFIG: dockerConfig(c) } }),
    incomplete(c) {
      const file = join(dockerConfig(c), 'config.json');
      if (existsSync(file)) expect(JSON.parse(readFileSync(file, 'utf8')).auths?.[c.proxy.host], 'no credentials stored').toBeUndefined();
    },
    complete(c) {
      const auths = (JSON.parse(readFileSync(join(dockerConfig(c), 'config.json'), 'utf8')) as { auths: Record<string, { auth: string }> }).auths;
      expect(Buffer.from(auths[c.proxy.host]!.auth, 'base64').toString()).toBe(`ferry:${PASSWORD}`);
    },
  },
];

function faultOf(f: NetFault, match: Match, reached: () => void): Fault | undefined {
  switch (f) {
    case 'reset': return { kind: 'reset', match };
    case 'cut': return { kind: 'cut', match };
    case '5xx': return { kind: 'status', status: 503, match };
    case 'trickle': return { kind: 'trickle', match };
    case 'digest': return { kind: 'flip', match };
    case 'interrupt': return { kind: 'hold', match, reached };
    case 'dead': return { kind: 'reset', match: isBlobGet };
    default: return undefined; // auth: wrong credentials; refuse-writes: a read-only registry behind the proxy
  }
}

const cells = COMMANDS.flatMap((command) => command.faults.map((fault) => ({ command, fault })));

describe.concurrent('failure matrix: registry faults', () => {
  for (const { command, fault } of cells) {
    it(`${command.name} × ${fault}`, async () => {
      const dir = fresh(`${command.name.replace(/\W+/g, '-')}-${fault}`);
      const dest = command.side === 'destination' ? await startRegistry({ auth: 'htpasswd' }) : undefined;
      const readOnly = fault === 'refuse-writes' ? await startRegistry({ auth: 'htpasswd', storageDir: dest!.storageDir, readOnly: true }) : undefined;
      const proxy = await startFaultSwitch((readOnly ?? dest ?? src).url);
      const cell: Cell = { proxy, dir, ...(dest ? { dest } : {}) };
      try {
        const io = (creds: 'right' | 'wrong'): { input?: string; env: Record<string, string> } => command.run?.(cell, creds) ?? { env: creds === 'right' ? CREDS : WRONG };
        const wrongOrRight = fault === 'auth' ? 'wrong' : 'right';
        const { input, env } = io(wrongOrRight);
        let interrupted = false;
        const failed = await new Promise<FerryResult>((resolve, reject) => {
          let child: ChildProcess | undefined;
          proxy.set(faultOf(fault, command.match, () => {
            // Bytes are in flight (a blob request is open): now the user presses Ctrl-C.
            if (!interrupted) {
              interrupted = true;
              child?.kill('SIGINT');
            }
          }));
          runFerry([...command.args(cell), ...QUICK, '--json'], {
            env, ...(input !== undefined ? { input } : {}), timeoutMs: 90_000,
            // Only a process receives SIGINT; the other faults need none.
            ...(fault === 'interrupt' ? { onSpawn: (c: ChildProcess) => { child = c; } } : {}),
          }).then(resolve, reject);
        });
        const hit = proxy.hits.length;
        if (fault !== 'auth' && fault !== 'refuse-writes') expect(hit, 'the fault was met').toBeGreaterThan(0);
        // A registry's own words travel with its refusal.
        const names = [proxy.host, ...(fault === '5xx' ? ['injected 503'] : []), ...(command.names?.(cell, fault) ?? [])];
        // An interruption is the user's doing: the message says so, not where.
        expectFailure(failed, { ...EXPECTED[fault], names: fault === 'interrupt' ? ['interrupted'] : names }, `${command.name} × ${fault}`);
        await command.incomplete(cell);

        // The fault goes away; the same command, to the same address, completes.
        proxy.set(undefined);
        if (dest) proxy.route(dest.url);
        const again = io('right');
        const ok = await runFerry([...command.args(cell), ...QUICK, '--json'], { env: again.env, ...(again.input !== undefined ? { input: again.input } : {}) });
        expect(ok.code, `rerun of ${command.name} × ${fault}:\n${ok.stdout}\n${ok.stderr}`).toBe(0);
        await command.complete(cell, ok);
        if (command.side === 'source' && command.name !== 'login') expect(leftovers(dir)).toEqual([]);
      } finally {
        await proxy.stop();
        await readOnly?.stop();
        await dest?.stop();
      }
    });
  }
});
