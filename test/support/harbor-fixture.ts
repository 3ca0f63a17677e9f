// A contract fixture of Harbor's core, written from Harbor's published API
// (goharbor/harbor api/v2.0/swagger.yaml) and the handlers behind it: one loopback
// origin answering /api/v2.0/{systeminfo,ping,projects,quotas,users/current/permissions}
// itself and reverse-proxying /v2/* and /service/token to a real docker-registry in
// token mode — the way Harbor is deployed (core in front of the registry, token realm
// at the core's /service/token). The token grant enforces Harbor's rules: no access to
// a repository whose project does not exist, push only for members allowed to push.
import { timingSafeEqual, createHash } from 'node:crypto';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startRegistry, type RegistryHandle, type Scope } from './registry.js';

export type HarborRole = 'projectAdmin' | 'maintainer' | 'developer' | 'guest';

export interface HarborFixtureUser {
  password: string;
  /** A system administrator: every permission everywhere. */
  sysadmin?: boolean;
  /** Project name → role (for robots: their per-project access). */
  projects?: Record<string, HarborRole>;
  /** A system-level robot given the "create project" system permission. */
  canCreateProjects?: boolean;
}

export interface HarborFixtureProject {
  name: string;
  public?: boolean;
  /** Storage quota in bytes; -1 (Harbor's "unlimited") by default. */
  quota?: number;
  used?: number;
  /** Makes it a proxy-cache project. */
  registryId?: number;
}

export interface HarborFixtureOptions {
  users?: Record<string, HarborFixtureUser>;
  projects?: HarborFixtureProject[];
  /** Harbor's `project_creation_restriction`; default `everyone`. */
  projectCreationRestriction?: 'everyone' | 'adminonly';
  /** Quota of projects created through the API (Harbor's "default quota per project"). */
  defaultQuota?: number;
  readOnly?: boolean;
  version?: string;
}

export interface FixtureProjectState {
  id: number;
  name: string;
  public: boolean;
  quota: number;
  used: number;
  registryId?: number;
  ownerName: string;
  createdBy?: string;
}

export interface HarborRequestLog {
  method: string;
  path: string;
  /** The Basic user name, if a valid one was sent. */
  user: string | undefined;
  status: number;
}

export interface HarborFixture {
  /** `127.0.0.1:PORT`: the Harbor's address, for image references and `--to`. */
  host: string;
  url: string;
  /** The real registry behind it (its own port; token realm rewritten to the fixture). */
  registry: RegistryHandle;
  users: Record<string, HarborFixtureUser>;
  projects: Map<string, FixtureProjectState>;
  log: HarborRequestLog[];
  /** Requests that reached a path, e.g. count('POST', '/api/v2.0/projects'). */
  count(method: string, path: string): number;
  stop(): Promise<void>;
}

export const HARBOR_ADMIN = 'admin';
export const HARBOR_ADMIN_PASSWORD = 'Harbor12345-test';

const GUEST_PERMS = [
  ['project', 'read'],
  ['repository', 'list'],
  ['repository', 'read'],
  ['repository', 'pull'],
  ['artifact', 'list'],
  ['artifact', 'read'],
  ['quota', 'read'],
] as const;
const DEVELOPER_PERMS = [...GUEST_PERMS, ['repository', 'push'], ['artifact', 'create'], ['tag', 'create'], ['tag', 'list']] as const;
const MAINTAINER_PERMS = [...DEVELOPER_PERMS, ['repository', 'update'], ['repository', 'delete'], ['artifact', 'delete'], ['tag', 'delete']] as const;
const ADMIN_PERMS = [...MAINTAINER_PERMS, ['project', 'update'], ['project', 'delete'], ['member', 'create'], ['member', 'list']] as const;
const ROLE_PERMS: Record<HarborRole, ReadonlyArray<readonly [string, string]>> = {
  guest: GUEST_PERMS,
  developer: DEVELOPER_PERMS,
  maintainer: MAINTAINER_PERMS,
  projectAdmin: ADMIN_PERMS,
};
const SYSTEM_ADMIN_PERMS = [
  ['project', 'create'],
  ['project', 'list'],
  ['quota', 'list'],
  ['quota', 'read'],
  ['user', 'list'],
  ['catalog', 'read'],
] as const;

