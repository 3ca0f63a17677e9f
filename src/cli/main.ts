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
import { sendCommand } from './commands/send.js';
import { inventoryCommand } from './commands/inventory.js';
import { diffCommand } from './commands/diff.js';
import { mergeCommand } from './commands/merge.js';
import { planCommand } from './commands/plan.js';
import { TOOL_VERSION } from '../version.js';
import { envName, loadSettings } from '../app/config.js';
import { useSiteSettings } from './context.js';

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
    .option('connect-timeout', { type: 'number', describe: 'seconds to wait for a registry connection (default 30)', global: true })
    .option('idle-timeout', { type: 'number', describe: 'seconds a registry may send nothing mid-request before ferry gives up and retries (default 120; raise on slow links)', global: true })
    .option('min-rate', { type: 'string', describe: 'a registry transfer bringing less than this many bytes a second (K, M: KiB, MiB), averaged over the idle timeout, fails and is retried (default 1K; 0 turns it off)', global: true })
    .option('config', { type: 'string', describe: 'JSON config file: global flags and per-registry settings (default ~/.config/ferry/config.json when it exists)', global: true })
    .option('ssh', { type: 'string', describe: 'reach registries (push, import --to registry) or write a registry-layout through this SSH host: [user@]host[:port] or a ~/.ssh/config alias', global: true })
    .option('ssh-key', { type: 'string', array: true, describe: 'SSH identity file (repeatable; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent)', global: true })
    .option('ssh-jump', { type: 'string', describe: 'reach the --ssh host through these hops first (as ProxyJump: [user@]host[:port][,…])', global: true })
    .option('ssh-accept-new', { type: 'boolean', describe: 'trust and record in ~/.ssh/known_hosts a host key never seen before (a changed key is always refused)', global: true })
    .option('ssh-passphrase-stdin', { type: 'boolean', describe: 'read the SSH key passphrase from stdin (after the registry password when both are read)', global: true })
    .command(exportCommand)
    .command(planCommand)
    .command(inspectCommand)
    .command(verifyCommand)
    .command(importCommand)
    .command(pushCommand)
    .command(demoCommand)
    .command(sendCommand)
    .command(inventoryCommand)
    .command(diffCommand)
    .command(mergeCommand)
    .demandCommand(1, 'name a command: export, plan, inspect, verify, import, push, inventory, diff, merge or demo')
    .strict()
    .version(TOOL_VERSION)
    .help()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      throw err ?? new FerryError('E_USAGE', msg, { hint: 'run ferry --help, or ferry <command> --help' });
    });

  let fromSettings: Record<string, unknown> | undefined;
  try {
    // Environment (FERRY_*) over the config file, both under the command line: yargs gives config objects the lowest rank.
    const settings = loadSettings(args);
    useSiteSettings(settings);
    fromSettings = settings.flags;
    parser.config(settings.flags);
    await parser.parseAsync();
  } catch (e) {
    // Parsing may not have happened: the raw arguments, then the settings (or, when those failed, the raw environment).
    const flags = {
      json: args.includes('--json') || (!args.includes('--no-json') && (fromSettings ? fromSettings.json === true : envFlag(envName('json')))),
      debug: args.includes('--debug') || (fromSettings ? fromSettings.debug === true : envFlag(envName('debug'))),
    };
    const err = asFerryError(controller.signal.aborted ? controller.signal.reason ?? e : e);
    process.exitCode = makeOutput(flags).error(err);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** For the error path only, where parsing may not have happened: a set yes-value. */
function envFlag(name: string): boolean {
  return ['1', 'true', 'yes', 'on'].includes((process.env[name] ?? '').trim().toLowerCase());
}
