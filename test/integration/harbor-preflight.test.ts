// Harbor preflight against the contract fixture (Harbor's API in front of a real
// docker-registry in token mode) and against a plain registry: detection, every
// problem reported at once before any byte is sent, project creation (201, then 409
// is fine), and refused credentials reported without the password.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isFerryError } from '../../src/errors.js';
import { HarborApi } from '../../src/harbor/api.js';
import { preflightPush } from '../../src/harbor/preflight.js';
import { HttpClient } from '../../src/net/http.js';
import { type HarborFixture, startHarborFixture } from '../support/harbor-fixture.js';
import { type RegistryHandle, startRegistry } from '../support/registry.js';

const DEV = { username: 'dev', password: 'dev-Pa55-word', source: 'test' };
const ROBOT = { username: 'robot$ci', password: 'robot-S3cret-value', source: 'test' };
const PROJECT_ROBOT = { username: 'robot$apps+ci', password: 'project-robot-secret', source: 'test' };
const QUOTA = 100_000;
const USED = 60_000;

let harbor: HarborFixture;
let plain: RegistryHandle;

beforeAll(async () => {
  [harbor, plain] = await Promise.all([
    startHarborFixture({
      users: {
        dev: { password: DEV.password, projects: { apps: 'developer', small: 'developer', tools: 'guest' } },
        'robot$ci': { password: ROBOT.password, projects: { apps: 'developer', small: 'developer', tools: 'guest' } },
        'robot$apps+ci': { password: PROJECT_ROBOT.password, projects: { apps: 'developer' } },
      },
      projects: [{ name: 'apps' }, { name: 'tools' }, { name: 'small', quota: QUOTA, used: USED }, { name: 'secret' }],
    }),
    startRegistry(),
  ]);
});

afterAll(async () => {
  await Promise.all([harbor?.stop(), plain?.stop()]);
});

const at = (host: string, credentials?: typeof DEV) => ({ registry: host, plainHttp: true, ...(credentials ? { credentials } : {}) });

describe('detection', () => {
  it('recognises the fixture as Harbor and a plain registry as not Harbor', async () => {
    const h = await preflightPush({ registry: at(harbor.host, DEV), repositories: [{ repository: 'apps/web', bytes: 10 }] });
    h.close();
    expect(h.harbor).toBe(true);
    expect(h.harborVersion).toMatch(/^v2\./);
    expect(h.problems).toEqual([]);

    const p = await preflightPush({ registry: at(plain.host), repositories: [{ repository: 'nosuchproject/web', bytes: 10 }, { repository: 'single', bytes: 1 }] });
    p.close();
    expect(p.harbor).toBe(false);
    // Projects are a Harbor notion: on a plain registry nothing is missing and nothing is created.
    expect(p.problems).toEqual([]);
    expect(p.projects.every((x) => x.exists === true && !x.willCreate)).toBe(true);
    expect(await p.createMissingProjects()).toEqual({ created: [], existed: [] });
  });

  it('finds Harbor on the origin the registry client settled on: a loopback registry without --plain-http falls back to http for both', async () => {
    expect(harbor.host).toMatch(/^127\.0\.0\.1:\d+$/);
    const h = await preflightPush({ registry: { registry: harbor.host, credentials: DEV }, repositories: [{ repository: 'apps/web', bytes: 10 }] });
    h.close();
    expect(h.harbor).toBe(true);
    expect(h.problems).toEqual([]);
    expect(h.projects.map((p) => [p.name, p.exists, p.canPush])).toEqual([['apps', true, true]]);
  });

  it('detects directly through the API client, anonymous included', async () => {
    const http = new HttpClient();
    try {
      const onHarbor = new HarborApi({ base: new URL(harbor.url), registry: harbor.host, http });
      expect(await onHarbor.detect()).toEqual({});
      const onPlain = new HarborApi({ base: new URL(plain.url), registry: plain.host, http });
      expect(await onPlain.detect()).toBeUndefined();
    } finally {
      http.close();
    }
  });
});

