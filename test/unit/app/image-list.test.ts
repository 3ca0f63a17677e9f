import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseImageList } from '../../../src/app/image-list.js';
import { isFerryError } from '../../../src/errors.js';
import { formatReference } from '../../../src/oci/reference.js';

describe('parseImageList', () => {
  it('reads references, skipping comments, blank lines and duplicates', () => {
    const text = [
      '# release 2.0',
      '',
      'nginx:1.25',
      '   docker.io/library/nginx:1.25   # same image, written in full',
      'quay.io/calico/node:v3.26.1 # trailing comment',
      '\tregistry.local:5000/team/app@sha256:' + 'b'.repeat(64),
      '',
    ].join('\r\n');
    const images = parseImageList(text, 'images.list');
    expect(images.map((i) => formatReference(i.reference))).toEqual([
      'docker.io/library/nginx:1.25',
      'quay.io/calico/node:v3.26.1',
      `registry.local:5000/team/app@sha256:${'b'.repeat(64)}`,
    ]);
    expect(images.map((i) => i.where)).toEqual(['images.list:3', 'images.list:5', 'images.list:6']);
  });

  it('reports every bad line with its file and line number', () => {
    try {
      parseImageList('nginx\nBAD NAME\nok:1\nfoo:-x\n', 'release.list');
      expect.unreachable();
    } catch (e) {
      expect(isFerryError(e, 'E_LIST_SYNTAX')).toBe(true);
      const msg = (e as Error).message;
      expect(msg).toContain('release.list:2');
      expect(msg).toContain('release.list:4');
      expect(msg).not.toContain('release.list:1');
      expect(msg).not.toContain('release.list:3');
    }
  });

  it('never throws anything but a FerryError (fuzz)', () => {
    fc.assert(fc.property(fc.array(fc.string({ maxLength: 80 }), { maxLength: 20 }), (lines) => {
      try {
        for (const img of parseImageList(lines.join('\n'), 'f')) expect(img.where).toMatch(/^f:\d+$/);
      } catch (e) {
        expect(isFerryError(e, 'E_LIST_SYNTAX')).toBe(true);
      }
    }), { numRuns: 1000 });
  });

  it('per-line --platform: both spellings, next to comments; a plain list reads as before (no platforms)', () => {
    const images = parseImageList([
      'nginx:1.25   --platform linux/amd64,linux/arm64/v8   # two platforms',
      'redis:7 --platform=linux/arm64',
      'alpine:3.19   # a plain line',
      'nginx:1.25 --platform linux/amd64,linux/arm64/v8',
    ].join('\n'), 'l');
    expect(images.map((i) => [formatReference(i.reference), i.platforms])).toEqual([
      ['docker.io/library/nginx:1.25', [{ os: 'linux', architecture: 'amd64' }, { os: 'linux', architecture: 'arm64', variant: 'v8' }]],
      ['docker.io/library/redis:7', [{ os: 'linux', architecture: 'arm64' }]],
      ['docker.io/library/alpine:3.19', undefined],
    ]);
    expect(parseImageList('a:1\n# --platform x\nb:2   # --platform linux/s390x\n', 'p').every((i) => i.platforms === undefined)).toBe(true);
  });

  it('a second --platform on a line, or one with an empty value, is a syntax error of that line', () => {
    for (const line of ['a:1 --platform linux/amd64 --platform linux/arm64', 'a:1 --platform=', 'a:1 --platform --platform linux/amd64']) {
      try {
        parseImageList(`ok:1\n${line}\n`, 'f');
        expect.unreachable(line);
      } catch (e) {
        expect(isFerryError(e, 'E_LIST_SYNTAX'), line).toBe(true);
        expect((e as Error).message, line).toMatch(/^f:2: --platform /);
      }
    }
  });
});
