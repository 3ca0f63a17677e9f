import { describe, expect, it } from 'vitest';
import { cacheMaxBytes, cacheMaxSetting, DEFAULT_CACHE_MAX, describeCacheMax } from '../../../src/app/cache-dir.js';
import { isFerryError } from '../../../src/errors.js';

const GiB = 1024 ** 3;

function errorOf(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  return undefined;
}

describe('cacheMaxBytes', () => {
  it('reads sizes as --split does: GB decimal, G and GiB binary', () => {
    expect(cacheMaxBytes('20G', {})).toBe(20 * GiB);
    expect(cacheMaxBytes('20GB', {})).toBe(20_000_000_000);
    expect(cacheMaxBytes(undefined, { FERRY_CACHE_MAX: '500MB' })).toBe(500_000_000);
    expect(cacheMaxBytes('512m', {})).toBe(512 * 1024 ** 2);
    expect(cacheMaxBytes('1.5GiB', {})).toBe(1.5 * GiB);
    expect(cacheMaxBytes('4096', {})).toBe(4096);
  });

  it('0 and unlimited mean no cap', () => {
    for (const t of ['0', '0G', '0GB', '0MiB', ' unlimited ', 'UNLIMITED']) expect(cacheMaxBytes(t, {}), t).toBeUndefined();
  });

  it('the flag over FERRY_CACHE_MAX over the default', () => {
    expect(cacheMaxBytes('1G', { FERRY_CACHE_MAX: '5G' })).toBe(GiB);
    expect(cacheMaxBytes(undefined, { FERRY_CACHE_MAX: '5G' })).toBe(5 * GiB);
    expect(cacheMaxBytes(undefined, { FERRY_CACHE_MAX: 'unlimited' })).toBeUndefined();
    expect(cacheMaxBytes(undefined, { FERRY_CACHE_MAX: '' })).toBe(DEFAULT_CACHE_MAX);
    expect(cacheMaxBytes(undefined, {})).toBe(20 * GiB);
  });

  it('refuses what is not a size, naming where it came from', () => {
    const flag = errorOf(() => cacheMaxBytes('lots', {}));
    expect(isFerryError(flag, 'E_USAGE')).toBe(true);
    expect((flag as Error).message).toContain('--cache-max "lots"');
    const env = errorOf(() => cacheMaxBytes(undefined, { FERRY_CACHE_MAX: '-3G' }));
    expect(isFerryError(env, 'E_CONFIG')).toBe(true);
    expect((env as Error).message).toContain('FERRY_CACHE_MAX="-3G"');
  });

  it('says how the cap was read and where it came from', () => {
    expect(describeCacheMax(cacheMaxSetting('50GB', {}))).toBe('--cache-max 50GB = 50,000,000,000 bytes (decimal GB)');
    expect(describeCacheMax(cacheMaxSetting(undefined, { FERRY_CACHE_MAX: '2G' }))).toBe('FERRY_CACHE_MAX 2G = 2,147,483,648 bytes (binary G = GiB)');
    expect(describeCacheMax(cacheMaxSetting('unlimited', {}))).toBe('--cache-max unlimited = no cap');
    expect(describeCacheMax(cacheMaxSetting(undefined, {}))).toBeUndefined();
  });
});
