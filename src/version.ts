import { readFileSync } from 'node:fs';

/** From package.json, so the version lives in one place. */
export const TOOL_VERSION: string = (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
