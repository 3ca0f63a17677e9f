import { describe, expect, it } from 'vitest';
import { describeSize, parseSize } from '../../src/size.js';
import { type FerryError, isFerryError } from '../../src/errors.js';

function fails(f: () => unknown, code: string, text: RegExp): FerryError {
  try {
    f();
  } catch (e) {
    expect(isFerryError(e) && e.code).toBe(code);
    expect((e as Error).message).toMatch(text);
    return e as FerryError;
  }
  throw new Error('did not throw');
}

describe('parseSize', () => {
  it('reads KB, MB, GB, TB as decimal: a "100 MB" share cap is 100,000,000 bytes', () => {
    expect(parseSize('100MB', '--split').bytes).toBe(100_000_000);
    expect(parseSize('1KB', '--split').bytes).toBe(1000);
    expect(parseSize('2GB', '--split').bytes).toBe(2_000_000_000);
    expect(parseSize('1TB', '--split').bytes).toBe(10 ** 12);
    expect(parseSize('100mb', '--split')).toEqual({ bytes: 100_000_000, given: '100mb', units: 'decimal', unit: 'MB' });
    expect(parseSize('1.5 GB', '--split').bytes).toBe(1_500_000_000);
  });

  it('reads KiB, MiB, GiB, TiB and the bare letters K, M, G, T as binary', () => {
    expect(parseSize('100MiB', '--split')).toEqual({ bytes: 104_857_600, given: '100MiB', units: 'binary', unit: 'MiB' });
    expect(parseSize('100M', '--split')).toEqual({ bytes: 104_857_600, given: '100M', units: 'binary', unit: 'M' });
    expect(parseSize('2G', '--split').bytes).toBe(2 * 1024 ** 3);
    expect(parseSize('2gib', '--split').bytes).toBe(2 * 1024 ** 3);
    expect(parseSize('500m', '--split').bytes).toBe(500 * 1024 ** 2);
    expect(parseSize('1.5K', '--split').bytes).toBe(1536);
    expect(parseSize('1T', '--split').bytes).toBe(1024 ** 4);
  });

  it('a bare number, or one with B, is bytes', () => {
    expect(parseSize('4096', '--split')).toEqual({ bytes: 4096, given: '4096', units: 'bytes', unit: 'B' });
    expect(parseSize(' 4096B ', '--split').bytes).toBe(4096);
  });

  it('refuses what is not a size, naming the flag, with the syntax in the hint', () => {
    for (const bad of ['', '0', '0MB', '2X', '-1G', 'G', '1e9', '2Gi', '2 G B', '1PB', '0.1B']) {
      const e = fails(() => parseSize(bad, '--split'), 'E_USAGE', /^--split ".*" is not a size$/);
      expect(e.hint).toMatch(/MB.*decimal.*MiB.*binary/);
    }
    fails(() => parseSize('lots', 'FERRY_CACHE_MAX', 'E_CONFIG'), 'E_CONFIG', /FERRY_CACHE_MAX "lots"/);
  });

  it('says which reading it took', () => {
    expect(describeSize('--split', parseSize('100MB', '--split'))).toBe('--split 100MB = 100,000,000 bytes (decimal MB)');
    expect(describeSize('--split', parseSize('100MiB', '--split'))).toBe('--split 100MiB = 104,857,600 bytes (binary MiB)');
    expect(describeSize('--split', parseSize('2G', '--split'))).toBe('--split 2G = 2,147,483,648 bytes (binary G = GiB)');
    expect(describeSize('--split', parseSize('4096', '--split'))).toBe('--split 4096 = 4,096 bytes');
  });
});
