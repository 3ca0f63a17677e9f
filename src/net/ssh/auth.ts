import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { AnyAuthMethod, AuthHandlerMiddleware, AuthenticationType, ParsedKey } from 'ssh2';
import { ssh2 } from './ssh2.js';

/**
 * Client authentication in the order ssh(1) uses: identity files named on the
 * command line or in ssh_config, the agent (SSH_AUTH_SOCK), the default
 * identity files (~/.ssh/id_ed25519, id_ecdsa, id_rsa, those that exist), and a
 * password or keyboard-interactive answer only when the server asks for one and
 * there is someone to ask. What was tried is recorded for the error message.
 */

export interface AuthSettings {
  user: string;
  /** --ssh-key and IdentityFile: tried first. */
  keyFiles: string[];
  passphrase?: string | undefined;
  /** Default SSH_AUTH_SOCK. */
  agentSocket?: string | undefined;
  /** Asks the person at the terminal; undefined answer = no password. */
  askPassword?: ((prompt: string) => Promise<string | undefined>) | undefined;
}

export const DEFAULT_KEY_NAMES = ['id_ed25519', 'id_ecdsa', 'id_rsa'];

export interface AuthPlan {
  handler: AuthHandlerMiddleware;
  /** What was offered, and why keys were skipped: for the failure message. */
  tried: string[];
  problems: string[];
}

type Step = () => Promise<AnyAuthMethod | undefined>;

async function loadKey(file: string, passphrase: string | undefined, problems: string[]): Promise<ParsedKey | undefined> {
  let data: Buffer;
  try {
    data = readFileSync(file);
  } catch (e) {
    problems.push(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    return undefined;
  }
  const parsed = (await ssh2()).utils.parseKey(data, passphrase);
  if (parsed instanceof Error) {
    problems.push(/passphrase|encrypted|decrypt/i.test(parsed.message)
      ? `${file} is encrypted and ${passphrase === undefined ? 'no passphrase was given (--ssh-passphrase-stdin)' : 'the passphrase does not open it'}`
      : `${file}: ${parsed.message}`);
    return undefined;
  }
  return Array.isArray(parsed) ? (parsed[0] as ParsedKey | undefined) : parsed;
}

export function planAuth(s: AuthSettings): AuthPlan {
  const tried: string[] = [];
  const problems: string[] = [];
  const steps: { needs: AuthenticationType; step: Step }[] = [];
  const keyStep = (file: string): { needs: AuthenticationType; step: Step } => ({
    needs: 'publickey',
    step: async () => {
      const key = await loadKey(file, s.passphrase, problems);
      if (!key) return undefined;
      tried.push(`key ${file}`);
      return { type: 'publickey', username: s.user, key, ...(s.passphrase !== undefined ? { passphrase: s.passphrase } : {}) };
    },
  });
  for (const f of s.keyFiles) steps.push(keyStep(f));
  const agent = s.agentSocket ?? process.env['SSH_AUTH_SOCK'];
  if (agent) {
    steps.push({ needs: 'publickey', step: async () => {
      tried.push('ssh-agent');
      return { type: 'agent', username: s.user, agent };
    } });
  }
  if (s.keyFiles.length === 0) {
    for (const name of DEFAULT_KEY_NAMES) {
      const f = join(homedir(), '.ssh', name);
      if (existsSync(f)) steps.push(keyStep(f));
    }
  }
  const ask = s.askPassword;
  if (ask) {
    steps.push({ needs: 'password', step: async () => {
      const password = await ask(`${s.user}'s password: `);
      if (password === undefined) return undefined;
      tried.push('password');
      return { type: 'password', username: s.user, password };
    } });
    steps.push({ needs: 'keyboard-interactive', step: async () => {
      tried.push('keyboard-interactive');
      return {
        type: 'keyboard-interactive', username: s.user,
        prompt: (_name, _instructions, _lang, prompts, finish) => {
          void (async () => {
            const answers: string[] = [];
            for (const p of prompts) answers.push((await ask(p.prompt)) ?? '');
            finish(answers);
          })();
        },
      };
    } });
  }

  let next = 0;
  const handler: AuthHandlerMiddleware = (authsLeft, _partial, callback) => {
    void (async () => {
      while (next < steps.length) {
        const s1 = steps[next++]!;
        // First call: authsLeft is null (the server has not said what it takes yet).
        if (authsLeft && !authsLeft.includes(s1.needs)) continue;
        const method = await s1.step().catch(() => undefined);
        if (method) return callback(method);
      }
      callback(false as unknown as AuthenticationType);
    })();
  };
  return { handler, tried, problems };
}
