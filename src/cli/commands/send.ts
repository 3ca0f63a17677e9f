import type { CommandModule } from 'yargs';
import { FerryError } from '../../errors.js';
import { formatBytes } from '../output.js';
import { formatDuration } from '../progress.js';
import { contextFrom, type GlobalFlags } from '../context.js';

interface Flags extends GlobalFlags {
  paths: string[];
}

export const sendCommand: CommandModule<GlobalFlags, Flags> = {
  command: 'send <paths..>',
  describe: 'copy a bundle with its .ferry.json sidecar — or a split bundle\'s whole set, named by its .sha256 list or any volume — to a host over SFTP: resumes an interrupted upload, checks the remote sha256',
  builder: (y) => y
    .positional('paths', { type: 'string', array: true, demandOption: true, describe: 'FILE… DESTINATION, DESTINATION = user@host:/dir/ or ssh://user@host:port/dir' })
    .example('$0 send release.tar.zst ops@jump.corp.local:/srv/ferry/', 'run again after a dropped link: it goes on where it stopped')
    .example('$0 send release.sha256 ops@jump.corp.local:/srv/ferry/', 'a split bundle: every volume, release.ferry.json, and the list last') as never,
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { renderSendReport, sendBundle } = await import('../../app/send.js');
    const ctx = await contextFrom(argv);
    const paths = argv.paths.map(String);
    const destination = paths.pop();
    if (destination === undefined || paths.length === 0) {
      throw new FerryError('E_USAGE', 'ferry send needs the bundle and a destination', { hint: 'e.g. ferry send release.tar.zst ops@host:/srv/ferry/' });
    }
    let lastLine = 0;
    let started = { at: 0, from: 0 };
    // Lines for people (--progress none silences them; --quiet and --json do too, as info lines).
    const say = (line: string) => {
      if (ctx.out.progress !== 'none') ctx.out.info(line);
    };
    const report = await sendBundle({
      files: paths, destination, ssh: ctx.sshSettings, signal: ctx.signal,
      onEvent: (e) => {
        if (e.type === 'start') {
          started = { at: Date.now(), from: e.resumeFrom };
          if (e.resumeFrom > 0) say(`${e.file}: resuming at ${formatBytes(e.resumeFrom)} of ${formatBytes(e.size)}`);
        }
        if (e.type === 'progress' && Date.now() - lastLine > 2000) {
          lastLine = Date.now();
          // Only this run's bytes make the rate: a resumed upload's first part moved in an earlier run.
          const rate = (e.bytes - started.from) / Math.max((Date.now() - started.at) / 1000, 0.001);
          say(`${e.file}: ${Math.floor((e.bytes * 100) / Math.max(e.size, 1))}% ${formatBytes(e.bytes)} of ${formatBytes(e.size)}, ${formatBytes(Math.round(rate))}/s, ETA ${formatDuration(rate > 0 ? (e.size - e.bytes) / rate : undefined)}`);
        }
        if (e.type === 'verify') say(`${e.file}: checking the remote copy's sha256`);
      },
    });
    ctx.out.result(report, () => renderSendReport(report));
  },
};
