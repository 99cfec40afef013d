import { readFileSync } from 'node:fs';
import { compileProblems } from '../src/event-types/compile.js';
import type { FieldError } from '../src/errors.js';

/**
 * Piscina task: compile a schema being registered, off the HTTP process's event loop, and say how
 * long it took. ajv's code generation takes ~50 ms for 100 properties and ~600 ms for 1 000
 * here; schema-pool.ts refuses a schema over its limit, and stops the thread past a deadline.
 *
 * The time is this thread's CPU time where Linux tells it (/proc/thread-self/schedstat, in ns),
 * else the wall clock. On a busy machine the wall clock counts the time the thread waited for a
 * core: a 20 ms schema measured 260 ms at CI load and was refused. The CPU time is the schema's
 * own cost; a schema that is slow to compile is still refused, and the pool's wall-clock deadline
 * still stops a thread that runs too long.
 */

function threadCpuMs(): number | null {
  try {
    return Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ', 1)[0]) / 1e6;
  } catch {
    return null;
  }
}

// Warm: the first compile of a thread also loads ajv's code paths (~45 ms), which is not the schema's doing.
compileProblems({ type: 'object', properties: { a: { type: 'string', format: 'email', pattern: '^a' } } });

export default function checkSchema(schemaJson: string): { problems: FieldError[]; ms: number } {
  const startedCpu = threadCpuMs();
  const started = performance.now();
  const problems = compileProblems(JSON.parse(schemaJson) as object);
  const endedCpu = startedCpu === null ? null : threadCpuMs();
  const ms = startedCpu !== null && endedCpu !== null ? endedCpu - startedCpu : performance.now() - started;
  return { problems, ms };
}
