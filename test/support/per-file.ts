// Runs before every test file (vitest setupFiles). Workers are reused across files
// (isolate: false): what one file changes in the process or in shared test modules
// (its environment, working directory, state home) is undone after it here.
import { afterAll } from 'vitest';
import { removeTestStateHome } from './cli.js';

const env = { ...process.env };
const cwd = process.cwd();

afterAll(async () => {
  await removeTestStateHome();
  for (const k of Object.keys(process.env)) if (!(k in env)) delete process.env[k];
  Object.assign(process.env, env);
  process.chdir(cwd);
});
