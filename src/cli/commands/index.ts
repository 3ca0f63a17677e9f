import type { CommandModule } from 'yargs';
import type { GlobalFlags } from '../context.js';
import { exportCommand } from './export.js';
import { planCommand } from './plan.js';
import { inspectCommand } from './inspect.js';
import { verifyCommand } from './verify.js';
import { importCommand } from './import.js';
import { pushCommand } from './push.js';
import { demoCommand } from './demo.js';
import { sendCommand } from './send.js';
import { inventoryCommand } from './inventory.js';
import { diffCommand } from './diff.js';
import { mergeCommand } from './merge.js';
import { loginCommand } from './login.js';
import { logoutCommand } from './logout.js';
import { serveCommand } from './serve.js';
import { versionCommand } from './version.js';
import { completionCommand } from './completion.js';

/** Every command, in the order --help lists them. */
export const COMMANDS: readonly CommandModule<GlobalFlags, never>[] = [
  exportCommand, planCommand, inspectCommand, verifyCommand, importCommand, pushCommand, demoCommand, sendCommand,
  inventoryCommand, diffCommand, mergeCommand, serveCommand, loginCommand, logoutCommand, versionCommand, completionCommand,
] as unknown as CommandModule<GlobalFlags, never>[];
