// README.zh-CN.md is the main workflow for the people who described the field
// problems, in Chinese; it stays in step with README.md: both name the same ferry
// commands and the same flags, and neither names a flag ferry does not have.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { acceptedFlags, describeCli } from '../../src/cli/definitions.js';

const read = (name: string) => readFileSync(new URL(`../../${name}`, import.meta.url), 'utf8');
const cli = describeCli();
const commands = new Set(cli.commands.map((c) => c.name));
const flags = acceptedFlags([...cli.globals, ...cli.commands.flatMap((c) => c.options)]);

/** `ferry NAME` for every command NAME the text mentions. */
function commandsIn(text: string): string[] {
  return [...new Set([...text.matchAll(/\bferry ([a-z]+)\b/g)].map((m) => m[1]!).filter((w) => commands.has(w)))].sort();
}

/** Every `--flag` the text mentions, outside `npm run … -- …` lines (those are the scripts' flags). */
function flagsIn(text: string): string[] {
  const lines = text.split('\n').filter((l) => !/npm run \S+ -- /.test(l));
  return [...new Set(lines.flatMap((l) => [...l.matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!)))].sort();
}

describe('README.zh-CN.md', () => {
  const en = read('README.md');
  const zh = read('README.zh-CN.md');

  it('names the same ferry commands as README.md', () => {
    expect(commandsIn(zh)).toEqual(commandsIn(en));
    expect(commandsIn(en).length).toBeGreaterThan(10);
  });

  it('names the same flags as README.md', () => {
    expect(flagsIn(zh)).toEqual(flagsIn(en));
  });

  it('names only flags ferry has', () => {
    for (const [name, text] of [['README.md', en], ['README.zh-CN.md', zh]] as const) {
      const unknown = flagsIn(text).filter((f) => !flags.has(f));
      expect(unknown, `${name} names flags that no command takes`).toEqual([]);
    }
  });

  it('links each other', () => {
    expect(zh).toContain('[English](README.md)');
    expect(en).toContain('[中文](README.zh-CN.md)');
  });
});
