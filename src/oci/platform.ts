import { FerryError } from '../errors.js';

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, p.variant].filter((x) => x !== undefined && x !== '').join('/');
}

/**
 * Operating systems and architectures images are built for: Go's GOOS and
 * GOARCH values, which the OCI image spec refers to. A value outside them is a
 * typo (`linux/amd46`) that would otherwise select nothing after a long plan.
 */
const KNOWN_OS = ['aix', 'android', 'darwin', 'dragonfly', 'freebsd', 'illumos', 'ios', 'js', 'linux', 'netbsd', 'openbsd', 'plan9', 'solaris', 'wasip1', 'windows'];
const KNOWN_ARCH = ['386', 'amd64', 'arm', 'arm64', 'loong64', 'mips', 'mips64', 'mips64le', 'mipsle', 'ppc64', 'ppc64le', 'riscv64', 's390x', 'wasm'];

/** Parses `linux/amd64`, `linux/arm64/v8`; a comma-separated list gives several. */
export function parsePlatforms(spec: string, flag = '--platform'): Platform[] {
  const list = spec.split(',').map((s) => s.trim()).filter(Boolean);
  if (list.length === 0) throw new FerryError('E_USAGE', `${flag} is empty`, { hint: 'e.g. --platform linux/amd64,linux/arm64' });
  return list.map((s) => {
    const parts = s.split('/');
    if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
      throw new FerryError('E_USAGE', `${flag}: "${s.slice(0, 60)}" is not os/arch[/variant]`, { hint: 'e.g. --platform linux/amd64,linux/arm64' });
    }
    const [os, architecture, variant] = parts as [string, string, string | undefined];
    if (!KNOWN_OS.includes(os)) throw new FerryError('E_USAGE', `${flag}: "${s}": unknown operating system "${os}"`, { hint: `use one of ${KNOWN_OS.join(', ')}` });
    if (!KNOWN_ARCH.includes(architecture)) throw new FerryError('E_USAGE', `${flag}: "${s}": unknown architecture "${architecture}"`, { hint: `use one of ${KNOWN_ARCH.join(', ')}` });
    if (variant !== undefined && !/^v\d{1,2}$/.test(variant)) throw new FerryError('E_USAGE', `${flag}: "${s}": variant "${variant}" is not of the form v7, v8`, { hint: 'e.g. linux/arm/v7 or linux/arm64/v8' });
    const p: Platform = { os, architecture };
    if (variant !== undefined) p.variant = variant;
    return p;
  });
}

/** A wanted platform without variant matches any variant; `arm64` without variant also matches `v8`. */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have) return false;
  if (have.os !== want.os || have.architecture !== want.architecture) return false;
  return want.variant === undefined || have.variant === want.variant;
}
