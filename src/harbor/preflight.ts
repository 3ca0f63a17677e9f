import { type ErrorCode, FerryError, isFerryError } from '../errors.js';
import { type CredentialLookup, lookupCredentials } from '../net/credentials.js';
import { discard } from '../net/http.js';
import { RegistryClient, type RegistryOptions } from '../transports/registry/client.js';
import {
  allowsProjectCreate,
  allowsPush,
  HarborApi,
  type HarborInfo,
  type HarborQuota,
  isRobotName,
  isValidProjectName,
} from './api.js';

/**
 * Everything that can stop a push to Harbor, found before the first byte is
 * sent and reported all at once: credentials, missing projects, push rights,
 * quotas. On a plain registry only the credential check applies; projects are
 * a Harbor notion.
 */

export interface TargetRepository {
  /** The repository on the target registry, without the host: `library/nginx`. */
  repository: string;
  /** Bytes the push would add to it (blobs it does not have yet); the caller computes them. */
  bytes: number;
}

export interface PreflightOptions {
  /** The same options the RegistryDestination is opened with. */
  registry: RegistryOptions;
  repositories: TargetRepository[];
  /**
   * Bytes per project when the caller knows them exactly (Harbor counts a blob
   * once per project); otherwise the sum over the project's repositories, an
   * upper bound.
   */
  projectBytes?: Record<string, number>;
  /** Create projects that do not exist (`--create-projects`). */
  createProjects?: boolean;
  /** Visibility of created projects; Harbor's default is private. */
  public?: boolean;
  signal?: AbortSignal;
}

export interface ProjectCheck {
  name: string;
  repositories: string[];
  /** Undefined when it could not be checked (credentials refused). */
  exists: boolean | undefined;
  willCreate: boolean;
  /** Undefined when Harbor does not tell (unchecked, or a robot pushing into a project it is about to create). */
  canPush: boolean | undefined;
  /** Absent when the caller may not read it; `hard` -1 is unlimited. */
  quota?: HarborQuota;
  bytes: number;
}

export interface PreflightResult {
  registry: string;
  harbor: boolean;
  /** Harbor's version, when it told an authenticated caller. */
  harborVersion?: string;
  projects: ProjectCheck[];
  problems: FerryError[];
}

export interface CreatedProjects {
  created: string[];
  /** Answered 409: created meanwhile by someone else, which is as good. */
  existed: string[];
}

/** The result of a preflight plus the one action it may lead to. Close it when done. */
export class PushPreflight implements PreflightResult {
  readonly registry: string;
  readonly harbor: boolean;
  readonly harborVersion?: string;
  readonly projects: ProjectCheck[];
  readonly problems: FerryError[];

  constructor(
    result: PreflightResult,
    private readonly api: HarborApi | undefined,
    private readonly client: RegistryClient,
    private readonly options: Pick<PreflightOptions, 'public' | 'signal'>,
  ) {
    this.registry = result.registry;
    this.harbor = result.harbor;
    if (result.harborVersion !== undefined) this.harborVersion = result.harborVersion;
    this.projects = result.projects;
    this.problems = result.problems;
  }

  get ok(): boolean {
    return this.problems.length === 0;
  }

  /** Throws one error listing every problem; does nothing when there are none. */
  assertOk(): void {
    if (this.problems.length) throw preflightError(this.registry, this.problems);
  }

  /**
   * Creates every project marked `willCreate` (a no-op on a plain registry).
   * 409 counts as success: the project is there, whoever made it. Failures of
   * several projects are reported together.
   */
  async createMissingProjects(): Promise<CreatedProjects> {
    const out: CreatedProjects = { created: [], existed: [] };
    const api = this.api;
    if (!api) return out;
    const failures: FerryError[] = [];
    for (const project of this.projects.filter((p) => p.willCreate)) {
      try {
        const outcome = await api.createProject(project.name, {
          ...(this.options.public !== undefined ? { public: this.options.public } : {}),
          ...(this.options.signal ? { signal: this.options.signal } : {}),
        });
        (outcome === 'created' ? out.created : out.existed).push(project.name);
        project.exists = true;
        project.willCreate = false;
      } catch (e) {
        if (isFerryError(e, 'E_ABORTED')) throw e;
        failures.push(isFerryError(e) ? e : new FerryError('E_REGISTRY', `Harbor ${this.registry}: creating project "${project.name}" failed: ${(e as Error).message}`, { cause: e }));
      }
    }
    if (failures.length === 1) throw failures[0]!;
    if (failures.length > 1) throw preflightError(this.registry, failures, 'cannot create the projects');
    return out;
  }

  /** The plain data, for --json output and receipts. */
  toJSON(): Record<string, unknown> {
    return {
      registry: this.registry,
      harbor: this.harbor,
      ...(this.harborVersion !== undefined ? { harborVersion: this.harborVersion } : {}),
      projects: this.projects,
      problems: this.problems.map((p) => ({ code: p.code, message: p.message, ...(p.hint ? { hint: p.hint } : {}) })),
    };
  }

