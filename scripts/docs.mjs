#!/usr/bin/env node
// Writes docs/cli.md from the command definitions (`npm run docs`, after the build):
// test/unit/cli/docs.test.ts fails when the committed file is stale.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const { renderCliReference } = await import(join(root, 'dist', 'cli', 'reference.js'));
const file = join(root, 'docs', 'cli.md');
mkdirSync(dirname(file), { recursive: true });
writeFileSync(file, renderCliReference());
console.error(`ferry: wrote ${file}`);
