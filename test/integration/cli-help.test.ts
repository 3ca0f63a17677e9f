// Help that helps: -h everywhere, the command's own flags before the global ones,
// examples printed whole at 80 columns, `ferry version` (and --version) with
// --json, "did you mean" for commands and flags before any other complaint, and
// completion scripts driven through real bash and zsh on a pseudo-terminal.
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DESTINATION_KINDS } from '../../src/app/locations.js';
import { describeCli } from '../../src/cli/definitions.js';
import { BUNDLE_FORMAT_VERSION } from '../../src/transports/bundle/metadata.js';
import { TOOL_VERSION } from '../../src/version.js';
import { runFerry } from '../support/cli.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../support/schemas.js';
import { shellSession } from '../support/terminal.js';
import { makeTempDir, type TempDir } from '../support/tmp.js';

let tmp: TempDir;
beforeAll(() => {
  tmp = makeTempDir('ferry-help-');
});
afterAll(async () => tmp?.cleanup());

interface ErrorDoc { error: { code: string; exitStatus: number; message: string; hint?: string; details: Record<string, unknown> } }

const at80 = { env: { COLUMNS: '80' } };

/** The lines of one "Heading:" section of --help, up to the next blank line. */
function section(text: string, heading: string): string[] {
  const lines = text.split('\n');
  const start = lines.indexOf(heading);
  if (start < 0) return [];
  const end = lines.indexOf('', start);
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

describe('help', () => {
  it('ferry -h and --help print the commands and the global options, exit 0', async () => {
    for (const flag of ['-h', '--help']) {
      const r = await runFerry([flag], at80);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toBe('');
      for (const c of describeCli().commands) expect(r.stdout).toContain(`ferry ${c.name}`);
      expect(r.stdout).toMatch(/^Global options:$/m);
    }
  });

  it('ferry help [COMMAND] is help too (exit 0), not "ended without a result"', async () => {
    const r = await runFerry(['help'], at80);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^Global options:$/m);
    const c = await runFerry(['help', 'push'], at80);
    expect(c.code, c.stderr).toBe(0);
    expect(c.stdout.split('\n')[0]).toBe('ferry push <bundle> [volumes..]');
  });

  it('ferry COMMAND -h: help, not "missing argument", for every command', async () => {
    for (const c of describeCli().commands) {
      const r = await runFerry([c.name, '-h'], at80);
      expect(r.code, `${c.name}: ${r.stderr}`).toBe(0);
      expect(r.stdout.split('\n')[0], c.name).toBe(`ferry ${c.usage}`);
    }
  });

  it('lists the command\'s own flags first, then every global one under "Global options"', async () => {
    const r = await runFerry(['export', '--help'], at80);
    const own = section(r.stdout, 'Options:').join('\n');
    const globals = section(r.stdout, 'Global options:').join('\n');
    expect(r.stdout.indexOf('\nOptions:')).toBeLessThan(r.stdout.indexOf('\nGlobal options:'));
    for (const o of describeCli().commands.find((c) => c.name === 'export')!.options) {
      expect(own, `--${o.name} under Options`).toContain(`--${o.name}`);
      expect(globals, `--${o.name} not under Global options`).not.toContain(`--${o.name} `);
    }
    for (const o of describeCli().globals) expect(globals, `--${o.name} under Global options`).toContain(`--${o.name}`);
    expect(own).not.toContain('--jobs');
  });

  it('at 80 columns, every line fits except example commands, which are printed whole', async () => {
    for (const c of describeCli().commands) {
      const r = await runFerry([c.name, '--help'], at80);
      const examples = c.examples.map((e) => `  ${e.command.replace(/\$0/g, 'ferry')}`);
      for (const e of examples) expect(r.stdout.split('\n'), `${c.name}: example printed whole on one line`).toContain(e);
      const long = r.stdout.split('\n').filter((l) => l.length > 80 && !examples.includes(l));
      expect(long, c.name).toEqual([]);
    }
  });
});

describe('version', () => {
  it('ferry version and ferry --version: ferry, Node.js, bundle format, zstd, platform', async () => {
    for (const args of [['version'], ['--version'], ['export', '--version']]) {
      const r = await runFerry(args);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.split('\n')[0]).toBe(`ferry ${TOOL_VERSION}`);
      expect(r.stdout).toContain(`node ${process.versions.node}`);
      expect(r.stdout).toContain(`bundle format ${BUNDLE_FORMAT_VERSION}`);
      expect(r.stdout).toMatch(/^zstd \d+\.\d+\.\d+ \(zstd-napi \d+\.\d+\.\d+\)$/m);
      expect(r.stdout).toContain(`platform ${process.platform}/${process.arch}`);
    }
  });

  it('--json: one document that matches versionResult', async () => {
    for (const args of [['version', '--json'], ['--version', '--json']]) {
      const r = await runFerry(args);
      expect(r.code, r.stderr).toBe(0);
      const doc = JSON.parse(r.stdout) as { ferry: string; node: string; bundleFormat: number; zstd: { library: string } };
      expect(describeErrors(schemaErrors(cliSchemaRef('versionResult'), doc))).toBe('');
      expect(doc).toMatchObject({ ferry: TOOL_VERSION, node: process.versions.node, bundleFormat: BUNDLE_FORMAT_VERSION, platform: process.platform, arch: process.arch });
      expect(doc.zstd.library).toMatch(/^\d+\.\d+\.\d+$/);
    }
  });
});

