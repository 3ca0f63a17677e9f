import { describe, expect, it } from 'vitest';
import { checkPlatforms } from '../../../src/app/platform-check.js';
import type { CopyPlan, PlannedImage } from '../../../src/copy/plan.js';
import { isFerryError } from '../../../src/errors.js';
import { parsePlatforms } from '../../../src/oci/platform.js';

/** Only what checkPlatforms reads: the origin, whether an index was filtered, and the platforms kept. */
function image(origin: string, platforms: string[], multi = true): PlannedImage {
  return { request: { origin }, platforms, ...(multi ? { sourceDigest: `sha256:${'a'.repeat(64)}` } : {}) } as unknown as PlannedImage;
}
const plan = (...images: PlannedImage[]): CopyPlan => ({ images, failures: [] });

describe('--platform against the plan', () => {
  it('refuses a platform no multi-platform image has, naming it', () => {
    const warnings: string[] = [];
    try {
      checkPlatforms(plan(image('a:1', ['linux/amd64']), image('b:1', ['linux/amd64'])), parsePlatforms('linux/amd64,linux/s390x'), (m) => warnings.push(m));
      expect.unreachable();
    } catch (e) {
      expect(isFerryError(e, 'E_USAGE')).toBe(true);
      expect((e as Error).message).toContain('linux/s390x');
      expect((e as Error).message).not.toContain('linux/amd64,');
    }
  });

  it('warns once per image that lacks one of several wanted platforms, and passes', () => {
    const warnings: string[] = [];
    checkPlatforms(plan(image('a:1', ['linux/amd64', 'linux/arm64/v8']), image('b:1', ['linux/amd64'])), parsePlatforms('linux/amd64,linux/arm64'), (m) => warnings.push(m));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('b:1');
    expect(warnings[0]).toContain('linux/arm64');
  });

  it('says so when no image is multi-platform (the filter changes nothing)', () => {
    const warnings: string[] = [];
    checkPlatforms(plan(image('a:1', [], false)), parsePlatforms('linux/arm64'), (m) => warnings.push(m));
    expect(warnings[0]).toContain('changes nothing');
  });

  it('parsePlatforms refuses unknown systems, architectures and odd variants', () => {
    for (const bad of ['linux/amd46', 'lnux/amd64', 'linux/arm/7', 'linux', '', 'linux/amd64/v8/x']) {
      expect(() => parsePlatforms(bad), bad).toThrow(/--platform/);
    }
    expect(parsePlatforms('linux/arm/v7, windows/amd64')).toEqual([{ os: 'linux', architecture: 'arm', variant: 'v7' }, { os: 'windows', architecture: 'amd64' }]);
  });
});
