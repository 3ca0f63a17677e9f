import { describe, expect, it } from 'vitest';
import { FerryError } from '../../../src/errors.js';
import { loadSshConfig, parseDestination, parseSshConfig, resolveEndpoint } from '../../../src/net/ssh/config.js';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { makeTempDir } from '../../support/tmp.js';
import { parseSendTarget } from '../../../src/app/send.js';

describe('ssh_config subset', async () => {
  const blocks = await parseSshConfig([
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

describe('ssh_config Include', () => {
  it('splices included files where the Include stands; inside a Host block they apply only to that block', async () => {
    const files: Record<string, string> = {
      'common': 'User common-user\nHost inner-*\n  Port 2201',
      'eu': 'HostName 10.9.9.9\nHost *\n  IdentityFile ~/.ssh/eu_key',
    };
    const blocks = await parseSshConfig([
      'Include common',
      'Host jump-eu',
      '  Include eu missing',
      '  Port 2200',
      'Host *',
      '  Port 22',
    ].join('\n'), async (arg) => (files[arg] !== undefined ? [{ path: arg, text: files[arg] }] : []));
    const eu = resolveEndpoint('jump-eu', blocks);
    expect(eu).toMatchObject({ host: '10.9.9.9', port: 2200, user: 'common-user' });
    expect(eu.identityFiles).toHaveLength(1);
    // The included Host * ran only under Host jump-eu: nothing of eu leaks to other hosts.
    const other = resolveEndpoint('other', blocks);
    expect(other).toMatchObject({ host: 'other', port: 22, user: 'common-user', identityFiles: [] });
    expect(resolveEndpoint('inner-a', blocks).port).toBe(2201);
  });

  it('reads real files: absolute paths, wildcards in lexical order, a missing file ignored, a loop refused', async () => {
    const tmp = makeTempDir('ferry-sshcfg-');
    try {
      const d = join(tmp.path, 'config.d');
      await mkdir(d);
      await writeFile(join(d, '20-b.conf'), 'Host site\n  HostName second.example\n');
      await writeFile(join(d, '10-a.conf'), 'Host site\n  HostName first.example\n  User ops\n');
      await writeFile(join(d, 'notes.txt'), 'Host site\n  HostName wrong.example\n');
      const main = join(tmp.path, 'config');
      await writeFile(main, `Include ${join(d, '*.conf')} ${join(tmp.path, 'absent.conf')}\nHost *\n  Port 2222\n`);
      const ep = resolveEndpoint('site', await loadSshConfig(main));
      expect(ep).toMatchObject({ host: 'first.example', user: 'ops', port: 2222 });

      const loop = join(tmp.path, 'loop');
      await writeFile(loop, `Include ${loop}\n`);
      await expect(loadSshConfig(loop)).rejects.toThrow(/Include nested deeper than 16 levels/);
    } finally {
      await tmp.cleanup();
    }
  });
});
