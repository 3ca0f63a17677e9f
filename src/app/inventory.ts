import { readdir, stat } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { FerryError } from '../errors.js';
import { writeDocument } from '../fsys/atomic.js';
import { isValidRegistry } from '../oci/reference.js';
import { RegistryClient } from '../transports/registry/client.js';
import { RegistrySource } from '../transports/registry/source.js';
import { openStorageLayoutSource } from '../transports/storage/index.js';
import { inventoryOfLayout, inventoryOfRegistry } from '../delta/collect.js';
import { loadInput } from '../delta/inputs.js';
import { refuseBelowLayoutRoot } from './locations.js';
import { buildInventory, type Inventory, type InventoryBlob, type InventoryImage, serialiseInventory } from '../delta/inventory.js';
import { connectionFor, type RegistryAccess } from './registry-access.js';

export interface InventoryOptions {
  registry?: string | undefined;
  layout?: string | undefined;
  bundles?: string[] | undefined;
  /** Write the document here; without it the caller prints it. */
  output?: string | undefined;
  access: RegistryAccess;
  jobs: number;
  signal?: AbortSignal;
  warn?: (message: string) => void;
}

export interface InventoryResult {
  inventory: Inventory;
  output?: string;
}

/** Inventory = what one target holds (spec/inventory.schema.json), to carry back across the gap for `export --since`. */
export async function takeInventory(opts: InventoryOptions): Promise<InventoryResult> {
  const given = [opts.registry, opts.layout, opts.bundles?.length ? opts.bundles : undefined].filter((x) => x !== undefined);
  if (given.length !== 1) {
    throw new FerryError('E_USAGE', 'inventory: name exactly one target: --registry HOST, --layout DIR or --bundle FILE…', {
      hint: 'e.g. ferry inventory --layout /var/lib/registry -o site.inventory.json',
    });
  }
  const common = { jobs: opts.jobs, ...(opts.signal ? { signal: opts.signal } : {}), ...(opts.warn ? { warn: opts.warn } : {}) };
  let inventory: Inventory;
  if (opts.registry !== undefined) {
    const host = opts.registry.replace(/\/+$/, '');
    if (!isValidRegistry(host)) throw new FerryError('E_USAGE', `--registry ${JSON.stringify(opts.registry)}: not a registry host[:port]`, { hint: 'e.g. --registry harbor.corp.local or --registry 10.0.0.5:5000' });
    const client = new RegistryClient(connectionFor(opts.access, host));
    const source = new RegistrySource(client);
    try {
      inventory = await inventoryOfRegistry(client, source, common);
    } finally {
      await source.close();
    }
  } else if (opts.layout !== undefined) {
    const root = resolve(opts.layout);
    // An empty inventory of a mistyped path would tell the connected side the site holds nothing.
    if (!(await stat(root).then((s) => s.isDirectory(), () => false))) {
      throw new FerryError('E_NOT_FOUND', `--layout ${root}: no such directory`, { hint: 'give the registry\'s rootdirectory (the folder holding docker/registry/v2)', details: { path: root } });
    }
    await refuseBelowLayoutRoot(root, '--layout ');
    await requireLayoutRoot(root);
    const source = openStorageLayoutSource(root);
    try {
      inventory = await inventoryOfLayout(source, common);
    } finally {
      await source.close();
    }
  } else {
    const images: InventoryImage[] = [];
    const blobs: InventoryBlob[] = [];
    const names: string[] = [];
    for (const file of opts.bundles!) {
      const input = await loadInput(file);
      if (input.kind === 'inventory') throw new FerryError('E_USAGE', `--bundle ${file}: this is an inventory, not a bundle`, { hint: 'give bundles or their .ferry.json metadata' });
      for (const i of input.inventory.images) images.push(i);
      for (const b of input.inventory.blobs) blobs.push(b);
      names.push(basename(file));
    }
    const description = `bundles ${names.join(', ')}`;
    inventory = buildInventory({ source: { kind: 'bundle', description: description.length > 1000 ? `${description.slice(0, 1000)}…` : description }, images, blobs });
  }
  if (opts.output !== undefined && opts.output !== '-') {
    const output = resolve(opts.output);
    await writeDocument(output, serialiseInventory(inventory));
    return { inventory, output };
  }
  return { inventory };
}


/**
 * `--layout` must be a registry's rootdirectory, or an empty folder (a registry
 * nothing was pushed to yet): any other folder read as an empty registry, exit 0,
 * and the inventory told the connected side the site holds nothing.
 */
async function requireLayoutRoot(root: string): Promise<void> {
  if (await stat(join(root, 'docker', 'registry', 'v2')).then((s) => s.isDirectory(), () => false)) return;
  if ((await readdir(root)).length > 0) {
    throw new FerryError('E_NOT_FOUND', `--layout ${root}: not a registry storage layout (no docker/registry/v2 in it)`, {
      hint: 'give the registry\'s rootdirectory (storage.filesystem.rootdirectory in its config.yml, often /var/lib/registry)', details: { path: root },
    });
  }
}
