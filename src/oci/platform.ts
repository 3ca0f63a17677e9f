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

/** Parses `linux/amd64`, `linux/arm64/v8`; a comma-separated list gives several. */
export function parsePlatforms(spec: string): Platform[] {
  return spec.split(',').map((s) => s.trim()).filter(Boolean).map((s) => {
    const parts = s.split('/');
    if (parts.length < 2 || parts.length > 3 || parts.some((p) => !/^[a-z0-9._-]+$/.test(p))) {
      throw new FerryError('E_USAGE', `--platform: "${s}" is not os/arch[/variant]`, { hint: 'e.g. --platform linux/amd64,linux/arm64' });
    }
    const p: Platform = { os: parts[0]!, architecture: parts[1]! };
    if (parts[2] !== undefined) p.variant = parts[2];
    return p;
  });
}

/** A wanted platform without variant matches any variant; `arm64` without variant also matches `v8`. */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have) return false;
  if (have.os !== want.os || have.architecture !== want.architecture) return false;
  return want.variant === undefined || have.variant === want.variant;
}
