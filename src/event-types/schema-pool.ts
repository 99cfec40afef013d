import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { ApiError, type FieldError } from '../errors.js';

const WORKER_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../workers/check-schema.js');

/**
 * A schema whose compile takes longer than this is refused (422). The HTTP processes compile
 * accepted schemas again on their event loop when the type's first event arrives
 * (registry.ts), so this bounds that stall too.
 */
export const SCHEMA_COMPILE_LIMIT_MS = 250;
// Past this the thread is stopped, whatever it was doing (its start, ajv's load, a runaway compile).
const THREAD_DEADLINE_MS = 5_000;
// Registrations waiting for the thread before new ones are refused; PUT is not a hot path.
const QUEUE_LIMIT = 16;

const tooSlow: FieldError = {
  field: 'schema',
  message: `takes longer than ${SCHEMA_COMPILE_LIMIT_MS} ms to compile: make it smaller`,
};

/**
 * Compiles schemas being registered on one thread of their own with a deadline, so a schema
 * made to be slow to compile costs its org a 422 and never stalls the process's other requests.
 */
export class SchemaCheckPool {
  private readonly pool = new Piscina({ filename: WORKER_FILE, minThreads: 0, maxThreads: 1, idleTimeout: 30_000 });

  async problems(schemaJson: string): Promise<FieldError[]> {
    if (this.pool.queueSize >= QUEUE_LIMIT) {
      throw new ApiError(
        'rate_limited',
        'Too many event types are being registered at once; retry shortly.',
        undefined,
        { 'Retry-After': '1' },
      );
    }
    try {
      const { problems, ms } = await (this.pool.run(schemaJson, {
        signal: AbortSignal.timeout(THREAD_DEADLINE_MS),
      }) as Promise<{ problems: FieldError[]; ms: number }>);
      return ms > SCHEMA_COMPILE_LIMIT_MS ? [tooSlow] : problems;
    } catch (error) {
      if ((error as Error).name === 'AbortError' || (error as Error).name === 'TimeoutError') return [tooSlow];
      throw error;
    }
  }

  close(): Promise<void> {
    return this.pool.destroy();
  }
}
