// The file-system rules every on-disk target follows: no link below the root is
// followed (for reads, writes or deletes), killed runs' temps are swept but a live
// run's never are, --owner is checked before anything runs, and a local file-system
// error names the file and says what to do.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, readdir, readFile, symlink, utimes, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asFerryError } from '../../../src/errors.js';
import { parseOwner } from '../../../src/fsys/owner.js';
import { STALE_TEMP_AGE_MS, sweepStaleTemps } from '../../../src/fsys/stale-temps.js';
import { TargetTree } from '../../../src/fsys/target-tree.js';
import { HOST_TAG } from '../../../src/fsys/temp-names.js';
import { rejection } from '../../support/rejection.js';
import { makeTempDir, type TempDir } from '../../support/tmp.js';

let tmp: TempDir;
beforeAll(() => {
  tmp = makeTempDir('ferry-target-safety-');
});
afterAll(async () => tmp.cleanup());

/** A pid that belonged to a process that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  await new Promise((r) => child.once('exit', r));
  return child.pid!;
}

async function outsideWithBait(name: string): Promise<{ dir: string; bait: string }> {
  const dir = join(tmp.path, `outside-${name}`);
  await mkdir(dir, { recursive: true });
  const bait = join(dir, 'bait.txt');
  await writeFile(bait, 'not ferry\'s');
  return { dir, bait };
}

describe('TargetTree: confined to its root', () => {
  it('refuses to write through a directory link planted below the root, naming it; nothing lands outside', async () => {
    const root = join(tmp.path, 'confined-write');
    const out = await outsideWithBait('write');
    await mkdir(join(root, 'blobs'), { recursive: true });
    await symlink(out.dir, join(root, 'blobs', 'sha256'));
    const tree = new TargetTree(root);
    const e = await rejection(tree.streamToFileAtomic(join(root, 'blobs', 'sha256', 'ab', 'data'), Readable.from([Buffer.from('x')])));
    expect(e.code).toBe('E_NAME_UNSAFE');
    expect(e.message).toContain(join(root, 'blobs', 'sha256'));
    expect(e.hint).toMatch(/remove it/i);
    expect((await rejection(tree.writeFileAtomic(join(root, 'blobs', 'sha256', 'link'), 'sha256:x'))).code).toBe('E_NAME_UNSAFE');
    expect((await rejection(tree.mkdirs(join(root, 'blobs', 'sha256', 'cd')))).code).toBe('E_NAME_UNSAFE');
    expect(await readdir(out.dir)).toEqual(['bait.txt']);
  });

  it('refuses a file link where it would read, write or delete: hashing, reading a link file, replacing, removing', async () => {
    const root = join(tmp.path, 'confined-file');
    const out = await outsideWithBait('file');
    await mkdir(join(root, 'd'), { recursive: true });
    const planted = join(root, 'd', 'data');
    await symlink(out.bait, planted);
    const tree = new TargetTree(root);
    for (const op of [
      () => tree.hashFile(planted), () => tree.readFileHead(planted, 10), () => tree.fileSize(planted), () => tree.writeFileAtomic(planted, 'new'), () => tree.rm(planted),
    ]) expect((await rejection(op())).code).toBe('E_NAME_UNSAFE');
    expect(await readFile(out.bait, 'utf8')).toBe('not ferry\'s');
    expect((await lstat(planted)).isSymbolicLink()).toBe(true);
  });

  it('the root itself may be a link (the user pointed there); writes land in the real directory it names', async () => {
    const real = join(tmp.path, 'real-root');
    await mkdir(real);
    const root = join(tmp.path, 'root-link');
    await symlink(real, root);
    const tree = new TargetTree(root);
    await tree.writeFileAtomic(join(root, 'a', 'b'), 'ok');
    await tree.flush();
    expect(await readFile(join(real, 'a', 'b'), 'utf8')).toBe('ok');
  });
});

describe('stale temp files: a killed run\'s go, a live run\'s stay', () => {
  let sleeper: ChildProcess;
  beforeAll(() => {
    sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  });
  afterAll(() => {
    sleeper.kill('SIGKILL');
  });

  it('removes a dead writer\'s files and spool directories (current and earlier name forms), keeps live and own ones', async () => {
    const dir = join(tmp.path, 'sweep');
    await mkdir(dir);
    const dead = await deadPid();
    const live = sleeper.pid!;
    const names = {
      deadFile: `.ferry-tmp-release.tar.${dead}-${HOST_TAG}.0badcafe`,
      deadSpool: `.ferry-tmp-images.tar.${dead}-${HOST_TAG}.11223344`,
      legacyFile: `.ferry-tmp-release.tar.${dead}.deadbeef`,
      legacySpool: `.ferry-tmp-images.tar-${dead}-0a0b0c0d`,
      legacyStaging: `.ferry-staging-${dead}-01020304`,
      liveFile: `.ferry-tmp-release.tar.${live}-${HOST_TAG}.aaaaaaaa`,
      ownFile: `.ferry-tmp-release.tar.${process.pid}-${HOST_TAG}.bbbbbbbb`,
      otherHostFresh: `.ferry-tmp-release.tar.${dead}-0000ffff.cccccccc`,
      otherHostOld: `.ferry-tmp-release.tar.${dead}-0000ffff.dddddddd`,
      liveButAncient: `.ferry-tmp-release.tar.${live}-${HOST_TAG}.eeeeeeee`,
      notOurs: 'release.tar',
    };
    for (const [k, n] of Object.entries(names)) {
      if (k.endsWith('Spool') || k.endsWith('Staging')) {
        await mkdir(join(dir, n));
        await writeFile(join(dir, n, 'layer'), Buffer.alloc(1000));
      } else await writeFile(join(dir, n), Buffer.alloc(100));
    }
    const old = new Date(Date.now() - STALE_TEMP_AGE_MS - 60_000);
    for (const n of [names.otherHostOld, names.liveButAncient]) await utimes(join(dir, n), old, old);
    // A link with a temp name is removed as a link: what it points at stays.
    const out = await outsideWithBait('sweep');
    const linkName = `.ferry-tmp-x.${dead}-${HOST_TAG}.12345678`;
    await symlink(out.dir, join(dir, linkName));

    const removed = await sweepStaleTemps(dir);
    const left = (await readdir(dir)).sort();
    expect(left).toEqual([names.liveFile, names.ownFile, names.otherHostFresh, names.notOurs].sort());
    expect(removed.map((r) => r.path).sort()).toEqual(
      [names.deadFile, names.deadSpool, names.legacyFile, names.legacySpool, names.legacyStaging, names.otherHostOld, names.liveButAncient, linkName].map((n) => join(dir, n)).sort(),
    );
    expect(removed.find((r) => r.path.endsWith(names.deadSpool))?.bytes).toBe(1000);
    expect(await readdir(out.dir)).toEqual(['bait.txt']);
  });
});

describe('--owner', () => {
  it('takes UID:GID numbers or names from the passwd and group files, and refuses anything else before it runs', async () => {
    const passwd = join(tmp.path, 'passwd');
    const group = join(tmp.path, 'group');
    await writeFile(passwd, 'root:x:0:0::/root:/bin/sh\ndocker-registry:x:102:105::/var/lib/docker-registry:/usr/sbin/nologin\n');
    await writeFile(group, 'root:x:0:\ndocker-registry:x:105:\n');
    expect(parseOwner('102:105', { passwd, group })).toEqual({ uid: 102, gid: 105 });
    expect(parseOwner('docker-registry:docker-registry', { passwd, group })).toEqual({ uid: 102, gid: 105 });
    for (const bad of ['102', '102:', ':105', 'nobody-here:105', '102:no-group', '1:2:3', '99999999999:1']) {
      const e = asFerryError((() => { try { parseOwner(bad, { passwd, group }); } catch (x) { return x; } return new Error(`accepted ${bad}`); })());
      expect(e.code, bad).toBe('E_USAGE');
      expect(e.message).toContain('--owner');
    }
  });
});

describe('local file-system errors name the file and say what to do', () => {
  const errno = (code: string, syscall: string, path?: string) => Object.assign(new Error(`${code}: x, ${syscall}`), { code, syscall, ...(path ? { path } : {}) });

  it('disk full and quota become E_NO_SPACE, read-only and permission errors E_IO, each with the file and a hint (exit 10)', () => {
    const cases: [string, RegExp][] = [['ENOSPC', /free space/], ['EDQUOT', /quota/], ['EROFS', /writable file system/], ['EACCES', /may write/], ['EPERM', /may write/]];
    for (const [code, hint] of cases) {
      const e = asFerryError(errno(code, 'write', '/srv/out/release.tar'));
      expect(e.code, code).toBe(code === 'ENOSPC' || code === 'EDQUOT' ? 'E_NO_SPACE' : 'E_IO');
      expect(e.exitStatus).toBe(10);
      expect(e.message).toContain('/srv/out/release.tar');
      expect(e.message).toContain(code);
      expect(e.hint).toMatch(hint);
      expect(e.details).toMatchObject({ file: '/srv/out/release.tar', errno: code });
    }
  });

  it('a failed stream write names the final file, not its temp, and leaves no temp behind', async () => {
    const root = join(tmp.path, 'named');
    const tree = new TargetTree(root);
    const failing = new Readable({ read() { this.destroy(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' })); } });
    const e = asFerryError(await tree.streamToFileAtomic(join(root, 'x', 'data'), failing).then(() => new Error('accepted'), (x: unknown) => x));
    expect(e.code).toBe('E_NO_SPACE');
    expect(e.message).toContain(join(root, 'x', 'data'));
    expect(e.message).not.toContain('.ferry-tmp-');
    expect(existsSync(join(root, 'x')) ? await readdir(join(root, 'x')) : []).toEqual([]);
  });
});
