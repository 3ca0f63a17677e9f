import type { CommandModule } from 'yargs';
import { bundlePath } from '../../app/locations.js';
import { FerryError } from '../../errors.js';
import { formatBytes } from '../output.js';
import { ProgressTracker } from '../progress.js';
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
    .example('$0 send release.sha256 ops@jump.corp.local:/srv/ferry/', 'a split bundle: every volume, release.ferry.json, and the list last'),
  handler: async (argv) => {
    // Loaded on use: --help and --version stay fast, and a command pays only for what it needs.
    const { renderSendReport, sendBundle } = await import('../../app/send.js');
    type SendReport = Awaited<ReturnType<typeof sendBundle>>;
    const ctx = await contextFrom(argv);
    const paths = argv.paths.map(String);
    const destination = paths.pop();
    if (destination === undefined || paths.length === 0) {
      throw new FerryError('E_USAGE', 'ferry send needs the bundle and a destination', { hint: 'e.g. ferry send release.tar.zst ops@host:/srv/ferry/' });
    }
    const progress = new ProgressTracker(ctx.out, 'send');
    /** Per file: the byte count its last event reported (a resumed upload starts where the earlier run left off). */
    const reported = new Map<string, number>();
    let report: SendReport;
    try {
      report = await sendBundle({
        // `bundle:FILE` as everywhere a bundle is read; another kind (`oci:DIR`) is a place, refused saying how to bundle it.
        files: paths.map((p) => bundlePath(p, 'send')), destination, ssh: ctx.sshSettings, signal: ctx.signal,
        onEvent: (e) => {
          switch (e.type) {
            case 'planned':
              progress.planned({ images: 0, items: e.files, bytes: e.bytes, what: `${e.files} files`, unit: 'files' });
              progress.setPhase('blobs');
              break;
            case 'start':
              reported.set(e.file, e.resumeFrom);
              // What an earlier run already put there is not this run's transfer: skipped, as a copy's present blobs are.
              if (e.resumeFrom > 0) {
                progress.skip(`${e.file} (resumed)`, e.resumeFrom);
                progress.say(`${e.file}: resuming at ${formatBytes(e.resumeFrom)} of ${formatBytes(e.size)}`);
              }
              break;
            case 'progress':
              progress.bytes(e.bytes - (reported.get(e.file) ?? 0), e.file);
              reported.set(e.file, e.bytes);
              break;
            case 'verify':
              progress.say(`${e.file}: checking the remote copy's sha256`);
              break;
            case 'done':
              // A file found complete and verified at the far side moved nothing this run.
              progress.itemDone(e.file, e.status === 'already-there' ? e.size : undefined);
              break;
          }
        },
      });
      progress.finish('done');
    } finally {
      progress.finish('stopped');
    }
    ctx.out.result(report, () => renderSendReport(report));
  },
};