  close(): void {
    this.client.close();
  }
}

/** The first path component of each repository, with its repositories and bytes, in first-seen order. */
export function groupByProject(repositories: TargetRepository[], projectBytes?: Record<string, number>): ProjectCheck[] {
  const byName = new Map<string, ProjectCheck>();
  for (const { repository, bytes } of repositories) {
    const name = repository.split('/')[0] ?? repository;
    let p = byName.get(name);
    if (!p) {
      p = { name, repositories: [], exists: undefined, willCreate: false, canPush: undefined, bytes: 0 };
      byName.set(name, p);
    }
    if (!p.repositories.includes(repository)) p.repositories.push(repository);
    p.bytes += bytes;
  }
  for (const p of byName.values()) {
    const exact = projectBytes?.[p.name];
    if (exact !== undefined) p.bytes = exact;
  }
  return [...byName.values()];
}

export async function preflightPush(options: PreflightOptions): Promise<PushPreflight> {
  const reg = options.registry;
  const signal = options.signal;
  const lookup: CredentialLookup = lookupCredentials(reg.registry, reg.credentials);
  const client = new RegistryClient(reg, lookup);
  const problems: FerryError[] = [];
  const projects = groupByProject(options.repositories, options.projectBytes);
  const result: PreflightResult = { registry: reg.registry, harbor: false, projects, problems };
  const done = (api?: HarborApi): PushPreflight => new PushPreflight(result, api, client, options);

  try {
    // 1. Credentials, through the registry's own auth (the token service for Harbor): the same path the push takes.
    let credentialsOk = true;
    try {
      const res = await client.expect({ method: 'GET', url: '/v2/', scopes: [], signal }, [200], `logging in to registry ${reg.registry}`);
      await discard(res.body);
    } catch (e) {
      if (!isFerryError(e, 'E_AUTH') && !isFerryError(e, 'E_DENIED')) throw e;
      problems.push(e);
      credentialsOk = false;
    }

    // 2. Harbor or not: its API lives on the registry's origin, reached the way the registry client reached it.
    const api = new HarborApi(await client.endpoint(signal));
    const info = await api.detect(signal);
    if (!info) {
      // A plain registry: projects do not exist as such, every repository can simply be pushed.
      for (const p of projects) {
        p.exists = true;
        p.canPush = credentialsOk ? undefined : false;
      }
      return done();
    }
    result.harbor = true;
    if (info.version !== undefined) result.harborVersion = info.version;
    if (!credentialsOk) return done(api);
    if (api.user === undefined) {
      problems.push(new FerryError('E_AUTH', `Harbor ${reg.registry} needs credentials to push, and none were found`, {
        hint: lookup.hint ?? `pass --username/--password (a robot account "robot$…" works), or set FERRY_USERNAME/FERRY_PASSWORD`,
        details: { registry: reg.registry },
      }));
      return done(api);
    }
    if (info.readOnly) {
      problems.push(new FerryError('E_DENIED', `Harbor ${reg.registry} is in read-only mode: nothing can be pushed`, {
        hint: 'ask the Harbor administrator to leave read-only mode (Configuration → System Settings), then run the push again',
        details: { registry: reg.registry },
      }));
    }

    // 3. Every project, concurrently: there are few, and each needs a handful of small requests.
    let systemCanCreate: Promise<boolean> | undefined;
    const canCreate = (): Promise<boolean> => {
      systemCanCreate ??= api.systemPermissions(signal).then(allowsProjectCreate, () => false);
      return systemCanCreate;
    };
    const checks = await Promise.allSettled(projects.map((p) => checkProject(api, p, info, options, canCreate)));
    for (const [i, c] of checks.entries()) {
      if (c.status === 'fulfilled') for (const p of c.value) problems.push(p);
      else if (isFerryError(c.reason, 'E_ABORTED')) throw c.reason;
      else problems.push(isFerryError(c.reason) ? c.reason : new FerryError('E_REGISTRY', `Harbor ${reg.registry}: checking project "${projects[i]?.name}" failed: ${String(c.reason)}`, { cause: c.reason }));
    }
    dedupeAuthProblems(problems);
    return done(api);
  } catch (e) {
    client.close();
    throw e;
  }
}

