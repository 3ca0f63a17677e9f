import { FerryError } from '../errors.js';
import type { Credentials } from '../net/credentials.js';
import { discard, type HttpClient, type HttpResponse, readCapped } from '../net/http.js';
import { ERROR_BODY_MAX_BYTES, parseRegistryErrors } from '../net/registry-error.js';
import { rememberSecret } from '../net/remote-text.js';
import { withRetry } from '../net/retry.js';
import type { RegistryEndpoint } from '../transports/registry/client.js';

/**
 * A small client for the parts of Harbor's v2.0 API (goharbor/harbor
 * api/v2.0/swagger.yaml) a push needs: detection, projects, quotas and the
 * caller's permissions. It talks to the same origin as the registry (Harbor's
 * core serves both) with HTTP Basic and the registry's own credentials —
 * robot accounts (`robot$name`) included: the name only ever travels base64
 * encoded in the Authorization header, never in a URL.
 */

export const API_PREFIX = '/api/v2.0';
/** API answers here are small JSON documents; anything larger is not Harbor talking. */
const API_BODY_MAX_BYTES = 1024 * 1024;

export interface HarborInfo {
  /** `harbor_version`, only sent to authenticated callers. */
  version?: string;
  /** `project_creation_restriction`: `everyone` or `adminonly` (authenticated callers only). */
  projectCreationRestriction?: string;
  readOnly?: boolean;
}

export interface HarborProject {
  projectId: number;
  name: string;
  public: boolean;
  /** Set for proxy-cache projects, which cannot be pushed to. */
  registryId?: number;
}

export interface HarborQuota {
  /** Storage limit in bytes; -1 (Harbor's value) means unlimited. */
  hard: number;
  used: number;
}

export interface HarborPermission {
  resource: string;
  action: string;
}

export type CreateOutcome = 'created' | 'exists';

export class HarborApi {
  readonly registry: string;
  private readonly base: URL;
  private readonly http: HttpClient;
  private readonly authorization: string | undefined;
  /** Who we are, for messages; never the password. */
  readonly user: string | undefined;

  /** On the registry's own origin, as the registry client reached it (RegistryClient.endpoint). */
  constructor(options: RegistryEndpoint) {
    this.base = new URL(options.base.origin);
    this.registry = options.registry;
    this.http = options.http;
    this.authorization = basicAuthorization(options.credentials);
    // Harbor's error messages pass remoteText (through parseRegistryErrors): an echoed password is redacted there.
    rememberSecret(options.credentials?.password, options.credentials?.username);
    this.user = this.authorization === undefined ? undefined : options.credentials?.username;
  }

  /**
   * Harbor's info when the origin is a Harbor, undefined when it is not. A
   * plain registry answers 404 to both probes; `/systeminfo` is open to
   * anonymous callers, `/ping` is the fallback for a Harbor whose systeminfo
   * fails (it answers "Pong" with no dependency on the database).
   */
  async detect(signal?: AbortSignal): Promise<HarborInfo | undefined> {
    const res = await this.get('/systeminfo', signal);
    if (res.status === 200) {
      const info = parseSystemInfo(await this.readJson(res, 'GET /api/v2.0/systeminfo', true));
      if (info) return info;
    } else {
      await discard(res.body);
    }
    const ping = await this.get('/ping', signal);
    if (ping.status !== 200) {
      await discard(ping.body);
      return undefined;
    }
    const body = await readCapped(ping.body, 1024).catch(() => undefined);
    return isPong(body) ? {} : undefined;
  }

  /** `HEAD /projects?project_name=` — 200 exists, 404 not. Harbor wants an authenticated caller here. */
  async projectExists(name: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.send('HEAD', `/projects?project_name=${encodeURIComponent(name)}`, { signal });
    await discard(res.body);
    if (res.status === 200) return true;
    if (res.status === 404) return false;
    throw await this.error(res, `checking whether project "${name}" exists`);
  }

  /** `GET /projects/{name}` with `X-Is-Resource-Name`, so an all-digit project name is not read as an id. */
  async getProject(name: string, signal?: AbortSignal): Promise<HarborProject> {
    const what = `reading project "${name}"`;
    const res = await this.send('GET', `/projects/${encodeURIComponent(name)}`, { signal, headers: { 'x-is-resource-name': 'true' } });
    if (res.status !== 200) throw await this.error(res, what);
    const project = parseProject(await this.readJson(res, what));
    if (!project) throw this.malformed(what);
    return project;
  }

  /**
   * `POST /projects`. 201 is created; 409 means it exists already (another
   * run, another user), which is what we wanted anyway. Harbor's own default
   * for `public` is false.
   */
  async createProject(name: string, opts: { public?: boolean; signal?: AbortSignal } = {}): Promise<CreateOutcome> {
    const body = Buffer.from(JSON.stringify({ project_name: name, metadata: { public: opts.public ? 'true' : 'false' } }));
    const res = await this.send('POST', '/projects', { signal: opts.signal, body, headers: { 'content-type': 'application/json' }, retry: false });
    if (res.status === 201) {
      await discard(res.body);
      return 'created';
    }
    if (res.status === 409) {
      await discard(res.body);
      return 'exists';
    }
    throw await this.error(res, `creating project "${name}"`);
  }