describe('did you mean', () => {
  it('a mistyped command: E_USAGE naming the command it resembles', async () => {
    const r = await runFerry(['exprot', '-f', 'images.list', '--json']);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout) as ErrorDoc;
    expect(doc.error.code).toBe('E_USAGE');
    expect(doc.error.message).toBe('ferry exprot: unknown command (did you mean export?)');
  });

  it('a mistyped flag is named before a missing required one, with the flag it resembles', async () => {
    const r = await runFerry(['export', 'x.io/a:1', '--outptu', 'b.tar', '--json']);
    expect(r.code).toBe(2);
    const doc = JSON.parse(r.stdout) as ErrorDoc;
    expect(doc.error.code).toBe('E_USAGE');
    expect(doc.error.message).toBe('ferry export: unknown flag --outptu (did you mean --output?)');
    expect(doc.error.details).toMatchObject({ unknown: ['--outptu'], suggestions: ['--output'] });
  });

  it('suggests from the command\'s own and the global flags; several at once; nothing when nothing is close', async () => {
    const r = await runFerry(['--jobs', '2', 'import', 'b.tar', '--to', 'oci:x', '--imagee', 'a', '--jsno', '--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('ferry import: unknown flags --imagee (did you mean --image?), --jsno (did you mean --json?), --frobnicate\n');
    // A flag of another command is unknown here, named as such.
    const other = await runFerry(['verify', 'b.tar', '--to', 'oci:x']);
    expect(other.code).toBe(2);
    expect(other.stderr).toContain('ferry verify: unknown flag --to');
  });

  it('accepts what yargs accepts: --no-X of booleans, --flag=value, values that look like flags after a flag taking one', async () => {
    // These fail later, for their own reasons (no such bundle) — not as unknown flags.
    const r = await runFerry(['import', join(tmp.path, 'none.tar'), '--to=oci:x', '--no-json', '--rename', 'a=b', '-j', '2']);
    expect(r.stderr).not.toContain('unknown flag');
    const e = await runFerry(['export', 'x.io/a:1', '--no-referrers', '-o', join(tmp.path, 'x.tar'), '--plain-http', '127.0.0.1:1', '--connect-timeout', '1', '--cache', join(tmp.path, 'c')]);
    expect(e.stderr).not.toContain('unknown flag');
    expect(e.code).toBe(3);
  });
});

describe('completion', () => {
  it('prints a script per shell from the definitions; an unknown shell is a usage error', async () => {
    const bash = await runFerry(['completion', 'bash']);
    expect(bash.code).toBe(0);
    for (const c of describeCli().commands) expect(bash.stdout).toContain(c.name);
    expect(bash.stdout).toContain('complete -o default -F _ferry ferry');
    const zsh = await runFerry(['completion', 'zsh']);
    expect(zsh.stdout.startsWith('#compdef ferry\n')).toBe(true);
    const fish = await runFerry(['completion', 'fish', '--json']);
    expect(fish.code).toBe(2);
    expect((JSON.parse(fish.stdout) as ErrorDoc).error.message).toBe('shell "fish": use one of bash, zsh');
  });

  for (const shell of ['bash', 'zsh'] as const) {
    it(`${shell}: completes commands, flags, choices and --to KIND: on a real terminal`, async () => {
      const dir = join(tmp.path, shell);
      const script = (await runFerry(['completion', shell])).stdout;
      await import('node:fs/promises').then((fs) => fs.mkdir(dir, { recursive: true }));
      await writeFile(join(dir, shell === 'zsh' ? '_ferry' : 'ferry.bash'), script);
      await import('node:fs/promises').then((fs) => fs.mkdir(join(dir, 'layouts', 'site-a'), { recursive: true }));
      // `ferry` itself need not run: completion is the shell's, from the script alone.
      const setup = shell === 'zsh'
        ? `fpath=(${dir} $fpath); autoload -U compinit; compinit -u -D; ferry() { :; }; unsetopt beep; cd ${dir}`
        : `source ${dir}/ferry.bash; ferry() { :; }; bind 'set bell-style none'; cd ${dir}`;
      const sh = await shellSession(shell, setup, { HOME: dir });
      try {
        sh.type('ferry exp\t');
        await sh.waitFor('ferry export ');
        await sh.clear();
        sh.type('ferry export --compr\t');
        await sh.waitFor(/ferry export --compression[= ]/);
        await sh.clear();
        sh.type('ferry export --no-ref\t');
        await sh.waitFor('ferry export --no-referrers ');
        await sh.clear();
        sh.type('ferry push b.tar --on-existing-tag \t\t');
        await sh.waitFor(/fail\s+overwrite\s+skip/);
        await sh.clear();
        sh.type('ferry import b.tar --to registry-l\t');
        await sh.waitFor('--to registry-layout:');
        sh.type('layouts/si\t');
        await sh.waitFor('--to registry-layout:layouts/site-a/');
        await sh.clear();
        sh.type('ferry import b.tar --to \t\t');
        const screen = await sh.waitFor('docker-archive:');
        for (const k of DESTINATION_KINDS) expect(screen).toContain(`${k}:`);
        await sh.clear();
        sh.type('ferry completion \t\t');
        await sh.waitFor(/bash\s+zsh/);
      } finally {
        await sh.close();
      }
    });
  }
});
