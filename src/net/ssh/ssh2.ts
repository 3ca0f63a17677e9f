import type ssh2Module from 'ssh2';

/**
 * The ssh2 library, loaded at the first SSH connection instead of at start:
 * with bcryptjs (serve's htpasswd, loaded the same way) it was a third of
 * every ferry process's start-up CPU (0.22 → 0.14 s for the dependencies
 * alone, measured), and most runs open no SSH session.
 */
let loading: Promise<typeof ssh2Module> | undefined;

export function ssh2(): Promise<typeof ssh2Module> {
  loading ??= import('ssh2').then((m) => m.default);
  return loading;
}
