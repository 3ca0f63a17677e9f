import { FerryError } from '../../errors.js';

/**
 * The minimal POSIX ustar the bundle needs, written and read by hand: every
 * header field is fixed by spec/bundle.md so equal content gives equal bytes,
 * and the reader refuses everything a bundle never contains (links, devices,
 * GNU extensions, global pax headers) instead of interpreting it.
 */

export const BLOCK = 512;
const USTAR_SIZE_MAX = 0o77777777777; // 11 octal digits

export interface TarHeader {
  name: string;
  type: 'file' | 'directory';
  size: number;
  mode: number;
  mtime: number;
}

function octal(buf: Buffer, offset: number, width: number, value: number): void {
  // width-1 octal digits, zero-padded, then NUL.
  buf.write(value.toString(8).padStart(width - 1, '0'), offset, width - 1, 'ascii');
  buf[offset + width - 1] = 0;
}

function ustarBlock(name: string, typeflag: string, size: number, mode: number, mtime: number): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  if (nameBytes.length > 100) throw new Error(`tar name longer than 100 bytes: ${name}`);
  const h = Buffer.alloc(BLOCK);
  nameBytes.copy(h, 0);
  octal(h, 100, 8, mode);
  octal(h, 108, 8, 0); // uid
  octal(h, 116, 8, 0); // gid
  octal(h, 124, 12, size);
  octal(h, 136, 12, mtime);
  h.fill(0x20, 148, 156); // checksum is computed with its own field as spaces
  h.write(typeflag, 156, 1, 'ascii');
  h.write('ustar\u000000', 257, 8, 'ascii');
  octal(h, 329, 8, 0); // devmajor
  octal(h, 337, 8, 0); // devminor
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0'), 148, 6, 'ascii');
  h[154] = 0;
  h[155] = 0x20;
  return h;
}

/**
 * The header block(s) for one entry: one ustar block, preceded by a pax
 * extended header carrying `size` only when the size does not fit 11 octal
 * digits (blobs of 8 GiB and more).
 */
export function encodeHeader(h: TarHeader): Buffer {
  if (h.size <= USTAR_SIZE_MAX) return ustarBlock(h.name, h.type === 'file' ? '0' : '5', h.size, h.mode, h.mtime);
  const record = paxRecord('size', String(h.size));
  const paxName = `PaxHeaders/${h.name.slice(h.name.lastIndexOf('/') + 1)}`.slice(0, 100);
  const pax = ustarBlock(paxName, 'x', record.length, 0o644, h.mtime);
  return Buffer.concat([pax, record, Buffer.alloc(padding(record.length)), ustarBlock(h.name, '0', 0, h.mode, h.mtime)]);
}

/** `<len> <key>=<value>\n` where len counts the whole record, its own digits included. */
function paxRecord(key: string, value: string): Buffer {
  const body = ` ${key}=${value}\n`;
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.from(`${len}${body}`, 'utf8');
}

export function padding(size: number): number {
  return (BLOCK - (size % BLOCK)) % BLOCK;
}

export const END_OF_ARCHIVE = Buffer.alloc(2 * BLOCK);

// ---------------------------------------------------------------- decoding

export type DecodedBlock =
  | { kind: 'end' }
  | { kind: 'pax'; size: number }
  | { kind: 'entry'; header: TarHeader };

function isZero(b: Buffer): boolean {
  for (const x of b) if (x !== 0) return false;
  return true;
}

function parseOctal(b: Buffer, offset: number, width: number, field: string, where: string): number {
  const raw = b.subarray(offset, offset + width);
  if (raw[0] !== undefined && (raw[0] & 0x80) !== 0) throw corrupt(where, `${field} uses base-256 encoding, which bundles never contain`);
  const text = raw.toString('ascii').replace(/[\0 ]+$/, '').replace(/^ +/, '');
  if (text === '') return 0;
  if (!/^[0-7]+$/.test(text)) throw corrupt(where, `${field} is not an octal number`);
  return parseInt(text, 8);
}