describe('preflight problems', () => {
  it('reports a project without push right, a missing project and a too small quota together, before any upload', async () => {
    const before = harbor.log.length;
    const pre = await preflightPush({
      registry: at(harbor.host, ROBOT),
      repositories: [
        { repository: 'apps/web', bytes: 1000 },
        { repository: 'tools/cli', bytes: 10 },
        { repository: 'missing/thing', bytes: 10 },
        { repository: 'small/db', bytes: 30_000 },
        { repository: 'small/cache', bytes: 20_000 },
      ],
    });
    pre.close();

    expect(pre.harbor).toBe(true);
    expect(pre.problems.map((p) => p.code)).toEqual(['E_DENIED', 'E_NOT_FOUND', 'E_DENIED']);
    const [noPush, missing, quota] = pre.problems;
    expect(noPush?.message).toContain('robot$ci');
    expect(noPush?.message).toContain('"tools"');
    expect(noPush?.hint).toMatch(/robot account push permission/);
    expect(missing?.message).toContain('"missing"');
    expect(missing?.message).toContain('missing/thing');
    expect(missing?.hint).toContain('--create-projects');
    expect(quota?.message).toContain('"small"');
    expect(quota?.details).toMatchObject({ quota: { hard: QUOTA, used: USED }, bytes: 50_000 });

    const byName = Object.fromEntries(pre.projects.map((p) => [p.name, p]));
    expect(byName.apps).toMatchObject({ exists: true, willCreate: false, canPush: true, quota: { hard: -1, used: 0 }, bytes: 1000 });
    expect(byName.tools).toMatchObject({ exists: true, canPush: false });
    expect(byName.missing).toMatchObject({ exists: false, willCreate: false, canPush: false });
    expect(byName.small).toMatchObject({ exists: true, canPush: true, quota: { hard: QUOTA, used: USED }, bytes: 50_000 });

    expect(() => pre.assertOk()).toThrow(/3 problems/);
    try {
      pre.assertOk();
    } catch (e) {
      expect(isFerryError(e, 'E_DENIED')).toBe(true);
    }
    // Nothing was uploaded and nothing created: only reads happened.
    const during = harbor.log.slice(before);
    expect(during.filter((l) => l.method === 'POST' || l.method === 'PUT' || l.method === 'PATCH')).toEqual([]);
  });

  it('a private project the user is no member of, and a public one he may only read, are both "may not push"', async () => {
    const pre = await preflightPush({ registry: at(harbor.host, DEV), repositories: [{ repository: 'secret/x', bytes: 1 }, { repository: 'library/y', bytes: 1 }] });
    pre.close();
    expect(pre.problems.map((p) => [p.code, p.message.includes('may not push')])).toEqual([['E_DENIED', true], ['E_DENIED', true]]);
    expect(pre.problems[0]?.hint).toContain('Developer');
    expect(pre.projects.map((p) => [p.name, p.exists, p.canPush])).toEqual([['secret', true, false], ['library', true, false]]);
  });

  it('passes when the quota holds the bytes exactly', async () => {
    const pre = await preflightPush({ registry: at(harbor.host, DEV), repositories: [{ repository: 'small/db', bytes: QUOTA - USED }] });
    pre.close();
    expect(pre.problems).toEqual([]);
    expect(pre.ok).toBe(true);
  });

  it('flags repositories Harbor cannot hold: no project component, invalid project name', async () => {
    const pre = await preflightPush({ registry: at(harbor.host, DEV), repositories: [{ repository: 'alpine', bytes: 1 }, { repository: 'my__team/x', bytes: 1 }] });
    pre.close();
    expect(pre.problems.map((p) => p.code)).toEqual(['E_REFERENCE', 'E_REFERENCE']);
    expect(pre.problems[0]?.hint).toContain('--project-map');
  });

  it('a project robot may not create projects: reported in the preflight', async () => {
    const pre = await preflightPush({ registry: at(harbor.host, PROJECT_ROBOT), repositories: [{ repository: 'robotmade/x', bytes: 1 }], createProjects: true });
    pre.close();
    expect(pre.problems.map((p) => p.code)).toEqual(['E_DENIED']);
    expect(pre.problems[0]?.message).toMatch(/may not create projects/);
    expect(harbor.projects.has('robotmade')).toBe(false);
  });
});

