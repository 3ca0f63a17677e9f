import { readdir, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { CopyObserver } from '../../copy/events.js';
import { FerryError } from '../../errors.js';
import { mkdirp } from '../../fsys/files.js';
import { openRegistryDestination, openRegistrySource } from '../../transports/registry/open.js';
import { exportBundle, type ExportResult } from '../export.js';
import { importBundle, type ImportReceipt } from '../import.js';
import { NO_REGISTRY_ACCESS } from '../registry-access.js';
import { verifyBundle, type VerifyResult } from '../verify.js';
import { pushSampleImages } from './sample-images.js';
import { startLocalRegistry } from './local-registry.js';

export interface DemoResult {
  workDir: string;
  imagesList: string;
  bundle: string;
  layout: string;
  exported: ExportResult;
  verified: VerifyResult;
  imported: ImportReceipt;
  /** Each image as served by a registry started on the imported layout: digest equal to the source's. */
  served: { reference: string; digest: string }[];
}

/**
 * The whole job on an embedded default, with nothing from the network: a
 * throwaway registry with generated images → export → verify → import into a
 * registry layout → a second registry serving that layout, checked digest by digest.
 */
export async function runDemo(opts: { workDir: string; jobs: number; signal?: AbortSignal; observer?: CopyObserver; say: (line: string) => void }): Promise<DemoResult> {
  const workDir = resolve(opts.workDir);
  await prepareWorkDir(workDir);
  const say = opts.say;
  const access = { ...NO_REGISTRY_ACCESS };

  say(`1/5 starting a throwaway registry (docker-registry) with sample images…`);
  const upstream = await startLocalRegistry(join(workDir, 'upstream-registry'), workDir);
  let served: DemoResult['served'] = [];
  try {
    access.plainHttp = [upstream.host];
    const refs = await pushSampleImages(openRegistryDestination({ registry: upstream.host, plainHttp: true }), upstream.host);
    const imagesList = join(workDir, 'images.list');
    await writeFile(imagesList, `# ferry demo: sample release 2.0\n${refs.join('\n')}\n`);

    const bundle = join(workDir, 'release-2.0.tar');
    say(`2/5 ferry export -f ${imagesList} -o ${bundle}`);
    const common = { jobs: opts.jobs, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.observer ? { observer: opts.observer } : {}) };
    const exported = await exportBundle({ listFile: imagesList, output: bundle, compression: 'none', cacheDir: join(workDir, 'cache'), registry: access, ...common });

    say(`3/5 ferry verify ${bundle}`);
    const verified = await verifyBundle(bundle, common);

    const layout = join(workDir, 'registry-layout');
    say(`4/5 ferry import ${bundle} --to registry-layout ${layout}`);
    const imported = await importBundle({ bundle, to: { kind: 'registry-layout', location: layout }, registry: access, receiptFile: join(workDir, 'import-receipt.json'), ...common });

    say('5/5 serving the imported layout with a second registry and comparing digests…');
    const downstream = await startLocalRegistry(layout, workDir);
    try {
      const source = openRegistrySource({ registry: downstream.host, plainHttp: true });
      served = [];
      for (const image of imported.images) {
        const m = await source.getManifest(image.repository, image.tag ?? image.digest);
        if (m.digest !== image.digest) {
          throw new FerryError('E_DIGEST_MISMATCH', `demo: ${name(image)} is served as ${m.digest}, expected ${image.digest}`);
        }
        served.push({ reference: `${downstream.host}/${name(image)}`, digest: m.digest });
      }
      await source.close();
    } finally {
      await downstream.stop();
    }
    return { workDir, imagesList, bundle, layout, exported, verified, imported, served };
  } finally {
    await upstream.stop();
  }
}

/** Written into every demo folder: the next demo may empty a folder that holds it, and no other. */
export const DEMO_MARKER = '.ferry-demo-folder';

/**
 * The demo starts from an empty folder. One it made earlier (it holds the
 * marker) is emptied; an empty or missing one is used; any other is refused
 * before anything in it is touched — `--dir .` must not delete a user's files.
 */
async function prepareWorkDir(workDir: string): Promise<void> {
  let names: string[] | undefined;
  try {
    names = await readdir(workDir);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT') {
      if (code === 'ENOTDIR') throw notOurs(workDir, 'is a file');
      throw e;
    }
  }
  if (names !== undefined && names.length > 0) {
    if (!names.includes(DEMO_MARKER)) throw notOurs(workDir, 'is not empty and was not made by ferry demo');
    // Only what the demo put there: the folder itself may be a mount point or a link the user made.
    for (const n of names) if (n !== DEMO_MARKER) await rm(join(workDir, n), { recursive: true, force: true });
  }
  await mkdirp(workDir);
  await writeFile(join(workDir, DEMO_MARKER), 'made by `ferry demo`; the next `ferry demo --dir` here empties this folder\n');
}

function notOurs(workDir: string, why: string): FerryError {
  return new FerryError('E_USAGE', `ferry demo --dir ${workDir}: the folder ${why}; refusing to delete anything in it`, {
    hint: 'give --dir a new or empty folder (the demo empties only folders it made itself)', details: { file: workDir },
  });
}

/** `repository:tag`, or `repository@digest` for an image imported without a tag. */
function name(image: { repository: string; tag?: string; digest: string }): string {
  return image.tag !== undefined ? `${image.repository}:${image.tag}` : `${image.repository}@${image.digest}`;
}
