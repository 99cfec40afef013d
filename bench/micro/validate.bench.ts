import { Bench } from 'tinybench';
import { validateEvent } from '../../src/ingest/validate.js';
import { runAndReport } from './report.js';

/** Event validation (parse + checks + the one serialisation COPY needs) against JSON.parse alone. */
function bodyOf(bytes: number): string {
  const items: Array<Record<string, unknown>> = [];
  let size = 0;
  for (let i = 0; size < bytes; i++) {
    const item = {
      id: i,
      name: `user-${i}`,
      email: `user${i}@example.com`,
      active: i % 2 === 0,
      score: i * 1.5,
      tags: ['a', 'b'],
    };
    size += JSON.stringify(item).length + 1;
    items.push(item);
  }
  return JSON.stringify({
    type: 'user.updated',
    payload: { items },
    dedup_id: 'abc-123',
    occurred_at: '2026-01-01T00:00:00Z',
  });
}

export async function validateBench(time: number) {
  const rows: Array<Record<string, unknown>> = [];
  for (const kb of [1, 10, 100]) {
    const body = bodyOf(kb * 1024);
    const bench = new Bench({ time });
    bench.add(`JSON.parse ${kb} KB`, () => {
      JSON.parse(body);
    });
    bench.add(`parse + validateEvent ${kb} KB`, () => {
      validateEvent(JSON.parse(body), '');
    });
    rows.push(
      ...(await runAndReport(`event validation, ${kb} KB payload`, bench, {
        name: 'validate',
        baseline: `JSON.parse ${kb} KB`,
        candidates: [`parse + validateEvent ${kb} KB`],
      })),
    );
  }
  return rows;
}
