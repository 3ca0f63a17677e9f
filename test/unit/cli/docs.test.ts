// docs/cli.md is generated from the command definitions (`npm run docs`): this
// fails when a flag, command or example changed and the file was not regenerated.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { describeCli } from '../../../src/cli/definitions.js';
import { renderCliReference } from '../../../src/cli/reference.js';

const FILE = new URL('../../../docs/cli.md', import.meta.url);

describe('docs/cli.md', () => {
  it('is what `npm run docs` writes from the definitions today', () => {
    const committed = readFileSync(FILE, 'utf8');
    expect(committed === renderCliReference(), 'docs/cli.md is stale: run `npm run docs` and commit it').toBe(true);
  });

  it('names every command, every flag and every example', () => {
    const text = renderCliReference();
    const cli = describeCli();
    for (const o of cli.globals) expect(text).toContain(`\`--${o.name}\``);
    for (const c of cli.commands) {
      expect(text).toContain(`## ${c.name}\n`);
      for (const o of c.options) expect(text, `${c.name} --${o.name}`).toContain(`\`--${o.name}\``);
      for (const e of c.examples) expect(text).toContain(e.command.replace(/\$0/g, 'ferry'));
    }
  });

  it('would notice a change: a definition that differs renders differently', () => {
    const cli = describeCli();
    const changed = { ...cli, globals: cli.globals.map((o) => (o.name === 'jobs' ? { ...o, describe: `${o.describe}!` } : o)) };
    expect(renderCliReference(changed)).not.toBe(renderCliReference(cli));
  });
});