  /**
   * The project's storage quota. `/projects/{name}/summary` answers any member
   * allowed to read the quota; `/quotas` is for system admins only. Undefined
   * when neither tells us (no right to see it): the push then meets the limit,
   * if any, at upload time.
   */
  async projectQuota(project: HarborProject, signal?: AbortSignal): Promise<HarborQuota | undefined> {
    const summary = await this.send('GET', `/projects/${encodeURIComponent(project.name)}/summary`, { signal, headers: { 'x-is-resource-name': 'true' } });
    if (summary.status === 200) {
      const quota = parseSummaryQuota(await this.readJson(summary, `reading the summary of project "${project.name}"`));
      if (quota) return quota;
    } else {
      await discard(summary.body);
    }
    const res = await this.send('GET', `/quotas?reference=project&reference_id=${project.projectId}`, { signal });
    if (res.status === 401 || res.status === 403 || res.status === 404) {
      await discard(res.body);
      return undefined;
    }
    const what = `reading the quota of project "${project.name}"`;
    if (res.status !== 200) throw await this.error(res, what);
    return parseQuotas(await this.readJson(res, what), project.projectId);
  }

  /** `GET /users/current/permissions?scope=/project/ID&relative=true`: what the caller (user or robot) may do in the project. */
  async projectPermissions(projectId: number, signal?: AbortSignal): Promise<HarborPermission[]> {
    return this.permissions(`/project/${projectId}`, `reading your permissions in project ${projectId}`, signal);
  }

  /** The caller's system-level permissions (`project`/`create` among them for admins and system robots allowed to create projects). */
  async systemPermissions(signal?: AbortSignal): Promise<HarborPermission[]> {
    return this.permissions('/system', 'reading your system permissions', signal);
  }

  private async permissions(scope: string, what: string, signal?: AbortSignal): Promise<HarborPermission[]> {
    const res = await this.send('GET', `/users/current/permissions?scope=${encodeURIComponent(scope)}&relative=true`, { signal });
    if (res.status !== 200) throw await this.error(res, what);
    const perms = parsePermissions(await this.readJson(res, what));
    if (!perms) throw this.malformed(what);
    return perms;
  }

  private get(path: string, signal?: AbortSignal): Promise<HttpResponse> {
    return this.send('GET', path, { signal });
  }

  private async send(
    method: string,
    path: string,
    opts: { signal?: AbortSignal | undefined; headers?: Record<string, string>; body?: Buffer; retry?: boolean },
  ): Promise<HttpResponse> {
    const url = new URL(API_PREFIX + path, this.base);
    const headers: Record<string, string> = { accept: 'application/json', ...opts.headers };
    if (this.authorization) headers.authorization = this.authorization;
    const attempt = () => this.http.request({ method, url, headers, body: opts.body, signal: opts.signal });
    // A POST that timed out may have created the project: sending it again only risks a 409, which we accept, but stay explicit.
    return opts.retry === false ? attempt() : withRetry(attempt, undefined, opts.signal);
  }

  private async readJson(res: HttpResponse, what: string, lenient = false): Promise<unknown> {
    const body = await readCapped(res.body, API_BODY_MAX_BYTES);
    try {
      if (!body) throw new Error('too large');
      return JSON.parse(body.toString('utf8')) as unknown;
    } catch {
      if (lenient) return undefined;
      throw this.malformed(what);
    }
  }

  private malformed(what: string): FerryError {
    return new FerryError('E_REGISTRY', `Harbor ${this.registry}: ${what}: the answer is not the JSON Harbor's API sends`, {
      hint: 'check that the address is the Harbor itself and not a proxy or another product in front of it',
    });
  }

  /** A FerryError for an unexpected Harbor answer: code from the status, Harbor's `errors` messages, a hint; never the password. */
  async error(res: HttpResponse, what: string): Promise<FerryError> {
    const body = res.headers['content-length'] === '0' ? undefined : await readCapped(res.body, ERROR_BODY_MAX_BYTES).catch(() => undefined);
    return harborError(res.status, body, { registry: this.registry, user: this.user, what });
  }
}

