import { FerryError } from './errors.js';

/**
 * Sizes the user types (`--split 100MB`, `--cache-max 50G`, FERRY_CACHE_MAX):
 * one reading everywhere, so `plan` and `export` agree on a cut and a share's
 * "100 MB" cap is not exceeded. Units as the SI and IEC prefixes say and as
 * disk vendors, file shares and `df -H` use them:
 *   KB MB GB TB      decimal: 10^3, 10^6, 10^9, 10^12 bytes
 *   KiB MiB GiB TiB  binary:  2^10, 2^20, 2^30, 2^40 bytes
 *   K M G T          binary too (GNU `split -b`, `dd`, `ls -h` read them so)
 * Letters are case-insensitive; a bare number (or `B`) is bytes; `1.5G` is allowed.
 */

export type SizeUnits = 'bytes' | 'decimal' | 'binary';

export interface ParsedSize {
  bytes: number;
  /** The text as given (trimmed). */
  given: string;
  units: SizeUnits;
  /** The unit as understood, spelled canonically: `MB`, `MiB`, `G` (= GiB); `B` for bytes. */
  unit: string;
}

const PREFIX_POWER: Record<string, number> = { K: 1, M: 2, G: 3, T: 4 };

/** The text a hint gives for the size syntax. */
export const SIZE_SYNTAX = 'bytes, or a number with KB/MB/GB/TB (decimal: 1 MB = 1,000,000 bytes) or KiB/MiB/GiB/TiB, K/M/G/T (binary: 1 MiB = 1,048,576 bytes)';

/**
 * Reads a size; `where` names the flag or variable for the message (`--split`).
 * Refuses zero (no volume or cap can be 0 bytes; callers that give 0 a meaning check for it first).
 */
export function parseSize(text: string, where: string, code: 'E_USAGE' | 'E_CONFIG' = 'E_USAGE'): ParsedSize {
  const given = text.trim();
  const m = /^(\d+(?:\.\d+)?)\s*(?:([kmgt])(i?)(b?)|(b?))$/i.exec(given);
  const prefix = m?.[2]?.toUpperCase();
  const iec = m?.[3] !== undefined && m[3] !== '';
  const byteLetter = m?.[4] !== undefined && m[4] !== '';
  // `Ki`, `Mi` without the B are not units anyone writes; refuse rather than guess.
  // A fraction of a byte (`--split 1.5`) is no size: it was read as 1 byte.
  const valid = m !== null && !(iec && !byteLetter) && !(prefix === undefined && m[1]!.includes('.'));
  const units: SizeUnits = prefix === undefined ? 'bytes' : byteLetter && !iec ? 'decimal' : 'binary';
  const base = units === 'decimal' ? 1000 : 1024;
  const factor = prefix === undefined ? 1 : base ** PREFIX_POWER[prefix]!;
  const bytes = valid ? Math.floor(Number(m[1]) * factor) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new FerryError(code, `${where} ${JSON.stringify(given.slice(0, 40))} is not a size`, {
      hint: `give ${SIZE_SYNTAX}, e.g. ${where} 2GB`,
    });
  }
  const unit = prefix === undefined ? 'B' : units === 'decimal' ? `${prefix}B` : iec ? `${prefix}iB` : prefix;
  return { bytes, given, units, unit };
}

/** `--split 100MB = 100,000,000 bytes (decimal MB)`: the info line that says how a size was read. */
export function describeSize(where: string, size: ParsedSize): string {
  const reading = size.units === 'bytes' ? 'bytes' : size.units === 'decimal' ? `decimal ${size.unit}` : `binary ${size.unit}${size.unit.length === 1 ? ` = ${size.unit}iB` : ''}`;
  return `${where} ${size.given} = ${size.bytes.toLocaleString('en-US')} bytes${size.units === 'bytes' ? '' : ` (${reading})`}`;
}
