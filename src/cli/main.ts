import yargs from 'yargs';
import { asFerryError, FerryError } from '../errors.js';
import { abortController } from './context.js';
import { makeOutput } from './output.js';
import { exportCommand } from './commands/export.js';
import { inspectCommand } from './commands/inspect.js';
import { verifyCommand } from './commands/verify.js';
import { importCommand } from './commands/import.js';
import { pushCommand } from './commands/push.js';
import { demoCommand } from './commands/demo.js';
import { inventoryCommand } from './commands/inventory.js';
import { diffCommand } from './commands/diff.js';
import { mergeCommand } from './commands/merge.js';
import { TOOL_VERSION } from '../version.js';

/**
 * The CLI's root: global flags, signals → one AbortController, and the ONE
 * catch that turns any error into a message and an exit status (see spec/errors.md).
 */
export async function main(args: string[]): Promise<void> {
  const controller = abortController();
  let interrupts = 0;
  const onSignal = (signal: NodeJS.Signals) => {
    interrupts++;
    // The first signal stops cleanly (temp files removed); a second one leaves at once.
    if (interrupts > 1) process.exit(130);
    process.stderr.write(`ferry: ${signal}: stopping, cleaning up (again to force)\n`);
    controller.abort(new FerryError('E_ABORTED', `interrupted by ${signal}`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);

  const parser = yargs(args)
    .scriptName('ferry')
    .usage('$0 <command> [options]\n\nCarry container images across an air gap: registries → one verified, deduplicated bundle → registry layout, skopeo dirs or a registry.')
    .option('json', { type: 'boolean', describe: 'print one machine-readable JSON document (errors too)', global: true })
    .option('quiet', { alias: 'q', type: 'boolean', describe: 'no progress or info lines', global: true })
    .option('debug', { type: 'boolean', describe: 'stack traces on errors', global: true })
    .option('jobs', { alias: 'j', type: 'number', default: 4, describe: 'blobs transferred at once', global: true })
    .option('insecure', { type: 'boolean', describe: 'skip TLS certificate verification for every registry', global: true })
    .option('insecure-registry', { type: 'string', array: true, describe: 'skip TLS verification for this registry host[:port] (repeatable)', global: true })
    .option('plain-http', { type: 'string', array: true, describe: 'use plain HTTP for this registry host[:port] (repeatable)', global: true })
    .option('ca-file', { type: 'string', describe: 'extra CA certificates (PEM) to trust for registries', global: true })
    .option('username', { type: 'string', describe: 'registry user name (else ~/.docker/config.json or FERRY_USERNAME)', global: true })
    .option('password-stdin', { type: 'boolean', describe: 'read the registry password from stdin', global: true })
    .command(exportCommand)
    .command(inspectCommand)
    .command(verifyCommand)
    .command(importCommand)
    .command(pushCommand)
    .command(demoCommand)
    .command(inventoryCommand)
    .command(diffCommand)
    .command(mergeCommand)
    .demandCommand(1, 'name a command: export, inspect, verify, import, push, inventory, diff, merge or demo')
    .strict()
    .version(TOOL_VERSION)
    .help()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      throw err ?? new FerryError('E_USAGE', msg, { hint: 'run ferry --help, or ferry <command> --help' });
    });

  try {
    await parser.parseAsync();
  } catch (e) {
    const flags = { json: args.includes('--json'), debug: args.includes('--debug') };
    const err = asFerryError(controller.signal.aborted ? controller.signal.reason ?? e : e);
    process.exitCode = makeOutput(flags).error(err);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