/** Builds the error for a Harbor API status; exported for unit tests of the wording. */
export function harborError(status: number, body: Buffer | undefined, ctx: { registry: string; user: string | undefined; what: string }): FerryError {
  const entries = parseRegistryErrors(body);
  const reasons = entries.map((e) => (e.message ? `${e.code}: ${e.message}` : e.code)).join('; ');
  const message = `Harbor ${ctx.registry}: ${ctx.what}: answered ${status}${reasons ? ` (${reasons})` : ''}`;
  const details = { status, registry: ctx.registry, harborErrors: entries };
  const who = ctx.user === undefined ? 'anonymous access' : `user "${ctx.user}"`;
  if (status === 401) {
    return new FerryError('E_AUTH', message, {
      details,
      hint: ctx.user === undefined
        ? `Harbor needs credentials: pass --username/--password (a robot account "robot$…" works), or set FERRY_USERNAME/FERRY_PASSWORD`
        : `Harbor did not accept ${who}; check the name and password (robot accounts are named "robot$…", and their secret expires)`,
    });
  }
  if (status === 403) {
    return new FerryError('E_DENIED', message, {
      details,
      hint: `${who} lacks the permission; ask a Harbor administrator (project creation may be limited to admins; robot accounts need the right project permissions)`,
    });
  }
  if (status === 404) return new FerryError('E_NOT_FOUND', message, { details, hint: 'check the project name' });
  return new FerryError('E_REGISTRY', message, { details, hint: 'Harbor refused the request; check its core logs, or try again later' });
}

export function basicAuthorization(credentials: Credentials | undefined): string | undefined {
  if (credentials?.username === undefined || credentials.password === undefined) return undefined;
  return `Basic ${Buffer.from(`${credentials.username}:${credentials.password}`, 'utf8').toString('base64')}`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A GeneralInfo document: Harbor always sends `auth_mode`; authenticated callers also get `harbor_version`. */
export function parseSystemInfo(json: unknown): HarborInfo | undefined {
  if (!isObject(json)) return undefined;
  if (typeof json.auth_mode !== 'string' && typeof json.harbor_version !== 'string') return undefined;
  const info: HarborInfo = {};
  if (typeof json.harbor_version === 'string') info.version = json.harbor_version;
  if (typeof json.project_creation_restriction === 'string') info.projectCreationRestriction = json.project_creation_restriction;
  if (typeof json.read_only === 'boolean') info.readOnly = json.read_only;
  return info;
}

/** `/ping` answers the string Pong, as text/plain (or JSON-quoted by some versions). */
export function isPong(body: Buffer | undefined): boolean {
  const text = body?.toString('utf8').trim() ?? '';
  return text === 'Pong' || text === '"Pong"';
}

export function parseProject(json: unknown): HarborProject | undefined {
  if (!isObject(json)) return undefined;
  const id = json.project_id;
  if (typeof id !== 'number' || !Number.isInteger(id) || typeof json.name !== 'string') return undefined;
  const metadata = isObject(json.metadata) ? json.metadata : {};
  const project: HarborProject = { projectId: id, name: json.name, public: metadata.public === 'true' };
  if (typeof json.registry_id === 'number' && json.registry_id > 0) project.registryId = json.registry_id;
  return project;
}

function storageOf(list: unknown): number | undefined {
  if (!isObject(list)) return undefined;
  const v = list.storage;
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function quotaOf(json: unknown): HarborQuota | undefined {
  if (!isObject(json)) return undefined;
  const hard = storageOf(json.hard);
  if (hard === undefined) return undefined;
  return { hard, used: storageOf(json.used) ?? 0 };
}

/** ProjectSummary's `quota` ({hard, used} ResourceLists); absent when the caller may not read it. */
export function parseSummaryQuota(json: unknown): HarborQuota | undefined {
  return isObject(json) ? quotaOf(json.quota) : undefined;
}

/** `/quotas` answers an array of Quota; the one whose `ref.id` is the project (the filter should leave only it). */
export function parseQuotas(json: unknown, projectId: number): HarborQuota | undefined {
  if (!Array.isArray(json)) return undefined;
  const mine = json.find((q) => isObject(q) && isObject(q.ref) && Number(q.ref.id) === projectId) ?? (json.length === 1 ? json[0] : undefined);
  return quotaOf(mine);
}

/** A Permission array; `null` (Harbor's JSON for an empty Go slice) is no permissions. */
export function parsePermissions(json: unknown): HarborPermission[] | undefined {
  if (json === null) return [];
  if (!Array.isArray(json)) return undefined;
  return json
    .filter(isObject)
    .filter((p) => typeof p.resource === 'string' && typeof p.action === 'string')
    .map((p) => ({ resource: p.resource as string, action: p.action as string }));
}

/** Harbor's registry middleware checks push as action `push` on the project's `repository` resource. */
export function allowsPush(perms: HarborPermission[]): boolean {
  return perms.some((p) => p.resource === 'repository' && p.action === 'push');
}

/** A system admin, or a system robot given project creation. */
export function allowsProjectCreate(perms: HarborPermission[]): boolean {
  return perms.some((p) => p.resource === 'project' && p.action === 'create');
}

/** Harbor's project name rule (src/pkg/project/manager.go): lower case, separators `.`, `_`, `-` between alphanumerics, 1–255 chars. */
export function isValidProjectName(name: string): boolean {
  return name.length >= 1 && name.length <= 255 && /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(name);
}

/** Harbor's default robot prefix; project robots are `robot$project+name`. */
export function isRobotName(user: string | undefined): boolean {
  return user !== undefined && user.startsWith('robot$');
}
