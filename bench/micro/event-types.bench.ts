import { Bench } from 'tinybench';
import { compileSchema } from '../../src/event-types/compile.js';
import { schemaChecksPerValue } from '../../src/event-types/schema-check.js';
import { validateEvent } from '../../src/ingest/validate.js';
import { BENCH_PAYLOAD } from '../bare-server.js';
import { runAndReport } from './report.js';

/**
 * The schema check on the ingest path (issue #26): what an event of a type with a typical schema
 * (five properties, an enum, a format) costs the HTTP process on top of what every event costs
 * (parse + validateEvent), and what an org without event types costs (one Map look-up that
 * misses). The CPU-side figure behind bench:load's `typed` scenario, which a shared machine makes noisy.
 */
const TYPICAL_SCHEMA = {
  type: 'object',
  required: ['user_id', 'email', 'plan'],
  properties: {
    user_id: { type: 'integer', minimum: 1 },
    email: { type: 'string', format: 'email' },
    plan: { enum: ['free', 'pro', 'team'] },
    amount: { type: 'number', minimum: 0 },
    note: { type: 'string', maxLength: 500 },
  },
};

export async function eventTypesBench(time: number) {
  const plainBody = JSON.stringify({ type: 'bench.event', payload: BENCH_PAYLOAD });
  const typedBody = JSON.stringify({ type: 'bench.typed', payload: BENCH_PAYLOAD });
  const compiled = compileSchema(TYPICAL_SCHEMA, schemaChecksPerValue(TYPICAL_SCHEMA));
  const orgsWithTypes = new Map<string, Map<string, typeof compiled>>([
    ['typed-org', new Map([['bench.typed', compiled]])],
  ]);
  const bench = new Bench({ time });
  bench.add('parse + validateEvent (no event types)', () => {
    const body = JSON.parse(plainBody);
    validateEvent(body, '');
    if (orgsWithTypes.get('plain-org') !== undefined) throw new Error('unreachable');
  });
  bench.add('parse + validateEvent + typical schema check', () => {
    const body = JSON.parse(typedBody);
    const event = validateEvent(body, '');
    const schema = orgsWithTypes.get('typed-org')!.get(event.type)!;
    if (schema.check(body.payload) !== null) throw new Error('the payload should validate');
  });
  return runAndReport('event types: the schema check per event', bench, {
    name: 'event-types',
    baseline: 'parse + validateEvent (no event types)',
    candidates: ['parse + validateEvent + typical schema check'],
  });
}
