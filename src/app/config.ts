import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { FerryError } from '../errors.js';
import { INPUT, readInputFileSync } from '../input-limits.js';
import { isValidRegistry } from '../oci/reference.js';
import type { RegistrySettings } from './registry-access.js';

/**
 * Settings that outlive one command line: a JSON config file for sites with
 * many registries, and `FERRY_*` environment variables for every global flag.
 * Precedence, highest first: command line, environment, config file, built-in
 * defaults. JSON on purpose: no parser to add, and `jq` can write it.
 *
 * ```json
 * {
 *   "jobs": 8,
 *   "ca-file": "/etc/pki/corp-root.pem",
 *   "registries": {
 *     "harbor.corp.local": { "caFile": "harbor-ca.pem" },
 *     "10.0.0.5:5000": { "plainHttp": true },
 *     "legacy.corp.local": { "insecure": true },
 *     "docker.io": { "mirror": "mirror.corp.local:5000" }
 *   }
 * }
 * ```
 * Top-level keys are the long names of the global flags; relative paths are
 * relative to the file. Credentials do not belong here: they come from
 * FERRY_USERNAME/FERRY_PASSWORD, FERRY_REGISTRY_<HOST>_USERNAME/_PASSWORD or
 * docker's config.json (see net/credentials.ts).
 */

export type FlagType = 'boolean' | 'number' | 'string' | 'array' | 'path' | 'paths';

/**
 * The global flags that the environment and the config file may set, and how
 * their text is read. Left out on purpose: --username and --password-stdin
 * (FERRY_USERNAME/FERRY_PASSWORD already mean the credentials themselves),
 * --ssh-passphrase-stdin (a stdin protocol, not a setting), --config itself.
 */
export const SETTABLE_FLAGS: Readonly<Record<string, FlagType>> = {
  json: 'boolean',
  quiet: 'boolean',
  progress: 'string',
  debug: 'boolean',
  jobs: 'number',
  insecure: 'boolean',
  'insecure-registry': 'array',
  'plain-http': 'array',
  'ca-file': 'path',
  ssh: 'string',
  'ssh-key': 'paths',
  'ssh-jump': 'string',
  'ssh-accept-new': 'boolean',
  'connect-timeout': 'number',
  'idle-timeout': 'number',
  'min-rate': 'string',
};

/** Settable flags that take one of a few words (cli/globals.ts holds the same lists for the parser; a test keeps them equal). */
export const FLAG_CHOICES: Readonly<Record<string, readonly string[]>> = {
  progress: ['auto', 'plain', 'json', 'none'],
};

export const NOT_SETTABLE = ['username', 'password-stdin', 'ssh-passphrase-stdin', 'config', 'help', 'version'];

const REGISTRY_KEYS: Readonly<Record<keyof RegistrySettings, 'boolean' | 'path' | 'registry'>> = {
  insecure: 'boolean', caFile: 'path', plainHttp: 'boolean', mirror: 'registry',
};

export interface Settings {
  /** Flag values (yargs names) from the file and the environment, environment winning. */
  flags: Record<string, unknown>;
  registries: Record<string, RegistrySettings>;
  /** The config file read, if any. */
  file?: string;
}

/** `FERRY_CA_FILE` for `ca-file`. */
export function envName(flag: string): string {
  return `FERRY_${flag.toUpperCase().replace(/-/g, '_')}`;
}

/** $XDG_CONFIG_HOME/ferry/config.json, else ~/.config/ferry/config.json. */
export function defaultConfigFile(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CONFIG_HOME || join(env.HOME || homedir(), '.config'), 'ferry', 'config.json');
}

/**
 * The config file named by `--config` (or FERRY_CONFIG), which must exist, else
 * the default one when it exists; then the environment over it.
 */
export function loadSettings(args: readonly string[], env: NodeJS.ProcessEnv = process.env): Settings {
  const named = configArgument(args) ?? (env.FERRY_CONFIG || undefined);
  const file = named ?? defaultConfigFile(env);
  const text = readConfig(file, named !== undefined);
  const settings: Settings = text === undefined ? { flags: {}, registries: {} } : { ...parseConfig(text, resolve(file)), file: resolve(file) };
  for (const [flag, type] of Object.entries(SETTABLE_FLAGS)) {
    const name = envName(flag);
    const raw = env[name];
    if (raw === undefined || raw === '') continue;
    settings.flags[flag] = fromText(raw, type, name);
    const choices = FLAG_CHOICES[flag];
    if (choices && !choices.includes(raw.trim())) {
      throw new FerryError('E_CONFIG', `${name}=${JSON.stringify(raw.slice(0, 40))} is not one of ${choices.join(', ')}`, { hint: `e.g. ${name}=${choices[0]}, or unset it` });
    }
    if (choices) settings.flags[flag] = raw.trim();
  }
  return settings;
}

function configArgument(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--') break;
    if (a === '--config') {
      const v = args[i + 1];
      if (v === undefined || v.startsWith('-')) throw new FerryError('E_USAGE', '--config needs a file name', { hint: 'e.g. --config /etc/ferry/config.json' });
      return v;
    }
    if (a.startsWith('--config=')) return a.slice('--config='.length);
  }
  return undefined;
}