function corrupt(where: string, why: string): FerryError {
  return new FerryError('E_BUNDLE_CORRUPT', `${where}: ${why}`, {
    hint: 'the bundle is damaged or not a ferry bundle; copy it again from the exporting side',
    details: { file: where },
  });
}

/**
 * Decodes one 512-byte header block. Entry types other than regular files,
 * directories and pax extended headers are refused here.
 */
export function decodeBlock(b: Buffer, where: string): DecodedBlock {
  if (isZero(b)) return { kind: 'end' };
  const stored = parseOctal(b, 148, 8, 'header checksum', where);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : b[i]!;
  if (sum !== stored) throw corrupt(where, 'a tar header checksum does not match (the file is damaged or not a tar)');
  if (b.toString('ascii', 257, 263) !== 'ustar\u0000') throw corrupt(where, 'a tar header is not POSIX ustar');
  const rawName = cstring(b, 0, 100);
  const prefix = cstring(b, 345, 155);
  const name = prefix ? `${prefix}/${rawName}` : rawName;
  const typeflag = String.fromCharCode(b[156]!);
  const size = parseOctal(b, 124, 12, 'size', where);
  const shown = JSON.stringify(name.slice(0, 200));
  switch (typeflag) {
    case 'x':
      return { kind: 'pax', size };
    case '0':
    case '\0':
    case '5':
      return {
        kind: 'entry',
        header: {
          name,
          type: typeflag === '5' ? 'directory' : 'file',
          size: typeflag === '5' ? 0 : size,
          mode: parseOctal(b, 100, 8, 'mode', where),
          mtime: parseOctal(b, 136, 12, 'mtime', where),
        },
      };
    default: {
      const what = { '1': 'hard link', '2': 'symbolic link', '3': 'character device', '4': 'block device', '6': 'FIFO', g: 'global pax header', L: 'GNU long name', K: 'GNU long link name' }[typeflag] ?? `type ${JSON.stringify(typeflag)}`;
      throw new FerryError('E_BUNDLE_INVALID', `${where}: entry ${shown} is a ${what}; a bundle holds only regular files and two directories`, {
        hint: 'this is not a bundle written by ferry (or it was tampered with); do not use it',
        details: { file: where, entry: name.slice(0, 200) },
      });
    }
  }
}

function cstring(b: Buffer, offset: number, width: number): string {
  const raw = b.subarray(offset, offset + width);
  const nul = raw.indexOf(0);
  return raw.subarray(0, nul < 0 ? width : nul).toString('utf8');
}

/** Reads the `size` of a pax extended header body; any other key is refused (a bundle needs no other). */
export function parsePaxSize(body: Buffer, where: string): number {
  let rest = body.toString('utf8');
  let found: number | undefined;
  while (rest.length > 0) {
    const m = /^(\d+) /.exec(rest);
    if (!m) throw corrupt(where, 'a pax header record is malformed');
    const len = Number(m[1]);
    const rec = rest.slice(0, len);
    if (len < m[0].length + 2 || !rec.endsWith('\n')) throw corrupt(where, 'a pax header record is malformed');
    const kv = rec.slice(m[0].length, -1);
    const eq = kv.indexOf('=');
    const key = kv.slice(0, eq);
    const value = kv.slice(eq + 1);
    if (key !== 'size' || !/^\d+$/.test(value)) {
      throw new FerryError('E_BUNDLE_INVALID', `${where}: pax header key ${JSON.stringify(key.slice(0, 50))} is not allowed in a bundle`, {
        hint: 'bundles use pax headers only for sizes of 8 GiB and more; this file was not written by ferry', details: { file: where },
      });
    }
    found = Number(value);
    rest = rest.slice(len);
  }
  if (found === undefined || !Number.isSafeInteger(found)) throw corrupt(where, 'a pax header has no usable size');
  return found;
}
