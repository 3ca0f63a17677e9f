// Shared set-up for the login and credential-helper tests: registries behind htpasswd and
// token auth with one small image each, a throwaway HOME, the protocol-exact script helper
// on a PATH of its own, a throwaway gpg key and pass store for the real Debian helper, and
// the secret search of hostile-secrets.test.ts.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';
import { runFerry, type FerryResult } from '../support/cli.js';
import { targetOf } from '../support/http.js';
import { makeImage, makeLayer, Rng } from '../support/images.js';
import { pushArtifact } from '../support/push.js';
import { startRegistry, type RegistryHandle } from '../support/registry.js';

export const USER = 'courier';
export const PASSWORD = 'Ferry-S3cret+/=pa55word!';
export const WRONG = 'Wr0ng-Guess+/=pa55word?';
export const REPO = 'login/app';

/** The helper script, linked into a bin directory as docker-credential-<name>. */
export const HELPER_SCRIPT = fileURLToPath(new URL('../support/credential-helper.mjs', import.meta.url));

/** A registry with auth and one image, `REPO:1`. */
export async function authRegistry(auth: 'htpasswd' | 'token' | 'none', seed: number): Promise<RegistryHandle> {
  const reg = await startRegistry({ auth, users: { [USER]: PASSWORD } });
  try {
    const img = makeImage({ layers: [await makeLayer(new Rng(seed), { size: 20_000 })], mediaTypes: 'oci' });
    await pushArtifact(targetOf(reg), REPO, img, ['1']);
    return reg;
  } catch (e) {
    await reg.stop();
    throw e;
  }
}

/**
 * A directory holding `docker-credential-<name>` → the script helper, and `node` for its
 * shebang (so a PATH of this directory and docker's alone still runs it); put it first on PATH.
 */
export function helperBin(dir: string, name = 'ferrytest'): string {
  mkdirSync(dir, { recursive: true });
  symlinkSync(HELPER_SCRIPT, join(dir, `docker-credential-${name}`));
  symlinkSync(process.execPath, join(dir, 'node'));
  return dir;
}

/** A gpg key without passphrase and a pass store initialised for it: what docker-credential-pass needs. */
export function passStore(dir: string): Record<string, string> {
  const env = { GNUPGHOME: join(dir, 'gnupg'), PASSWORD_STORE_DIR: join(dir, 'password-store') };
  mkdirSync(env.GNUPGHOME, { recursive: true, mode: 0o700 });
  const run = (cmd: string, args: string[]) => execFileSync(cmd, args, { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  run('gpg', ['--batch', '--passphrase', '', '--quick-gen-key', 'ferry test <ferry-test@example.invalid>', 'default', 'default', 'never']);
  const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(run('gpg', ['--list-keys', '--with-colons']))?.[1];
  if (!fpr) throw new Error('gpg made no key');
  run('pass', ['init', fpr]);
  return env;
}

/** Stops the gpg-agent a pass store started (it outlives the helper otherwise) and removes its socket directory. */
export function stopGpg(env: Record<string, string>): void {
  for (const args of [['--kill', 'all'], ['--remove-socketdir']]) {
    try {
      execFileSync('gpgconf', args, { env: { ...process.env, ...env }, stdio: 'ignore' });
    } catch { /* nothing running */ }
  }
}

/** The secret as it could appear: raw, as Basic auth base64, alone in base64 and base64url, URL-encoded. */
export function forms(secret: string): string[] {
  return [secret, Buffer.from(`${USER}:${secret}`).toString('base64'), Buffer.from(secret).toString('base64'), encodeURIComponent(secret), Buffer.from(`${USER}:${secret}`).toString('base64url')];
}

/** Neither password, in any form, in what ferry printed. */
export function expectNoSecrets(what: string, r: FerryResult): void {
  for (const secret of [PASSWORD, WRONG]) {
    for (const f of forms(secret)) {
      expect(r.stdout.includes(f), `${what}: stdout holds ${JSON.stringify(f)}`).toBe(false);
      expect(r.stderr.includes(f), `${what}: stderr holds ${JSON.stringify(f)}`).toBe(false);
    }
  }
}

/** Runs ferry with HOME and DOCKER_CONFIG of the test, and checks its output for secrets. */
export async function ferry(args: string[], env: Record<string, string>, input?: string): Promise<FerryResult> {
  const r = await runFerry(args, { env, ...(input !== undefined ? { input } : {}) });
  expectNoSecrets(`ferry ${args.join(' ')}`, r);
  return r;
}

/** Names of the temp files a writer might leave beside config.json. */
export function leftovers(dir: string): string[] {
  return readdirSync(dir).filter((n) => n !== 'config.json');
}