function readConfig(file: string, required: boolean): string | undefined {
  try {
    return readInputFileSync(file, INPUT.configFile).toString('utf8');
  } catch (e) {
    if (e instanceof FerryError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (!required && (code === 'ENOENT' || code === 'ENOTDIR')) return undefined;
    throw new FerryError('E_CONFIG', `cannot read config file ${file}: ${(e as Error).message}`, {
      hint: required ? 'check the path given to --config / FERRY_CONFIG' : `fix its permissions, or move it away from ${file}`,
      cause: e, details: { file },
    });
  }
}

/** Validates the whole document: an unknown key is a typo that would silently do nothing, so it is refused. */
export function parseConfig(text: string, file: string): Omit<Settings, 'file'> {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new FerryError('E_CONFIG', `config file ${file} is not valid JSON: ${(e as Error).message}`, { hint: 'fix the syntax (check with: jq . FILE)', cause: e, details: { file } });
  }
  if (!isObject(doc)) throw configError(file, 'the document', 'must be a JSON object');
  const base = dirname(file);
  const flags: Record<string, unknown> = {};
  const registries: Record<string, RegistrySettings> = {};
  for (const [key, value] of Object.entries(doc)) {
    if (key === 'registries') {
      if (!isObject(value)) throw configError(file, 'registries', 'must be an object keyed by host[:port]');
      for (const [host, entry] of Object.entries(value)) {
        const where = `registries.${host}`;
        if (!isValidRegistry(host)) throw configError(file, where, 'is not a registry host[:port]');
        if (!isObject(entry)) throw configError(file, where, 'must be an object');
        const settings: RegistrySettings = {};
        for (const [k, v] of Object.entries(entry)) {
          const type = Object.hasOwn(REGISTRY_KEYS, k) ? REGISTRY_KEYS[k as keyof RegistrySettings] : undefined;
          if (type === undefined) throw configError(file, `${where}.${k}`, `is not a registry setting (use ${Object.keys(REGISTRY_KEYS).join(', ')})`);
          if (type === 'boolean') {
            if (typeof v !== 'boolean') throw configError(file, `${where}.${k}`, 'must be true or false');
            (settings as Record<string, unknown>)[k] = v;
          } else if (typeof v !== 'string' || v === '') {
            throw configError(file, `${where}.${k}`, 'must be a non-empty string');
          } else if (type === 'registry') {
            if (!isValidRegistry(v)) throw configError(file, `${where}.${k}`, 'must be a registry host[:port]');
            if (v.toLowerCase() === host.toLowerCase()) throw configError(file, `${where}.${k}`, 'names the registry itself');
            settings.mirror = v.toLowerCase();
          } else {
            settings.caFile = isAbsolute(v) ? v : resolve(base, v);
          }
        }
        registries[host.toLowerCase()] = settings;
      }
      continue;
    }
    const type = Object.hasOwn(SETTABLE_FLAGS, key) ? SETTABLE_FLAGS[key] : undefined;
    if (type === undefined) {
      throw configError(file, key, NOT_SETTABLE.includes(key) ? 'cannot be set in the config file' : `is not a setting (use registries or a global flag: ${Object.keys(SETTABLE_FLAGS).join(', ')})`);
    }
    flags[key] = fromJson(value, type, file, key, base);
    const choices = FLAG_CHOICES[key];
    if (choices && !choices.includes(value as string)) throw configError(file, key, `must be one of ${choices.join(', ')}`);
  }
  return { flags, registries };
}

function fromJson(value: unknown, type: FlagType, file: string, key: string, base: string): unknown {
  switch (type) {
    case 'boolean':
      if (typeof value !== 'boolean') throw configError(file, key, 'must be true or false');
      return value;
    case 'number':
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1) throw configError(file, key, 'must be a positive whole number');
      return value;
    case 'string':
    case 'path':
      if (typeof value !== 'string' || value === '') throw configError(file, key, 'must be a non-empty string');
      return type === 'path' && !isAbsolute(value) ? resolve(base, value) : value;
    case 'array':
    case 'paths': {
      const list = typeof value === 'string' ? [value] : value;
      if (!Array.isArray(list) || list.some((v) => typeof v !== 'string' || v === '')) throw configError(file, key, 'must be a string or a list of strings');
      return type === 'paths' ? (list as string[]).map((v) => (isAbsolute(v) ? v : resolve(base, v))) : list;
    }
  }
}

function fromText(raw: string, type: FlagType, name: string): unknown {
  switch (type) {
    case 'boolean': {
      const v = raw.trim().toLowerCase();
      if (['1', 'true', 'yes', 'on'].includes(v)) return true;
      if (['0', 'false', 'no', 'off'].includes(v)) return false;
      throw new FerryError('E_CONFIG', `${name}=${JSON.stringify(raw.slice(0, 40))} is not a yes/no value`, { hint: `set ${name} to 1 or 0 (true/false), or unset it` });
    }
    case 'number': {
      const n = Number(raw.trim());
      if (!/^\d+$/.test(raw.trim()) || n < 1) throw new FerryError('E_CONFIG', `${name}=${JSON.stringify(raw.slice(0, 40))} is not a positive whole number`, { hint: `e.g. ${name}=8` });
      return n;
    }
    case 'string':
    case 'path':
      return raw;
    case 'array':
    case 'paths':
      // Several values: separated by commas or white space, e.g. FERRY_PLAIN_HTTP="10.0.0.5:5000,10.0.0.6:5000".
      return raw.split(/[\s,]+/).filter((v) => v !== '');
  }
}

function configError(file: string, key: string, problem: string): FerryError {
  return new FerryError('E_CONFIG', `config file ${file}: ${key} ${problem}`, { hint: 'see "Config file" in the README for the format', details: { file, key } });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
