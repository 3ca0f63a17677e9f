// The schemas in spec/ are published for other tools to validate against: they must
// compile under a strict validator, and the error document must agree with the
// code → exit-status table the CLI really uses.
import { basename } from 'node:path';
import { describe, expect, it } from 'vitest';
import { EXIT_STATUS } from '../../src/errors.js';
import { CLI_OUTPUT_ID, cliSchemaRef, type CliDocumentKind, readSchema, schemaErrors, specAjv, specSchemaFiles } from '../support/schemas.js';

const DIGEST = `sha256:${'a'.repeat(64)}`;

describe('spec/*.schema.json', () => {
  it('every schema is draft 2020-12, named by its file, and compiles in strict mode', () => {
    const files = specSchemaFiles();
    expect(files.map((f) => basename(f))).toEqual(expect.arrayContaining(['bundle-metadata.schema.json', 'inventory.schema.json', 'cli-output.schema.json']));
    const ajv = specAjv();
    for (const file of files) {
      const schema = readSchema(file);
      expect(schema.$schema, file).toBe('https://json-schema.org/draft/2020-12/schema');
      expect(schema.$id, file).toBe(`https://ferry.invalid/spec/${basename(file)}`);
      expect(() => ajv.getSchema(schema.$id as string), file).not.toThrow();
      expect(ajv.getSchema(schema.$id as string), file).toBeTypeOf('function');
    }
  });

  it('every $def of the CLI output schema compiles on its own', () => {
    const ajv = specAjv();
    const defs = Object.keys((readSchema(specSchemaFiles().find((f) => f.endsWith('cli-output.schema.json'))!).$defs ?? {}) as object);
    expect(defs.length).toBeGreaterThan(12);
    for (const d of defs) expect(ajv.getSchema(`${CLI_OUTPUT_ID}#/$defs/${d}`), d).toBeTypeOf('function');
  });
});

describe('errorDocument', () => {
  const doc = (code: string, exitStatus: number, extra: Record<string, unknown> = {}) => ({ error: { code, exitStatus, message: 'm', details: {}, ...extra } });

  it('knows exactly the codes of src/errors.ts, each with its exit status', () => {
    const schema = readSchema(specSchemaFiles().find((f) => f.endsWith('cli-output.schema.json'))!) as { $defs: Record<string, { enum?: unknown[] }> };
    expect([...schema.$defs['errorCode']!.enum!].sort()).toEqual(Object.keys(EXIT_STATUS).sort());
    for (const [code, status] of Object.entries(EXIT_STATUS)) {
      expect(schemaErrors(cliSchemaRef('errorDocument'), doc(code, status)), code).toEqual([]);
      // A wrong status for the code must not pass: scripts branch on it.
      const wrong = status === 2 ? 6 : 2;
      expect(schemaErrors(cliSchemaRef('errorDocument'), doc(code, wrong)).length, `${code} with ${wrong}`).toBeGreaterThan(0);
    }
  });

  it('rejects an unknown code, a missing details, a stray field; takes verify\'s repair details', () => {
    const ref = cliSchemaRef('errorDocument');
    expect(schemaErrors(ref, doc('E_NOPE', 2)).length).toBeGreaterThan(0);
    const { details: _d, ...noDetails } = doc('E_USAGE', 2).error;
    expect(schemaErrors(ref, { error: noDetails }).length).toBeGreaterThan(0);
    expect(schemaErrors(ref, doc('E_USAGE', 2, { stack: 'x' })).length).toBeGreaterThan(0);
    expect(schemaErrors(ref, doc('E_DIGEST_MISMATCH', 6, { details: { repairReport: '/x/rel.repair.json', repairBlobs: 2, digest: DIGEST } }))).toEqual([]);
    expect(schemaErrors(ref, doc('E_DIGEST_MISMATCH', 6, { details: { repairBlobs: '2' } })).length).toBeGreaterThan(0);
  });
});

describe('command results: a renamed or mistyped field is caught', () => {
  const merge = { output: 'm.tar', bundleId: DIGEST, images: 1, blobs: 2, storedBytes: 3, fromBases: 0, warnings: [], seconds: 0.5 };
  const cases: [CliDocumentKind, Record<string, unknown>][] = [
    ['mergeResult', merge],
    ['inventoryResult', { output: 'i.json', id: DIGEST, images: 1, blobs: 2, bytes: 3 }],
    ['exportResult', { output: 'b.tar', bundleId: DIGEST, images: 1, blobs: 2, storedBytes: 3, referencedBytes: 3, fetchedBytes: 0, resumedBytes: 0, seconds: 1 }],
  ];
  for (const [kind, good] of cases) {
    it(kind, () => {
      expect(schemaErrors(cliSchemaRef(kind), good)).toEqual([]);
      const [first, value] = Object.entries(good)[1]!;
      const { [first]: _, ...renamed } = good;
      expect(schemaErrors(cliSchemaRef(kind), { ...renamed, [`${first}X`]: value }).length, 'renamed').toBeGreaterThan(0);
      expect(schemaErrors(cliSchemaRef(kind), { ...good, [first]: typeof value === 'number' ? String(value) : 42 }).length, 'mistyped').toBeGreaterThan(0);
    });
  }

  it('exportResult takes the other workers\' optional repair and cache objects, and checks repair', () => {
    const base = cases[2]![1];
    expect(schemaErrors(cliSchemaRef('exportResult'), { ...base, repair: { bundleId: DIGEST, blobs: 2 }, cache: { evictedBlobs: 1, evictedBytes: 9 } })).toEqual([]);
    expect(schemaErrors(cliSchemaRef('exportResult'), { ...base, repair: { bundleId: 'sha256:xyz', blobs: 2 } }).length).toBeGreaterThan(0);
    expect(schemaErrors(cliSchemaRef('exportResult'), { ...base, repair: { bundleId: DIGEST } }).length).toBeGreaterThan(0);
  });
});