function safeEqual(a: string, b: string): boolean {
  return timingSafeEqual(createHash('sha256').update(a).digest(), createHash('sha256').update(b).digest());
}

const PROJECT_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

export async function startHarborFixture(opts: HarborFixtureOptions = {}): Promise<HarborFixture> {
  const users: Record<string, HarborFixtureUser> = {
    [HARBOR_ADMIN]: { password: HARBOR_ADMIN_PASSWORD, sysadmin: true },
    ...(opts.users ?? {}),
  };
  const projects = new Map<string, FixtureProjectState>();
  let nextId = 1;
  const addProject = (p: HarborFixtureProject, ownerName: string, createdBy?: string): FixtureProjectState => {
    const state: FixtureProjectState = {
      id: nextId++,
      name: p.name,
      public: p.public ?? false,
      quota: p.quota ?? -1,
      used: p.used ?? 0,
      ownerName,
      ...(p.registryId !== undefined ? { registryId: p.registryId } : {}),
      ...(createdBy !== undefined ? { createdBy } : {}),
    };
    projects.set(p.name, state);
    return state;
  };
  // Harbor always has `library`, public, owned by admin.
  addProject({ name: 'library', public: true }, HARBOR_ADMIN);
  for (const p of opts.projects ?? []) if (!projects.has(p.name)) addProject(p, HARBOR_ADMIN);
  const restriction = opts.projectCreationRestriction ?? 'everyone';
  const version = opts.version ?? 'v2.11.0-ferry-fixture';

  const isRobot = (name: string): boolean => name.startsWith('robot$');

  /** Relative permissions of `user` (undefined: anonymous) in a project, as Harbor's RBAC evaluates them. */
  const projectPerms = (user: string | undefined, p: FixtureProjectState): Array<readonly [string, string]> => {
    const u = user === undefined ? undefined : users[user];
    if (u?.sysadmin) return [...ADMIN_PERMS];
    const role = u?.projects?.[p.name] ?? (user !== undefined && !isRobot(user) && p.createdBy === user ? 'projectAdmin' : undefined);
    if (role) return [...ROLE_PERMS[role]];
    // Public projects are readable by everyone, anonymous included; robots only see what their policy grants.
    if (p.public && (user === undefined || !isRobot(user))) return [...GUEST_PERMS];
    return [];
  };
  const can = (user: string | undefined, p: FixtureProjectState, resource: string, action: string): boolean =>
    projectPerms(user, p).some(([r, a]) => r === resource && a === action);
  const systemPerms = (user: string | undefined): Array<readonly [string, string]> => {
    const u = user === undefined ? undefined : users[user];
    if (u?.sysadmin) return [...SYSTEM_ADMIN_PERMS];
    if (u?.canCreateProjects) return [['project', 'create']];
    return [];
  };

  const registry = await startRegistry({
    auth: 'token',
    users: Object.fromEntries(Object.entries(users).map(([name, u]) => [name, u.password])),
    // Harbor's token service: a repository whose project does not exist gets no access at all.
    tokenAccess: (user, requested) =>
      requested.flatMap((s): Scope[] => {
        if (s.type === 'registry' && s.name === 'catalog') return user !== undefined && users[user]?.sysadmin ? [{ ...s, actions: [...s.actions] }] : [];
        if (s.type !== 'repository') return [];
        const p = projects.get(s.name.split('/')[0] ?? '');
        if (!p || !s.name.includes('/')) return [];
        const actions = s.actions.flatMap((a) => (a === '*' ? ['pull', 'push', 'delete'] : [a])).filter((a) => {
          if (a === 'pull') return can(user, p, 'repository', 'pull');
          if (a === 'push') return !opts.readOnly && can(user, p, 'repository', 'push');
          if (a === 'delete') return can(user, p, 'repository', 'delete');
          return false;
        });
        return actions.length ? [{ ...s, actions }] : [];
      }),
  });
  const issuerUrl = new URL(registry.issuer!.realm);
  const log: HarborRequestLog[] = [];
  let selfUrl = '';

  /** Harbor's basic-auth security: a wrong password is not an error by itself, the request just runs anonymously. */
  const authenticate = (req: IncomingMessage): string | undefined => {
    const m = /^Basic\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m?.[1]) return undefined;
    const decoded = Buffer.from(m[1], 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    if (colon <= 0) return undefined;
    const name = decoded.slice(0, colon);
    const u = users[name];
    return u && safeEqual(decoded.slice(colon + 1), u.password) ? name : undefined;
  };

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): number => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': `req-${log.length}`, ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : text);
    return status;
  };
  /** Harbor's SendError: `{"errors":[{"code","message"}]}` with the status (a HEAD answer carries no body). */
  const fail = (res: ServerResponse, status: number, code: string, message: string): number => json(res, status, { errors: [{ code, message }] });
  const unauthorized = (res: ServerResponse): number => fail(res, 401, 'UNAUTHORIZED', 'unauthorized');
  const forbidden = (res: ServerResponse, message = 'forbidden'): number => fail(res, 403, 'FORBIDDEN', message);

  const projectJson = (p: FixtureProjectState, user: string | undefined): Record<string, unknown> => ({
    project_id: p.id,
    owner_id: 1,
    name: p.name,
    registry_id: p.registryId ?? 0,
    creation_time: '2024-01-01T00:00:00.000Z',
    update_time: '2024-01-01T00:00:00.000Z',
    deleted: false,
    owner_name: p.ownerName,
    togglable: true,
    current_user_role_ids: user === undefined ? null : [1],
    repo_count: 0,
    metadata: { public: String(p.public) },
  });
  const quotaJson = (p: FixtureProjectState): Record<string, unknown> => ({
    id: p.id,
    ref: { id: p.id, name: p.name, owner_name: p.ownerName },
    hard: { storage: p.quota },
    used: { storage: p.used },
    creation_time: '2024-01-01T00:00:00.000Z',
    update_time: '2024-01-01T00:00:00.000Z',
  });
  /** `{project_name_or_id}` with X-Is-Resource-Name: a name, or an id when it is all digits and the header is not true. */
  const findProject = (req: IncomingMessage, nameOrId: string): FixtureProjectState | undefined => {
    const asName = req.headers['x-is-resource-name'] === 'true' || !/^\d+$/.test(nameOrId);
    return asName ? projects.get(nameOrId) : [...projects.values()].find((p) => p.id === Number(nameOrId));
  };

  const api = async (req: IncomingMessage, res: ServerResponse, url: URL, user: string | undefined): Promise<number> => {
    const path = url.pathname.slice('/api/v2.0'.length);
    const method = req.method ?? 'GET';

    if (path === '/ping' && method === 'GET') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('Pong');
      return 200;
    }
    if (path === '/systeminfo' && method === 'GET') {
      const base = { auth_mode: 'db_auth', primary_auth_mode: false, self_registration: false, banner_message: '', oidc_provider_name: '' };
      if (user === undefined) return json(res, 200, base);
      return json(res, 200, {
        ...base,
        harbor_version: version,
        project_creation_restriction: restriction === 'adminonly' ? 'adminonly' : 'everyone',
        has_ca_root: false,
        read_only: opts.readOnly ?? false,
        external_url: selfUrl,
        registry_url: selfUrl.replace(/^https?:\/\//, ''),
        registry_storage_provider_name: 'filesystem',
        notification_enable: true,
        current_time: new Date().toISOString(),
      });
    }
    if (path === '/projects' && method === 'HEAD') {
      if (user === undefined) return unauthorized(res);
      const name = url.searchParams.get('project_name');
      if (!name) return fail(res, 422, 'UNPROCESSABLE_ENTITY', 'project_name in query is required');
      return projects.has(name) ? json(res, 200, undefined) : fail(res, 404, 'NOT_FOUND', `project ${name} not found`);
    }
    if (path === '/projects' && method === 'POST') {
      const body = await readBody(req);
      if (user === undefined) return unauthorized(res);
      const u = users[user];
      // Harbor: project-level robots (robot$project+name) are not system level.
      if (isRobot(user) && user.includes('+')) return forbidden(res, 'Only system level robot can create project');
      if (restriction === 'adminonly' && !(u?.sysadmin || u?.canCreateProjects)) return forbidden(res, 'Only system admin can create project');
      let reqBody: { project_name?: unknown; public?: unknown; metadata?: { public?: unknown } };
      try {
        reqBody = JSON.parse(body.toString('utf8')) as typeof reqBody;
      } catch {
        return fail(res, 400, 'BAD_REQUEST', 'parsing project body from "" failed, because invalid character');
      }
      const name = reqBody.project_name;
      if (typeof name !== 'string' || name.length < 1 || name.length > 255) {
        return fail(res, 400, 'BAD_REQUEST', `Project name ${String(name)} is illegal in length. (greater than 255 or less than 1)`);
      }
      let pub = reqBody.metadata?.public;
      if (pub === undefined && typeof reqBody.public === 'boolean') pub = String(reqBody.public);
      if (pub === undefined || pub === '') pub = 'false';
      if (pub !== 'true' && pub !== 'false') return fail(res, 400, 'BAD_REQUEST', `metadata.public should only be 'true' or 'false', but got: '${String(pub)}'`);
      if (!PROJECT_NAME.test(name)) return fail(res, 400, 'BAD_REQUEST', 'project name is not in lower case or contains illegal characters');
      if (projects.has(name)) return fail(res, 409, 'CONFLICT', `The project named ${name} already exists`);
      // Robots own nothing: Harbor makes the first system admin the owner of a project a robot creates.
      const p = addProject({ name, public: pub === 'true', quota: opts.defaultQuota ?? -1 }, isRobot(user) ? HARBOR_ADMIN : user, user);
      const inName = req.headers['x-resource-name-in-location'] === 'true';
      res.writeHead(201, { location: `/api/v2.0/projects/${inName ? p.name : p.id}`, 'x-request-id': `req-${log.length}` });
      res.end();
      return 201;
    }
    const summary = /^\/projects\/([^/]+)\/summary$/.exec(path);
    const single = /^\/projects\/([^/]+)$/.exec(path);
    if ((summary || single) && method === 'GET') {
      const key = decodeURIComponent((summary ?? single)![1]!);
      const p = findProject(req, key);
      // RequireProjectAccess: a project one cannot see, existing or not, is 401 (anonymous) or 403 — only an admin learns 404.
      if (!p || !can(user, p, 'project', 'read')) {
        if (user === undefined) return unauthorized(res);
        if (!p && users[user]?.sysadmin) return fail(res, 404, 'NOT_FOUND', `project ${key} not found`);
        return forbidden(res);
      }
      if (single) return json(res, 200, projectJson(p, user));
      const out: Record<string, unknown> = { repo_count: 0 };
      if (can(user, p, 'quota', 'read')) out.quota = { hard: { storage: p.quota }, used: { storage: p.used } };
      if (can(user, p, 'member', 'list')) Object.assign(out, { project_admin_count: 1, maintainer_count: 0, developer_count: 0, guest_count: 0, limited_guest_count: 0 });
      return json(res, 200, out);
    }
    if (path === '/quotas' && method === 'GET') {
      if (user === undefined) return unauthorized(res);
      if (!users[user]?.sysadmin) return forbidden(res);
      let list = [...projects.values()];
      const ref = url.searchParams.get('reference');
      const refId = url.searchParams.get('reference_id');
      if (ref !== null && ref !== 'project') list = [];
      if (refId !== null) list = list.filter((p) => String(p.id) === refId);
      return json(res, 200, list.map(quotaJson), { 'x-total-count': String(list.length) });
    }
    if (path === '/users/current/permissions' && method === 'GET') {
      if (user === undefined) return unauthorized(res);
      const scope = url.searchParams.get('scope') ?? '';
      const relative = url.searchParams.get('relative') === 'true';
      const m = /^\/project\/(\d+)$/.exec(scope);
      let perms: Array<readonly [string, string]> = [];
      let prefix = '';
      if (m) {
        const p = [...projects.values()].find((x) => x.id === Number(m[1]));
        // Harbor evaluates the policies of the namespace even for an unknown id: nothing is allowed there.
        perms = p ? projectPerms(user, p) : [];
        prefix = `/project/${m[1]}/`;
      } else if (scope.startsWith('/system')) {
        perms = systemPerms(user);
        prefix = '/system/';
      }
      // An empty Go slice is sent as null.
      return json(res, 200, perms.length ? perms.map(([r, a]) => ({ resource: relative ? r : `${prefix}${r}`, action: a })) : null);
    }
    return fail(res, 404, 'NOT_FOUND', `${method} ${url.pathname} not found`);
  };

  const proxy = (req: IncomingMessage, res: ServerResponse, target: URL, rewriteRealm: boolean): Promise<number> =>
    new Promise((resolve) => {
      const up = request(
        { host: target.hostname, port: target.port, method: req.method, path: req.url, headers: req.headers },
        (upRes) => {
          const headers = { ...upRes.headers };
          const challenge = headers['www-authenticate'];
          if (rewriteRealm && typeof challenge === 'string') {
            // The registry names its issuer; through Harbor, the realm is the core's own /service/token.
            headers['www-authenticate'] = challenge.split(registry.issuer!.realm).join(`${selfUrl}/service/token`);
          }
          res.writeHead(upRes.statusCode ?? 502, headers);
          upRes.pipe(res);
          resolve(upRes.statusCode ?? 502);
        },
      );
      up.on('error', () => {
        res.destroy();
        resolve(502);
      });
      req.pipe(up);
    });

  const registryUrl = new URL(registry.url);
  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://fixture');
    const user = authenticate(req);
    const record = (status: number): void => {
      log.push({ method: req.method ?? '', path: url.pathname + url.search, user, status });
    };
    let handled: Promise<number>;
    if (url.pathname === '/v2' || url.pathname.startsWith('/v2/')) handled = proxy(req, res, registryUrl, true);
    else if (url.pathname === '/service/token') handled = proxy(req, res, issuerUrl, false);
    else if (url.pathname.startsWith('/api/v2.0/')) {
      // POST bodies are read by the handler; anything else is drained so the connection can be reused.
      if (req.method !== 'POST') req.resume();
      handled = api(req, res, url, user).catch(() => fail(res, 500, 'UNKNOWN', 'internal server error'));
    } else {
      req.resume();
      handled = Promise.resolve(fail(res, 404, 'NOT_FOUND', 'not found'));
    }
    void handled.then(record);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  selfUrl = `http://127.0.0.1:${port}`;

  return {
    host: `127.0.0.1:${port}`,
    url: selfUrl,
    registry,
    users,
    projects,
    log,
    count: (method, path) => log.filter((l) => l.method === method && l.path.split('?')[0] === path).length,
    async stop() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await registry.stop();
    },
  };
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req as AsyncIterable<Buffer>) {
    size += c.length;
    if (size > 1024 * 1024) break;
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}
