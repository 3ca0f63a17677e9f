// The published JSON Schemas in spec/, loaded into one ajv (draft 2020-12, as the
// files declare) so tests check ferry's documents against what users are promised,
// not against the TypeScript types that produced them.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Ajv2020, type AnySchemaObject, type ErrorObject } from 'ajv/dist/2020.js';

export const SPEC_DIR = fileURLToPath(new URL('../../spec/', import.meta.url));
export const CLI_OUTPUT_ID = 'https://ferry.invalid/spec/cli-output.schema.json';
export const BUNDLE_METADATA_ID = 'https://ferry.invalid/spec/bundle-metadata.schema.json';
export const INVENTORY_ID = 'https://ferry.invalid/spec/inventory.schema.json';

/** The `$defs` of spec/cli-output.schema.json that a command prints. */
export type CliDocumentKind =
  | 'exportResult' | 'inspectResult' | 'verifyResult' | 'importReceipt' | 'pushReceipt' | 'planResult'
  | 'inventory' | 'inventoryResult' | 'diffResult' | 'mergeResult' | 'sendResult' | 'demoResult' | 'loginResult' | 'logoutResult' | 'serveStarted' | 'serveResult' | 'versionResult' | 'progressEvent' | 'errorDocument';

export function specSchemaFiles(): string[] {
  return readdirSync(SPEC_DIR).filter((n) => n.endsWith('.schema.json')).sort().map((n) => join(SPEC_DIR, n));
}

export function readSchema(file: string): AnySchemaObject {
  return JSON.parse(readFileSync(file, 'utf8')) as AnySchemaObject;
}

/**
 * Every spec schema added (they $ref each other by $id); strict, so a typo in a
 * keyword is an error rather than a silently ignored constraint.
 */
export function specAjv(): Ajv2020 {
  const ajv = new Ajv2020({ strict: true, allErrors: true });
  for (const file of specSchemaFiles()) ajv.addSchema(readSchema(file));
  return ajv;
}

let shared: Ajv2020 | undefined;

/** Validation errors of `doc` against a schema id or `id#/$defs/x`; empty when valid. */
export function schemaErrors(ref: string, doc: unknown): ErrorObject[] {
  shared ??= specAjv();
  const validate = shared.getSchema(ref);
  if (!validate) throw new Error(`no schema ${ref}`);
  return validate(doc) ? [] : [...(validate.errors ?? [])];
}

export function cliSchemaRef(kind: CliDocumentKind): string {
  return `${CLI_OUTPUT_ID}#/$defs/${kind}`;
}

export function describeErrors(errors: ErrorObject[]): string {
  return errors.map((e) => `${e.instancePath || '/'} ${e.message ?? ''} ${JSON.stringify(e.params)}`).join('\n');
}
