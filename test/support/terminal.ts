// A real pseudo-terminal for tests of what people see: `script` (util-linux) runs
// the command on a pty of a set width; the terminal's output (stdout and stderr
// together, as a user sees them) comes back. Also drives an interactive shell
// on a pty, for completion tests: keys in, screen text out.
import { spawn } from 'node:child_process';
import { FERRY_BIN, REPO_ROOT } from './cli.js';

export interface TerminalRun {
  code: number;
  output: string;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/** Runs `ferry ARGS` on a pty `columns` wide. */
export function ferryOnTerminal(args: string[], opts: { columns?: number; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<TerminalRun> {
  const command = [process.execPath, FERRY_BIN, ...args].map(quote).join(' ');
  return onTerminal(command, opts);
}

/** Runs a shell command line on a pty `columns` wide (80 unless told). */
export function onTerminal(command: string, opts: { columns?: number; env?: Record<string, string>; timeoutMs?: number } = {}): Promise<TerminalRun> {
  const line = `stty cols ${opts.columns ?? 80} rows 40; exec ${command}`;
  return new Promise((resolve, reject) => {
    const child = spawn('script', ['-qec', line, '/dev/null'], { cwd: REPO_ROOT, env: { ...process.env, ...opts.env }, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => out.push(c));
    child.stdin.end();
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 100_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 128, output: Buffer.concat(out).toString('utf8') });
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface ShellSession {
  /** Types keys (a `\t` is the Tab key). */
  type(keys: string): void;
  /** Waits until the screen, since the last clear(), shows `text`; fails with what it showed instead. */
  waitFor(text: string | RegExp, ms?: number): Promise<string>;
  /** Forgets what was shown so far and abandons the line being typed. */
  clear(): Promise<void>;
  close(): Promise<void>;
}

/**
 * An interactive shell on a pty, after running `setup`. Every wait is for text
 * on the screen, never for a time: a slow machine makes a test slower, not red.
 */
export async function shellSession(shell: 'bash' | 'zsh', setup: string, env: Record<string, string>): Promise<ShellSession> {
  const command = shell === 'zsh' ? 'zsh -f -i' : 'bash --norc --noprofile -i';
  const child = spawn('script', ['-qec', `stty cols 200 rows 40; exec ${command}`, '/dev/null'], { env: { ...process.env, TERM: 'dumb', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (c: Buffer) => { out += c.toString('utf8'); });
  const closed = new Promise<void>((resolve) => child.on('close', () => resolve()));
  const waitFor = async (text: string | RegExp, ms = 20_000): Promise<string> => {
    const seen = () => (typeof text === 'string' ? out.includes(text) : text.test(out));
    for (let waited = 0; waited < ms && !seen(); waited += 50) await sleep(50);
    if (!seen()) throw new Error(`${shell}: the screen never showed ${String(text)}; it showed:\n${JSON.stringify(out)}`);
    return out;
  };
  const marker = async () => {
    // Split in the command line, so that the echo of the typed line is not taken for its output.
    const n = Math.random().toString(36).slice(2, 8);
    child.stdin.write(`echo MARK""${n}\n`);
    await waitFor(`MARK${n}`);
  };
  child.stdin.write(`${setup}\n`);
  await marker();
  out = '';
  return {
    type: (keys) => { child.stdin.write(keys); },
    waitFor,
    async clear() {
      // Ctrl-U empties the line (Ctrl-C would also flush what is typed next).
      child.stdin.write('\x15');
      await marker();
      out = '';
    },
    async close() {
      // `exit` alone leaves `script` waiting for the end of its input.
      child.stdin.end('\x03exit\n');
      await Promise.race([closed, sleep(1000)]);
      child.kill('SIGKILL');
    },
  };
}

export interface Screen {
  /** The text each line shows at the end, trailing blanks trimmed. */
  lines: string[];
  /** Characters written past the right edge with wrapping off: cut off, never seen. */
  clipped: number;
  /** Lines that ran past the right edge and wrapped onto the next. */
  wrapped: number;
}

/**
 * What a terminal `columns` wide shows after `output`: a small emulator of the
 * sequences ferry and cli-progress write (carriage return, cursor column, erase
 * line, save/restore cursor, autowrap on/off). Counts what did not fit.
 */
export function screenOf(output: string, columns: number): Screen {
  const rows: string[][] = [[]];
  let r = 0;
  let c = 0;
  let autowrap = true;
  let saved = { r: 0, c: 0 };
  let clipped = 0;
  let wrapped = 0;
  const row = () => (rows[r] ??= []);
  const chars = [...output];
  for (let i = 0; i < chars.length; i++) {
    const ch = chars[i]!;
    if (ch === '\x1b') {
      const next = chars[i + 1];
      if (next === '7') { saved = { r, c }; i++; continue; }
      if (next === '8') { ({ r, c } = saved); i++; continue; }
      if (next !== '[') { i++; continue; }
      let j = i + 2;
      let params = '';
      while (j < chars.length && !/[@-~]/.test(chars[j]!)) params += chars[j++];
      const final = chars[j];
      i = j;
      const n = Number(params.replace(/^\?/, '')) || 0;
      if (final === 'G') c = Math.max(0, (n || 1) - 1);
      else if (final === 'K') {
        if (n === 2) rows[r] = [];
        else if (n === 0) row().length = Math.min(row().length, c);
        else for (let k = 0; k <= c; k++) row()[k] = ' ';
      } else if ((final === 'h' || final === 'l') && params === '?7') autowrap = final === 'h';
      else if (final === 'A') r = Math.max(0, r - (n || 1));
      else if (final === 'B') r += n || 1;
      else if (final === 'C') c += n || 1;
      else if (final === 'D') c = Math.max(0, c - (n || 1));
      continue;
    }
    if (ch === '\r') { c = 0; continue; }
    if (ch === '\n') { r++; continue; }
    if (ch === '\b') { c = Math.max(0, c - 1); continue; }
    if (ch < ' ') continue;
    if (c >= columns) {
      if (autowrap) { r++; c = 0; wrapped++; } else { c = columns - 1; clipped++; }
    }
    const line = row();
    while (line.length < c) line.push(' ');
    line[c++] = ch;
  }
  const lines = Array.from({ length: rows.length }, (_, k) => (rows[k] ?? []).join('').trimEnd());
  return { lines, clipped, wrapped };
}
