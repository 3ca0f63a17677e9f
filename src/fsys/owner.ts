import { readFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { FerryError } from '../errors.js';
import { isMissing } from './files.js';

/**
 * Who owns what ferry writes into a target. A registry serves its storage
 * directory as its own user (Debian's docker-registry, uid 102 or so): files
 * root created there are readable but not writable for it, and its next push
 * into such a directory fails with 500 "permission denied". So, as root, new
 * files and directories take the owner of the target root (or of the nearest
 * existing folder above it), or the one `--owner` names.
 */
export interface Owner {
  uid: number;
  gid: number;
}

/**
 * `--owner UID:GID` (numbers, or names from /etc/passwd and /etc/group).
 * Checked before anything runs: only root may give files away.
 */
export function parseOwner(text: string, files = { passwd: '/etc/passwd', group: '/etc/group' }): Owner {
  const shown = `--owner ${JSON.stringify(text.slice(0, 80))}`;
  const m = /^([^:\s]+):([^:\s]+)$/.exec(text.trim());
  if (!m) throw new FerryError('E_USAGE', `${shown}: expected UID:GID`, { hint: 'e.g. --owner 102:105 or --owner docker-registry:docker-registry' });
  const uid = idOf(m[1]!, files.passwd, 'user', shown);
  const gid = idOf(m[2]!, files.group, 'group', shown);
  const me = process.getuid?.();
  if (me !== undefined && me !== 0 && (uid !== me || !(process.getgroups?.() ?? []).includes(gid))) {
    throw new FerryError('E_USAGE', `${shown}: only root may give files to another user or to a group it is not in`, {
      hint: 'run the import as root (sudo), or leave --owner out', details: { uid, gid },
    });
  }
  return { uid, gid };
}

function idOf(part: string, file: string, what: 'user' | 'group', shown: string): number {
  if (/^\d+$/.test(part)) {
    const n = Number(part);
    if (n <= 0xfffffffe) return n;
    throw new FerryError('E_USAGE', `${shown}: ${what} id ${part} is out of range`, { hint: 'give ids between 0 and 4294967294' });
  }
  let text = '';
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    // an unreadable database is the same as the name missing from it
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f[0] === part && f[2] !== undefined && /^\d+$/.test(f[2])) return Number(f[2]);
  }
  throw new FerryError('E_USAGE', `${shown}: no ${what} ${JSON.stringify(part)} in ${file}`, {
    hint: `give the numeric ${what} id (getent ${what === 'user' ? 'passwd' : 'group'} ${part} shows it)`,
  });
}

/**
 * The owner new files in `root` get: `explicit` when given; as root, the
 * owner of `root` or of its nearest existing ancestor (undefined when that is
 * root itself: nothing to change); otherwise undefined (files are ours).
 */
export async function targetOwner(root: string, explicit: Owner | undefined): Promise<Owner | undefined> {
  if (explicit) return explicit;
  if (process.getuid?.() !== 0) return undefined;
  for (let d = resolve(root); ; d = dirname(d)) {
    try {
      const st = await stat(d);
      return st.uid === 0 && st.gid === 0 ? undefined : { uid: st.uid, gid: st.gid };
    } catch (e) {
      if (!isMissing(e) || d === dirname(d)) throw e;
    }
  }
}
