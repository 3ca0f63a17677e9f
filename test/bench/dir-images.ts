// What a skopeo sync to dir: left: the image trees under a folder, for the benchmarks that count and check them.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

/** skopeo dir: trees under `root` (directories holding a `version` file). */
export function dirImages(root: string): string[] {
  const found: string[] = [];
  const walk = (d: string): void => {
    if (existsSync(join(d, 'version')) && existsSync(join(d, 'manifest.json'))) found.push(d);
    else for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
  };
  walk(root);
  return found;
}
