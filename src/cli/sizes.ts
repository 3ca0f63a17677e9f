import { type CacheMaxSetting, cacheMaxSetting, describeCacheMax } from '../app/cache-dir.js';
import { describeSize, type ParsedSize, parseSize, type SizeUnits } from '../size.js';
import type { Output } from './output.js';

/** How one size setting was read, as `--json` results report it (`sizes` in spec/cli-output.schema.json). */
export interface SizeReport {
  from: '--split' | '--cache-max' | 'FERRY_CACHE_MAX' | 'default';
  /** As typed; absent for the default. */
  given?: string;
  /** null: no cap. */
  bytes: number | null;
  /** `none` for no cap. */
  units: SizeUnits | 'none';
  /** The unit as understood: `MB`, `MiB`, `G` (binary), `B`. */
  unit?: string;
}

export interface SizeSettings {
  splitBytes: number | undefined;
  cacheMaxBytes: number | undefined;
  report: { split?: SizeReport; cacheMax: SizeReport };
}

/**
 * `--split` and `--cache-max` (or FERRY_CACHE_MAX) of export and plan, read
 * before anything is fetched, with an info line for each size the user gave
 * saying how it was understood (`--split 100MB = 100,000,000 bytes (decimal MB)`).
 */
export function sizeSettings(argv: { split?: string | undefined; 'cache-max'?: string | undefined }, out: Output, env: NodeJS.ProcessEnv = process.env): SizeSettings {
  const split = argv.split === undefined ? undefined : parseSize(argv.split, '--split');
  const cache = cacheMaxSetting(argv['cache-max'], env);
  if (split) out.info(describeSize('--split', split));
  const cacheLine = describeCacheMax(cache);
  if (cacheLine) out.info(cacheLine);
  const report: SizeSettings['report'] = { cacheMax: cacheReport(cache) };
  if (split) report.split = sizeReport('--split', split);
  return { splitBytes: split?.bytes, cacheMaxBytes: cache.bytes, report };
}

function sizeReport(from: SizeReport['from'], s: ParsedSize): SizeReport {
  return { from, given: s.given, bytes: s.bytes, units: s.units, unit: s.unit };
}

function cacheReport(c: CacheMaxSetting): SizeReport {
  if (c.from === 'default' && c.size) return { from: 'default', bytes: c.size.bytes, units: c.size.units, unit: c.size.unit };
  if (c.size) return sizeReport(c.from, c.size);
  return { from: c.from, ...(c.given !== undefined ? { given: c.given } : {}), bytes: null, units: 'none' };
}
