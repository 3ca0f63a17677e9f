import { describe, expect, it } from 'vitest';
import { FerryError } from '../../../src/errors.js';
import { parseDestination, parseSshConfig, resolveEndpoint } from '../../../src/net/ssh/config.js';
import { parseSendTarget } from '../../../src/app/send.js';

describe('ssh_config subset', () => {
  const blocks = parseSshConfig([
    'User fallback-user',
    '# comment',
    'Host bastion jump-*',
    '    HostName=10.1.2.3',
    '    Port 2222',
    '    IdentityFile ~/.ssh/bastion_key',
    'Host jump-eu !jump-eu-old',
    '    ProxyJump ops@gw.example:2200',
    '    IdentityFile "/keys/with space"',
    'Match host *',
    '    Port 9999',
    'Host *',
    '    Port 22',
    '    User star-user',
    '',
  ].join('\n'));

  it('first value wins, IdentityFile accumulates, command-line parts override', () => {
    const ep = resolveEndpoint('jump-eu', blocks);
    expect(ep).toMatchObject({ alias: 'jump-eu', host: '10.1.2.3', port: 2222, user: 'fallback-user', proxyJump: 'ops@gw.example:2200' });
    expect(ep.identityFiles).toHaveLength(2);
    expect(ep.identityFiles[0]).toMatch(/\/\.ssh\/bastion_key$/);
    expect(ep.identityFiles[1]).toBe('/keys/with space');
    expect(resolveEndpoint('alice@jump-eu:2022', blocks)).toMatchObject({ user: 'alice', port: 2022, host: '10.1.2.3' });
  });

  it('negated patterns and skipped Match blocks', () => {
    const old = resolveEndpoint('jump-eu-old', blocks);
    expect(old.proxyJump).toBeUndefined();
    expect(old.host).toBe('10.1.2.3');
    const other = resolveEndpoint('elsewhere', blocks);
    expect(other).toMatchObject({ host: 'elsewhere', port: 22, user: 'fallback-user' });
  });

  it('parses destinations and refuses junk', () => {
    expect(parseDestination('ops@[::1]:2222')).toEqual({ user: 'ops', host: '::1', port: 2222 });
    expect(parseDestination('ssh://h.example')).toEqual({ host: 'h.example' });
    for (const bad of ['ops@', 'a b', 'h:99999', 'h:/x']) expect(() => parseDestination(bad)).toThrow(FerryError);
  });

  it('parses send destinations (scp style and ssh:// with a port)', () => {
    expect(parseSendTarget('ops@host:/srv/in/')).toEqual({ ssh: 'ops@host', dir: '/srv/in/' });
    expect(parseSendTarget('host:')).toEqual({ ssh: 'host', dir: '.' });
    expect(parseSendTarget('ssh://ops@host:2222/srv')).toEqual({ ssh: 'ops@host:2222', dir: '/srv' });
    expect(() => parseSendTarget('/local/path')).toThrow(FerryError);
  });
});
