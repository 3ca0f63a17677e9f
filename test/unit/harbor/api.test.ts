// Parsing of Harbor's v2.0 API documents (shapes from goharbor/harbor api/v2.0/swagger.yaml)
// and the wording of the errors built from its answers.
import { describe, expect, it } from 'vitest';
import {
  allowsProjectCreate,
  allowsPush,
  basicAuthorization,
  harborError,
  isPong,
  isRobotName,
  isValidProjectName,
  parsePermissions,
  parseProject,
  parseQuotas,
  parseSummaryQuota,
  parseSystemInfo,
} from '../../../src/harbor/api.js';
import { groupByProject, preflightError } from '../../../src/harbor/preflight.js';
import { FerryError } from '../../../src/errors.js';

describe('systeminfo and ping', () => {
  it('reads the anonymous GeneralInfo (auth_mode only) as Harbor without a version', () => {
    expect(parseSystemInfo({ auth_mode: 'db_auth', primary_auth_mode: false, self_registration: false })).toEqual({});
  });
  it('reads version, creation restriction and read-only mode for authenticated callers', () => {
    expect(parseSystemInfo({ auth_mode: 'oidc_auth', harbor_version: 'v2.10.1-abc', project_creation_restriction: 'adminonly', read_only: true }))
      .toEqual({ version: 'v2.10.1-abc', projectCreationRestriction: 'adminonly', readOnly: true });
  });
  it('does not take arbitrary JSON for Harbor', () => {
    expect(parseSystemInfo({ errors: [{ code: 'NOT_FOUND' }] })).toBeUndefined();
    expect(parseSystemInfo([])).toBeUndefined();
    expect(parseSystemInfo('Pong')).toBeUndefined();
    expect(parseSystemInfo(null)).toBeUndefined();
  });
  it('recognises Pong, as text or JSON string, and nothing else', () => {
    expect(isPong(Buffer.from('Pong'))).toBe(true);
    expect(isPong(Buffer.from('"Pong"\n'))).toBe(true);
    expect(isPong(Buffer.from('404 page not found'))).toBe(false);
    expect(isPong(undefined)).toBe(false);
  });
});

describe('projects', () => {
  it('reads a Project', () => {
    expect(parseProject({ project_id: 7, name: 'apps', owner_id: 1, registry_id: 0, metadata: { public: 'true', auto_scan: 'false' } }))
      .toEqual({ projectId: 7, name: 'apps', public: true });
    expect(parseProject({ project_id: 8, name: 'priv', metadata: { public: 'false' } })).toEqual({ projectId: 8, name: 'priv', public: false });
    expect(parseProject({ project_id: 9, name: 'nometa' })).toEqual({ projectId: 9, name: 'nometa', public: false });
  });
  it('marks proxy-cache projects', () => {
    expect(parseProject({ project_id: 3, name: 'dockerhub', registry_id: 2, metadata: { public: 'true' } })?.registryId).toBe(2);
  });
  it('rejects documents without a numeric id and a name', () => {
    expect(parseProject({ project_id: '7', name: 'apps' })).toBeUndefined();
    expect(parseProject({ project_id: 7 })).toBeUndefined();
    expect(parseProject({ project_id: 1.5, name: 'x' })).toBeUndefined();
    expect(parseProject([])).toBeUndefined();
  });
  it('validates project names the way Harbor does', () => {
    for (const ok of ['library', 'a', 'my-team', 'a.b_c-d', '0abc']) expect(isValidProjectName(ok), ok).toBe(true);
    for (const bad of ['', 'Apps', 'a__b', 'a--b', '-a', 'a-', 'a/b', 'x'.repeat(256)]) expect(isValidProjectName(bad), bad).toBe(false);
  });
  it('groups repositories by their first path component and sums bytes', () => {
    const groups = groupByProject([
      { repository: 'apps/web', bytes: 10 },
      { repository: 'tools/cli', bytes: 5 },
      { repository: 'apps/api/v2', bytes: 7 },
      { repository: 'apps/web', bytes: 1 },
    ]);
    expect(groups.map((g) => [g.name, g.repositories, g.bytes])).toEqual([
      ['apps', ['apps/web', 'apps/api/v2'], 18],
      ['tools', ['tools/cli'], 5],
    ]);
    expect(groupByProject([{ repository: 'apps/web', bytes: 10 }, { repository: 'apps/api', bytes: 10 }], { apps: 12 })[0]?.bytes).toBe(12);
  });
});