describe('createMissingProjects', () => {
  it('creates missing projects (201) with the requested visibility, and a 409 from a concurrent creation is fine', async () => {
    const repos = [{ repository: 'newproj/app', bytes: 5 }, { repository: 'apps/web', bytes: 5 }, { repository: 'newpub/x', bytes: 1 }];
    const first = await preflightPush({ registry: at(harbor.host, DEV), repositories: repos, createProjects: true });
    const second = await preflightPush({ registry: at(harbor.host, DEV), repositories: repos, createProjects: true, public: true });
    try {
      expect(first.problems).toEqual([]);
      expect(first.projects.filter((p) => p.willCreate).map((p) => p.name)).toEqual(['newproj', 'newpub']);
      expect(first.projects.find((p) => p.name === 'newproj')).toMatchObject({ exists: false, willCreate: true, canPush: true });

      const posts = harbor.count('POST', '/api/v2.0/projects');
      expect(await first.createMissingProjects()).toEqual({ created: ['newproj', 'newpub'], existed: [] });
      expect(harbor.count('POST', '/api/v2.0/projects')).toBe(posts + 2);
      expect(harbor.projects.get('newproj')).toMatchObject({ public: false, createdBy: 'dev' });
      expect(first.projects.find((p) => p.name === 'newproj')).toMatchObject({ exists: true, willCreate: false });

      // Planned before the creation, run after it: Harbor answers 409, which means the project is there.
      expect(await second.createMissingProjects()).toEqual({ created: [], existed: ['newproj', 'newpub'] });
      // Run again, the first one has nothing left to do.
      expect(await first.createMissingProjects()).toEqual({ created: [], existed: [] });
    } finally {
      first.close();
      second.close();
    }

    const again = await preflightPush({ registry: at(harbor.host, DEV), repositories: repos, createProjects: true });
    again.close();
    expect(again.problems).toEqual([]);
    expect(again.projects.every((p) => p.exists && !p.willCreate && p.canPush)).toBe(true);
  });

  it('turns Harbor\'s 403 and 401 on creation into clear errors', async () => {
    const http = new HttpClient();
    try {
      const robot = new HarborApi({ base: new URL(harbor.url), registry: harbor.host, credentials: PROJECT_ROBOT, http });
      const denied = await robot.createProject('robotproj').catch((e: unknown) => e);
      expect(isFerryError(denied, 'E_DENIED')).toBe(true);
      expect((denied as Error).message).toContain('Only system level robot can create project');
      expect((denied as Error).message).toContain(harbor.host);

      const anon = new HarborApi({ base: new URL(harbor.url), registry: harbor.host, http });
      const unauth = await anon.createProject('anonproj').catch((e: unknown) => e);
      expect(isFerryError(unauth, 'E_AUTH')).toBe(true);
      expect(harbor.projects.has('robotproj') || harbor.projects.has('anonproj')).toBe(false);

      const dev = new HarborApi({ base: new URL(harbor.url), registry: harbor.host, credentials: DEV, http });
      const bad = await dev.createProject('Bad_Name').catch((e: unknown) => e);
      expect(isFerryError(bad, 'E_REGISTRY')).toBe(true);
      expect((bad as Error).message).toContain('lower case');
    } finally {
      http.close();
    }
  });
});

describe('credentials', () => {
  it('a wrong password is one E_AUTH naming the host, and the password appears nowhere', async () => {
    const wrong = { username: 'dev', password: 'not-the-Right-one-42', source: '--password' };
    const pre = await preflightPush({ registry: at(harbor.host, wrong), repositories: [{ repository: 'apps/web', bytes: 1 }, { repository: 'tools/x', bytes: 1 }] });
    pre.close();
    expect(pre.harbor).toBe(true);
    expect(pre.problems).toHaveLength(1);
    const e = pre.problems[0]!;
    expect(e.code).toBe('E_AUTH');
    expect(e.message).toContain(harbor.host);
    const everything = [e.message, e.hint ?? '', JSON.stringify(e.details), JSON.stringify(pre.toJSON()), String(e.stack)].join('\n');
    expect(everything).not.toContain(wrong.password);
    expect(everything).not.toContain(Buffer.from(`dev:${wrong.password}`).toString('base64'));
    expect(() => pre.assertOk()).toThrow(/refused|401/);
  });

  it('the API client reports a refused login as E_AUTH too', async () => {
    const http = new HttpClient();
    try {
      const api = new HarborApi({ base: new URL(harbor.url), registry: harbor.host, credentials: { ...ROBOT, password: 'wrong-robot-secret' }, http });
      const err = await api.projectExists('apps').catch((e: unknown) => e);
      expect(isFerryError(err, 'E_AUTH')).toBe(true);
      expect((err as Error).message).toContain(harbor.host);
      expect(JSON.stringify(err) + (err as Error).message + ((err as { hint?: string }).hint ?? '')).not.toContain('wrong-robot-secret');
    } finally {
      http.close();
    }
  });
});
