// The one place errors are printed (src/cli/output.ts): E_INTERNAL, and only it, says it is a
// bug in ferry and asks for a report with --debug output, in human output and in --json alike.
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { makeOutput } from '../../../src/cli/output.js';
import { FerryError } from '../../../src/errors.js';
import { cliSchemaRef, describeErrors, schemaErrors } from '../../support/schemas.js';

function printed(json: boolean, error: unknown): { status: number; stdout: string; stderr: string } {
  const [stdout, stderr] = [new PassThrough(), new PassThrough()];
  const status = makeOutput({ json }, { stdout, stderr }).error(error);
  return { status, stdout: String(stdout.read() ?? ''), stderr: String(stderr.read() ?? '') };
}

const BUG = 'this is a bug in ferry, please report it with --debug output';

describe('error output', () => {
  it('E_INTERNAL says it is a bug and asks for a report with --debug output', () => {
    const human = printed(false, new FerryError('E_INTERNAL', 'a command ran without its invocation'));
    expect(human.status).toBe(1);
    expect(human.stderr).toBe(`ferry: error [E_INTERNAL]: a command ran without its invocation: ${BUG}\n`);
    const doc = JSON.parse(printed(true, new FerryError('E_INTERNAL', 'x')).stdout) as { error: { message: string } };
    expect(doc.error.message).toBe(`x: ${BUG}`);
    expect(describeErrors(schemaErrors(cliSchemaRef('errorDocument'), doc))).toBe('');
  });

  it('so does anything thrown that is no FerryError (a TypeError is ferry\'s bug too)', () => {
    expect(printed(false, new TypeError("Cannot read properties of undefined (reading 'digest')")).stderr).toContain(`(reading 'digest'): ${BUG}`);
  });

  it('no other code does', () => {
    const out = printed(false, new FerryError('E_NETWORK', 'registry.example: connection refused', { hint: 'check the port' }));
    expect(out.status).toBe(3);
    expect(out.stderr).toBe('ferry: error [E_NETWORK]: registry.example: connection refused\n  hint: check the port\n');
  });
});
