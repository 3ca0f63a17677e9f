import type { Options } from 'yargs';
import { kept, seconds, wholeNumber } from './flags.js';
import { parseMinRate } from '../net/throughput.js';

/** How progress is shown: `auto` draws a bar on a terminal and plain lines elsewhere. */
export const PROGRESS_MODES = ['auto', 'plain', 'json', 'none'] as const;
export type ProgressMode = (typeof PROGRESS_MODES)[number];

/**
 * The flags every command takes, in the order --help lists them under
 * "Global options". One table: main() registers them, and the completion
 * scripts and docs/cli.md are generated from it (cli/definitions.ts).
 */
export const GLOBAL_OPTIONS: readonly (readonly [name: string, options: Options])[] = [
  ['json', { type: 'boolean', describe: 'print one machine-readable JSON document (errors too)' }],
  ['quiet', { alias: 'q', type: 'boolean', describe: 'no progress or info lines' }],
  ['progress', { choices: PROGRESS_MODES, describe: 'progress on stderr: auto (a bar on a terminal, plain lines elsewhere), plain, json (JSON lines, also with --json) or none' }],
  ['debug', { type: 'boolean', describe: 'stack traces on errors' }],
  // Numbers are read as text and judged by coerce: yargs would turn `--jobs abc` into NaN and run with no work.
  ['jobs', { alias: 'j', type: 'string', default: 8, coerce: wholeNumber('jobs', 1, 256, 16), describe: 'blobs in flight at once (1-256; default 8; their checks, mounts and tags go side by side too; raise on high-latency links)' }],
  ['insecure', { type: 'boolean', describe: 'skip TLS certificate verification for every registry' }],
  ['insecure-registry', { type: 'string', array: true, describe: 'skip TLS verification for this registry host[:port] (repeatable)' }],
  ['plain-http', { type: 'string', array: true, describe: 'use plain HTTP for this registry host[:port] (repeatable)' }],
  ['ca-file', { type: 'string', describe: 'extra CA certificates (PEM) to trust for registries' }],
  ['username', { type: 'string', describe: 'registry user name (else ~/.docker/config.json or FERRY_USERNAME)' }],
  ['password-stdin', { type: 'boolean', describe: 'read the registry password from stdin (asked for without echo on a terminal)' }],
  ['connect-timeout', { type: 'string', coerce: seconds('connect-timeout', 86_400, 30), describe: 'seconds to wait for a registry connection (default 30)' }],
  ['idle-timeout', { type: 'string', coerce: seconds('idle-timeout', 86_400, 300), describe: 'seconds a registry may send nothing mid-request before ferry gives up and retries (default 120; raise on slow links)' }],
  ['min-rate', { type: 'string', coerce: kept((v: unknown) => (v === undefined ? undefined : parseMinRate(typeof v === 'string' ? v : JSON.stringify(v)))), describe: 'a registry transfer bringing less than this many bytes a second (K, M binary; KB, MB decimal), averaged over the idle timeout, fails and is retried (default 1K; 0 turns it off)' }],
  ['config', { type: 'string', describe: 'JSON config file: global flags and per-registry settings (default ~/.config/ferry/config.json when it exists)' }],
  ['ssh', { type: 'string', describe: 'reach registries (push, import --to registry) or write a registry-layout through this SSH host: [user@]host[:port] or a ~/.ssh/config alias' }],
  ['ssh-key', { type: 'string', array: true, describe: 'SSH identity file (repeatable; default ~/.ssh/id_ed25519, id_ecdsa, id_rsa and the agent)' }],
  ['ssh-jump', { type: 'string', describe: 'reach the --ssh host through these hops first (as ProxyJump: [user@]host[:port][,…])' }],
  ['ssh-accept-new', { type: 'boolean', describe: 'trust and record in ~/.ssh/known_hosts a host key never seen before (a changed key is always refused)' }],
  ['ssh-passphrase-stdin', { type: 'boolean', describe: 'read the SSH key passphrase from stdin (after the registry password when both are read)' }],
  ['version', { type: 'boolean', describe: 'print the versions of ferry, Node.js, the bundle format and zstd (as `ferry version`)' }],
  ['help', { alias: 'h', type: 'boolean', describe: 'show help (ferry COMMAND --help for one command)' }],
];
