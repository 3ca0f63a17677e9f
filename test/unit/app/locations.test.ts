import { describe, expect, it } from 'vitest';
import { DESTINATION_KINDS, locationOf, parseLocation, SOURCE_KINDS } from '../../../src/app/locations.js';
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
  });
});