async function checkProject(
  api: HarborApi,
  p: ProjectCheck,
  info: HarborInfo,
  options: PreflightOptions,
  systemCanCreate: () => Promise<boolean>,
): Promise<FerryError[]> {
  const signal = options.signal;
  const host = api.registry;
  const repos = p.repositories.join(', ');
  const details = { registry: host, project: p.name, repositories: p.repositories };

  if (!p.repositories.some((r) => r.includes('/'))) {
    p.exists = false;
    p.canPush = false;
    return [new FerryError('E_REFERENCE', `Harbor ${host}: repository "${p.repositories[0]}" has no project: Harbor keeps every repository inside a project (project/name)`, {
      hint: `map it into a project with --project-map, e.g. ${p.repositories[0]}=library/${p.repositories[0]}`,
      details,
    })];
  }
  if (!isValidProjectName(p.name)) {
    p.exists = false;
    p.canPush = false;
    return [new FerryError('E_REFERENCE', `Harbor ${host}: "${p.name}" (from ${repos}) is not a valid Harbor project name`, {
      hint: 'Harbor project names are lower-case letters and digits separated by single ".", "_" or "-"; map the repositories elsewhere with --project-map',
      details,
    })];
  }

  p.exists = await api.projectExists(p.name, signal);
  if (!p.exists) {
    if (!options.createProjects) {
      p.canPush = false;
      return [new FerryError('E_NOT_FOUND', `Harbor ${host}: project "${p.name}" does not exist (needed by ${repos})`, {
        hint: 'create the project in Harbor, or pass --create-projects to have ferry create it',
        details,
      })];
    }
    p.willCreate = true;
    const robot = isRobotName(api.user);
    // Harbor's rule: project robots (`robot$project+name`) never create projects; under "adminonly" only
    // admins and system robots given project creation do; otherwise any user or system robot may.
    const allowed = robot && api.user?.includes('+') ? false : info.projectCreationRestriction === 'adminonly' ? await systemCanCreate() : true;
    if (!allowed) {
      p.canPush = false;
      return [new FerryError('E_DENIED', `Harbor ${host}: project "${p.name}" does not exist (needed by ${repos}) and user "${api.user}" may not create projects`, {
        hint: 'ask a Harbor administrator to create the project and grant push on it, or to allow project creation for this account',
        details,
      })];
    }
    // The creator becomes the project's admin; a robot's rights come from its own policy, which Harbor only applies later.
    p.canPush = robot ? undefined : true;
    return [];
  }

  const problems: FerryError[] = [];
  const noPush = (): FerryError =>
    new FerryError('E_DENIED', `Harbor ${host}: user "${api.user}" may not push to project "${p.name}" (needed by ${repos})`, {
      hint: isRobotName(api.user)
        ? `give the robot account push permission ("Push Repository") on project "${p.name}", or use an account that has it`
        : `ask a project admin of "${p.name}" to make "${api.user}" a Developer (or higher) member`,
      details,
    });
  let project;
  try {
    project = await api.getProject(p.name, signal);
  } catch (e) {
    // Harbor answers 403 for a private project the caller is not a member of: no push there either.
    if (!isFerryError(e, 'E_DENIED')) throw e;
    p.canPush = false;
    return [noPush()];
  }
  if (project.registryId !== undefined) {
    p.canPush = false;
    return [new FerryError('E_DENIED', `Harbor ${host}: project "${p.name}" is a proxy-cache project, which cannot be pushed to`, {
      hint: 'map the repositories into an ordinary project with --project-map',
      details,
    })];
  }
  const [perms, quota] = await Promise.all([api.projectPermissions(project.projectId, signal), api.projectQuota(project, signal)]);
  p.canPush = allowsPush(perms);
  if (!p.canPush) problems.push(noPush());
  if (quota) {
    p.quota = quota;
    if (quota.hard >= 0 && quota.used + p.bytes > quota.hard) {
      problems.push(new FerryError('E_DENIED', `Harbor ${host}: project "${p.name}" has a storage quota of ${bytesText(quota.hard)} with ${bytesText(quota.used)} used; the push needs up to ${bytesText(p.bytes)} more`, {
        hint: `ask a Harbor administrator to raise the quota of "${p.name}" to at least ${bytesText(quota.used + p.bytes)}, or push fewer images`,
        details: { ...details, quota, bytes: p.bytes },
      }));
    }
  }
  return problems;
}

/** A refused login shows up once per project; say it once. */
function dedupeAuthProblems(problems: FerryError[]): void {
  const firstAuth = problems.findIndex((p) => p.code === 'E_AUTH');
  if (firstAuth < 0) return;
  for (let i = problems.length - 1; i > firstAuth; i--) if (problems[i]?.code === 'E_AUTH') problems.splice(i, 1);
}

const SEVERITY: ErrorCode[] = ['E_AUTH', 'E_DENIED', 'E_NOT_FOUND', 'E_REFERENCE', 'E_REGISTRY'];

/** One error for several problems: the most fundamental code, every problem on its own line with its hint. */
export function preflightError(registry: string, problems: FerryError[], what = 'cannot push'): FerryError {
  const code = SEVERITY.find((c) => problems.some((p) => p.code === c)) ?? problems[0]?.code ?? 'E_REGISTRY';
  if (problems.length === 1 && problems[0]) return problems[0];
  const lines = problems.map((p) => `  - ${p.message}${p.hint ? `\n    → ${p.hint}` : ''}`);
  return new FerryError(code, `${registry}: ${what}, ${problems.length} problems:\n${lines.join('\n')}`, {
    hint: 'fix each problem above, then run the push again; nothing was pushed',
    details: { registry, problems: problems.map((p) => ({ code: p.code, message: p.message, hint: p.hint, ...p.details })) },
  });
}

function bytesText(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]} (${n} bytes)`;
}
