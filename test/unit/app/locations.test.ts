import { describe, expect, it } from 'vitest';
import { bundlePath, DESTINATION_KINDS, locationOf, parseLocation, SOURCE_KINDS } from '../../../src/app/locations.js';
import { isFerryError } from '../../../src/errors.js';

describe('KIND:LOCATION, the one way a place is named', () => {
  it('reads every kind with its location, paths kept as given', () => {
    expect(parseLocation('registry-layout:/var/lib/registry', '--to', DESTINATION_KINDS)).toEqual({ kind: 'registry-layout', location: '/var/lib/registry' });
    expect(parseLocation('oci:./out:with:colons', '--to', DESTINATION_KINDS)).toEqual({ kind: 'oci', location: './out:with:colons' });
    expect(parseLocation('bundle:rel.sha256', '--from', SOURCE_KINDS)).toEqual({ kind: 'bundle', location: 'rel.sha256' });
    expect(parseLocation('registry:harbor.corp.local/mirror', '--to', DESTINATION_KINDS)).toEqual({ kind: 'registry', location: 'harbor.corp.local/mirror' });
    expect(parseLocation('docker://10.0.0.5:5000/m', '--to', DESTINATION_KINDS)).toEqual({ kind: 'registry', location: '10.0.0.5:5000/m' });
  });

  it('a bare host is a registry only where the flag allows it; `registry:5000` is a host and port', () => {
    expect(parseLocation('harbor.corp.local:8443/p', '--to', ['registry'], true)).toEqual({ kind: 'registry', location: 'harbor.corp.local:8443/p' });
    expect(parseLocation('registry:5000/mirror', '--to', ['registry'], true)).toEqual({ kind: 'registry', location: 'registry:5000/mirror' });
    expect(() => parseLocation('harbor.corp.local', '--to', DESTINATION_KINDS)).toThrow(/KIND:LOCATION/);
  });

  it('refuses unknown kinds, kinds the flag cannot take, empty locations and bad registry names (exit 2)', () => {
    const bad: [string, readonly string[]][] = [
      ['nosuch:/x', DESTINATION_KINDS], ['docker-archive:x.tar', SOURCE_KINDS], ['bundle:x.tar', DESTINATION_KINDS],
      ['oci:', DESTINATION_KINDS], ['registry-layout:   ', DESTINATION_KINDS], ['registry:Not_A_Host/x', DESTINATION_KINDS], ['registry:h.local/UPPER', DESTINATION_KINDS],
    ];
    for (const [spec, kinds] of bad) {
      try {
        parseLocation(spec, '--to', kinds as never);
        expect.unreachable(spec);
      } catch (e) {
        expect(isFerryError(e) && e.exitStatus === 2, `${spec}: ${String(e)}`).toBe(true);
      }
    }
  });

  it('the two-word form gives the same Location', () => {
    expect(locationOf('skopeo-dir', './images', '--to', DESTINATION_KINDS)).toEqual(parseLocation('skopeo-dir:./images', '--to', DESTINATION_KINDS));
    expect(() => locationOf('bundle', 'x', '--to', DESTINATION_KINDS)).toThrow(/unknown target kind/);
    // docker:// after the kind word, as skopeo writes it (was: "docker:" is not a registry host).
    expect(locationOf('registry', 'docker://h.local:5000/m', '--to', DESTINATION_KINDS)).toEqual({ kind: 'registry', location: 'h.local:5000/m' });
    expect(() => locationOf('registry', 'https://h.local/m', '--to', DESTINATION_KINDS)).toThrow(/without a scheme/);
    // A URL where a path goes made folders docker:/h/x, exit 0; ./docker://h is still a path.
    expect(() => locationOf('oci', 'docker://h/x', '--to', DESTINATION_KINDS)).toThrow(expect.objectContaining({ hint: expect.stringContaining('--to registry:h/x') }));
    expect(() => parseLocation('oci:http://h/x', '--from', SOURCE_KINDS)).toThrow(/is a URL/);
    expect(parseLocation('oci:./docker://h', '--to', DESTINATION_KINDS).location).toBe('./docker://h');
  });

  it('says what to write for the near misses: a kind alone, a URL, ~ after the colon; hints name only kinds the flag takes', () => {
    const usage = (f: () => unknown): { message: string; hint: string } => {
      try {
        f();
      } catch (e) {
        if (isFerryError(e) && e.exitStatus === 2) return { message: e.message, hint: e.hint ?? '' };
        throw e;
      }
      return expect.unreachable('no error');
    };
    expect(usage(() => parseLocation('registry', '--to', ['registry'], true)).hint).toContain('--to registry:');
    expect(usage(() => parseLocation('registry-layout', '--from', SOURCE_KINDS)).hint).toContain('--from registry-layout:/var/lib/registry');
    const url = usage(() => parseLocation('https://harbor.corp.local/p', '--to', ['registry'], true));
    expect(url.message).toContain('without a scheme');
    expect(url.hint).toContain('--to harbor.corp.local/PREFIX');
    const tilde = usage(() => parseLocation('oci:~/out', '--to', DESTINATION_KINDS));
    expect(tilde.hint).toContain('oci:$HOME/out');
    expect(usage(() => parseLocation('nosuch:/x', '--to', ['registry'], true)).hint).not.toContain('registry-layout');
  });

  it('~USER after the colon, a FILE kind ending in / or written -, and an uppercase kind are refused saying what to write', () => {
    const usage = (spec: string, kinds: readonly string[] = DESTINATION_KINDS): { message: string; hint: string } => {
      try {
        parseLocation(spec, '--to', kinds as never);
      } catch (e) {
        if (isFerryError(e) && e.exitStatus === 2) return { message: e.message, hint: e.hint ?? '' };
        throw e;
      }
      return expect.unreachable(`${spec}: no error`);
    };
    // Was: a folder named `~ops` in the working directory, exit 0.
    expect(usage('oci:~ops/out').hint).toContain('--to oci:/home/ops/out');
    expect(usage('skopeo-dir:~ops').message).toContain('"~ops" is not expanded');
    // Was: a file named `out`, and a file named `-`, exit 0.
    expect(usage('docker-archive:out/').hint).toContain('--to docker-archive:out/images.tar');
    expect(usage('docker-archive:-').hint).toContain('docker-archive:./-');
    expect(usage('bundle:b.tar/', SOURCE_KINDS).message).toContain('names a folder');
    expect(parseLocation('bundle:-', '--from', SOURCE_KINDS).location).toBe('-');
    // Was: "expected KIND:LOCATION" with a list of kinds, the one meant among them.
    expect(usage('OCI:./out').hint).toBe('write --to oci:./out');
    expect(usage('Registry-Layout:/srv/r').hint).toBe('write --to registry-layout:/srv/r');
    // A place given without its kind: the hint writes this very value with the kinds that could take it (was: the kinds' own examples).
    expect(usage('./b.tar', SOURCE_KINDS).hint).toBe('e.g. --to bundle:./b.tar');
    expect(usage('/srv/out').hint).toBe('e.g. --to registry-layout:/srv/out, --to skopeo-dir:/srv/out, --to oci:/srv/out');
    expect(usage('images.tar').hint).toBe('e.g. --to docker-archive:images.tar');
    expect(usage('10.0.0.5:5000/m').hint).toBe('e.g. --to registry:10.0.0.5:5000/m');
    expect(usage('registry:5000').hint).toBe('e.g. --to registry:registry:5000');
    expect(usage('harbor.corp.local/m').hint).toContain('--to registry:harbor.corp.local/m, --to registry-layout:harbor.corp.local/m');
    expect(usage('~/out').hint).toContain('--to oci:$HOME/out');
    expect(usage('nosuch:x').hint).toContain('--to oci:./out');
    // A kind the flag cannot take: the value in the message and details, and how the thing meant is done.
    let registryFrom: { message: string; hint: string } = { message: '', hint: '' };
    try {
      parseLocation('registry:h.local:5000', '--from', SOURCE_KINDS);
    } catch (e) {
      if (isFerryError(e)) registryFrom = { message: e.message, hint: e.hint ?? '' };
    }
    expect(registryFrom.message).toContain('--from "registry:h.local:5000": registry cannot be used here');
    // serve names no registry to export from: the kinds it takes, nothing more.
    expect(usage('registry:h.local', ['registry-layout', 'oci']).hint).toBe('use one of registry-layout, oci');
    expect(registryFrom.hint).toContain('ferry export h.local:5000/REPO:TAG');
    expect(usage('docker-archive:x.tar', SOURCE_KINDS).hint).toContain('skopeo copy docker-archive:FILE oci:DIR');
    expect(usage('bundle:x.tar').hint).toContain('ferry export -o writes');
    expect(usage('oci:out', ['registry']).hint).toContain('ferry import B --to oci:out');
    // Still places: a folder whose name starts with ~ past the first character, a directory kind with a trailing /, ./-.
    expect(parseLocation('oci:./~ops/out', '--to', DESTINATION_KINDS).location).toBe('./~ops/out');
    expect(parseLocation('oci:out/', '--to', DESTINATION_KINDS).location).toBe('out/');
    expect(parseLocation('docker-archive:./-', '--to', DESTINATION_KINDS).location).toBe('./-');
  });

  it('a bundle argument is a path or bundle:PATH; another kind is refused saying how to bundle it', () => {
    expect(bundlePath('rel.tar', 'verify')).toBe('rel.tar');
    expect(bundlePath('bundle:./rel:1.tar', 'verify')).toBe('./rel:1.tar');
    expect(bundlePath('./oci:x', 'verify')).toBe('./oci:x');
    expect(() => bundlePath('oci:./x', 'verify')).toThrow(/kind oci/);
    expect(() => bundlePath('docker://h/x', 'verify')).toThrow(/a registry/);
    expect(() => bundlePath('bundle:', 'verify')).toThrow(/empty/);
    expect(() => bundlePath('bundle:~/r.tar', 'verify')).toThrow(/not expanded/);
    // Where the command writes that kind, --to was left out (the hint said to bundle the place first).
    expect(() => bundlePath('oci:./out', 'import', DESTINATION_KINDS)).toThrow(expect.objectContaining({ hint: expect.stringContaining('goes after --to: ferry import B.tar --to oci:./out') }));
    expect(() => bundlePath('oci:./out', 'push', ['registry'])).toThrow(expect.objectContaining({ hint: expect.stringContaining('ferry export --from oci:./out') }));
    // Was: opened, ENOTDIR, E_IO (exit 10) with a hint about permissions.
    expect(() => bundlePath('rel.tar/', 'verify')).toThrow(/names a folder/);
    expect(() => bundlePath('bundle:rel.tar/', 'verify')).toThrow(/names a folder/);
  });
});