describe('quotas', () => {
  it('reads the quota of a ProjectSummary, and nothing when the caller may not see it', () => {
    expect(parseSummaryQuota({ repo_count: 2, quota: { hard: { storage: 1000 }, used: { storage: 250 } } })).toEqual({ hard: 1000, used: 250 });
    expect(parseSummaryQuota({ repo_count: 2, quota: { hard: { storage: -1 }, used: {} } })).toEqual({ hard: -1, used: 0 });
    expect(parseSummaryQuota({ repo_count: 2 })).toBeUndefined();
  });
  it('picks the project\'s entry from a /quotas list', () => {
    const list = [
      { id: 1, ref: { id: 1, name: 'library', owner_name: 'admin' }, hard: { storage: -1 }, used: { storage: 0 } },
      { id: 5, ref: { id: 4, name: 'apps', owner_name: 'admin' }, hard: { storage: 2048 }, used: { storage: 1024 } },
    ];
    expect(parseQuotas(list, 4)).toEqual({ hard: 2048, used: 1024 });
    expect(parseQuotas(list, 9)).toBeUndefined();
    expect(parseQuotas([list[1]], 4)).toEqual({ hard: 2048, used: 1024 });
    expect(parseQuotas({ errors: [] }, 4)).toBeUndefined();
  });
});

describe('permissions', () => {
  it('reads a Permission list and Harbor\'s null for none', () => {
    const perms = parsePermissions([{ resource: 'repository', action: 'pull' }, { resource: 'repository', action: 'push' }, { bogus: true }]);
    expect(perms).toEqual([{ resource: 'repository', action: 'pull' }, { resource: 'repository', action: 'push' }]);
    expect(allowsPush(perms!)).toBe(true);
    expect(allowsPush(parsePermissions([{ resource: 'repository', action: 'pull' }, { resource: 'artifact', action: 'push' }])!)).toBe(false);
    expect(parsePermissions(null)).toEqual([]);
    expect(parsePermissions({})).toBeUndefined();
  });
  it('sees project creation among system permissions', () => {
    expect(allowsProjectCreate([{ resource: 'project', action: 'create' }])).toBe(true);
    expect(allowsProjectCreate([{ resource: 'project', action: 'list' }])).toBe(false);
  });
});

describe('credentials', () => {
  it('encodes robot account names with their $ intact in Basic auth', () => {
    const header = basicAuthorization({ username: 'robot$ci', password: 'p:a$s', source: 'test' });
    expect(header).toMatch(/^Basic /);
    expect(Buffer.from(header!.slice(6), 'base64').toString('utf8')).toBe('robot$ci:p:a$s');
    expect(isRobotName('robot$ci')).toBe(true);
    expect(isRobotName('robot$apps+ci')).toBe(true);
    expect(isRobotName('robert')).toBe(false);
  });
  it('sends nothing without a password (an identity token is no Harbor API credential)', () => {
    expect(basicAuthorization({ identityToken: 'x', source: 'config' })).toBeUndefined();
    expect(basicAuthorization(undefined)).toBeUndefined();
  });
});

describe('errors', () => {
  const body = (code: string, message: string): Buffer => Buffer.from(JSON.stringify({ errors: [{ code, message }] }));
  it('maps 401/403/404/409/5xx to codes and keeps Harbor\'s messages', () => {
    const ctx = { registry: 'harbor.corp:8443', user: 'robot$ci', what: 'creating project "apps"' };
    const e401 = harborError(401, body('UNAUTHORIZED', 'unauthorized'), ctx);
    expect(e401.code).toBe('E_AUTH');
    expect(e401.message).toContain('harbor.corp:8443');
    expect(e401.message).toContain('UNAUTHORIZED: unauthorized');
    expect(e401.hint).toContain('robot$ci');
    const e403 = harborError(403, body('FORBIDDEN', 'Only system admin can create project'), ctx);
    expect(e403.code).toBe('E_DENIED');
    expect(e403.message).toContain('Only system admin can create project');
    expect(harborError(404, undefined, ctx).code).toBe('E_NOT_FOUND');
    expect(harborError(409, body('CONFLICT', 'The project named apps already exists'), ctx).code).toBe('E_REGISTRY');
    expect(harborError(500, Buffer.from('<html>oops</html>'), ctx).message).toBe('Harbor harbor.corp:8443: creating project "apps": answered 500');
  });
  it('tells anonymous callers to log in', () => {
    expect(harborError(401, undefined, { registry: 'h', user: undefined, what: 'x' }).hint).toMatch(/--username/);
  });
  it('aggregates several problems under the most fundamental code, each with its hint', () => {
    const problems = [
      new FerryError('E_NOT_FOUND', 'project "a" does not exist', { hint: 'pass --create-projects' }),
      new FerryError('E_DENIED', 'may not push to "b"', { hint: 'ask an admin' }),
    ];
    const e = preflightError('h:1', problems);
    expect(e.code).toBe('E_DENIED');
    expect(e.message).toContain('2 problems');
    expect(e.message).toContain('project "a" does not exist');
    expect(e.message).toContain('→ ask an admin');
    expect((e.details.problems as unknown[]).length).toBe(2);
    expect(preflightError('h:1', [problems[0]!])).toBe(problems[0]);
  });
});
