import { FerryError } from '../errors.js';
import type { CliIo } from './context.js';

/** Whether the invocation can ask its user: both stdin and stderr are a terminal. */
export function canAsk(io: CliIo): boolean {
  return io.stdin.isTTY === true && io.stderr.isTTY === true;
}

/**
 * One line from the terminal, read in raw mode: echoed as typed, or not at all
 * (a password: nothing on the screen, not even stars). Ctrl-C and Ctrl-D on an
 * empty line abort with E_ABORTED.
 */
export function askLine(io: CliIo, prompt: string, echo: boolean): Promise<string> {
  const stdin = io.stdin as CliIo['stdin'] & { setRawMode?(raw: boolean): void };
  // Raw before the prompt shows: nothing typed after it is echoed by the terminal itself.
  stdin.setRawMode?.(true);
  io.stderr.write(prompt);
  return new Promise((resolve, reject) => {
    let value = '';
    const finish = (err?: FerryError): void => {
      stdin.off('data', onData);
      stdin.setRawMode?.(false);
      stdin.pause();
      io.stderr.write('\n');
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (chunk: Buffer): void => {
      for (const ch of chunk.toString('utf8')) {
        if (ch === '\r' || ch === '\n') return finish();
        if (ch === '\u0003' || (ch === '\u0004' && value === '')) return finish(new FerryError('E_ABORTED', 'cancelled at the prompt'));
        if (ch === '\u007f' || ch === '\b') {
          if (value !== '' && echo) io.stderr.write('\b \b');
          value = [...value].slice(0, -1).join('');
        } else if (ch === '\u0015') {
          if (echo) io.stderr.write('\b \b'.repeat([...value].length));
          value = '';
        } else if (ch >= ' ') {
          value += ch;
          if (echo) io.stderr.write(ch);
        }
      }
    };
    stdin.on('data', onData);
    stdin.resume();
  });
}
