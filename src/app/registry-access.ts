/**
 * How the user allowed ferry to reach registries: TLS exceptions are explicit
 * and per registry (or `--insecure` for all), plain HTTP only where named.
 * Credentials given on the command line apply to every registry the command
 * touches; otherwise each registry's come from the environment or docker's config.
 */
export interface RegistryAccess {
  /** --insecure: skip TLS verification everywhere. */
  insecureAll: boolean;
  /** --insecure-registry HOST: skip TLS verification for these hosts only. */
  insecure: string[];
  /** --plain-http HOST: talk plain HTTP to these hosts. */
  plainHttp: string[];
  caFile?: string;
  username?: string;
  password?: string;
}

export const NO_REGISTRY_ACCESS: RegistryAccess = { insecureAll: false, insecure: [], plainHttp: [] };

export interface RegistryConnection {
  registry: string;
  insecure: boolean;
  plainHttp: boolean;
  caFile?: string;
  credentials?: { username: string; password: string; source: string };
}

export function connectionFor(access: RegistryAccess, registry: string): RegistryConnection {
  const c: RegistryConnection = {
    registry,
    insecure: access.insecureAll || access.insecure.includes(registry),
    plainHttp: access.plainHttp.includes(registry),
  };
  if (access.caFile) c.caFile = access.caFile;
  if (access.username !== undefined && access.password !== undefined) c.credentials = { username: access.username, password: access.password, source: '--username/--password-stdin' };
  return c;
}
