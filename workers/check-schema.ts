import { compileProblems } from '../src/event-types/compile.js';
import type { FieldError } from '../src/errors.js';

/**
 * Piscina task: compile a schema being registered, off the HTTP process's event loop, and say how
 * long it took. ajv's code generation takes ~50 ms for 100 properties and ~600 ms for 1 000
 * here; schema-pool.ts refuses a schema over its limit, and stops the thread past a deadline.
 */

// Warm: the first compile of a thread also loads ajv's code paths (~45 ms), which is not the schema's doing.
compileProblems({ type: 'object', properties: { a: { type: 'string', format: 'email', pattern: '^a' } } });

export default function checkSchema(schemaJson: string): { problems: FieldError[]; ms: number } {
  const started = performance.now();
  const problems = compileProblems(JSON.parse(schemaJson) as object);
  return { problems, ms: performance.now() - started };
}
