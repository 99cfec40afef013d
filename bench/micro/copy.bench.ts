import { Bench } from 'tinybench';
import { openDatabase } from '../../src/db/connect.js';
import { ensurePartitions, migrate } from '../../src/db/migrate.js';
import { isoMs, uuidv7 } from '../../src/ids.js';
import { CopyPool } from '../../src/db/copy-pool.js';
import { wireTarget } from '../../src/db/wire.js';
import { COPY_EVENTS_BINARY, EventBatcher, encodeCopyRows } from '../../src/ingest/batcher.js';
import { encodeBinaryRows } from '../../src/ingest/copy-encode.js';
import { validateEvent, type ValidEvent } from '../../src/ingest/validate.js';
import { TestPostgres } from '../../test/helpers/postgres.js';
import { runAndReport } from './report.js';

const ORG = '01a203cf-9446-7048-8cfe-8396fa4abc3e';

function sampleEvents(n: number): ValidEvent[] {
  return Array.from({ length: n }, (_, i) =>
    validateEvent(
      {
        type: 'bench.event',
        payload: {
          user_id: i,
          email: `u${i}@example.com`,
          note: 'line\\nwith "quotes" and \\\\ slashes',
          tags: ['a', 'b'],
        },
      },
      '',
    ),
  );
}

/** COPY row encoding against plain concatenation of the same fields without escaping. */
export async function copyEncodeBench(time: number) {
  const now = Date.now();
  const rows = sampleEvents(1000).map((event) => ({ orgId: ORG, id: uuidv7(now), receivedAt: isoMs(now), event }));
  const bench = new Bench({ time });
  bench.add('concat 1000 rows (no escaping)', () => {
    let text = '';
    for (const row of rows)
      text +=
        row.orgId +
        '\t' +
        row.id +
        '\t' +
        row.event.type +
        '\t' +
        row.event.payloadJson +
        '\t\\N\t\\N\t' +
        row.receivedAt +
        '\n';
    return text;
  });
  bench.add('encodeCopyRows 1000 rows', () => encodeCopyRows(rows));
  // The firehose flush's format (text is what dedup transactions still send).
  bench.add('encodeBinaryRows 1000 rows', () => encodeBinaryRows(rows));
  return runAndReport('COPY row encoding', bench, {
    name: 'copy',
    baseline: 'concat 1000 rows (no escaping)',
    candidates: ['encodeCopyRows 1000 rows', 'encodeBinaryRows 1000 rows'],
  });
}

/**
 * The batcher's cost per event against a raw COPY of the same rows, both into the same real
 * (embedded) Postgres: what group commit adds on top of the database's own work.
 */
export async function batcherBench(time: number) {
  const pg = await TestPostgres.start();
  const url = await pg.createDatabase('bench');
  const sql = openDatabase(url, { max: 4, name: 'bench' });
  const copyPool = new CopyPool(wireTarget(url, { application_name: 'bench' }), 2);
  try {
    await migrate(sql);
    await ensurePartitions(sql);
    await sql`insert into orgs (id, name, rate_limit_per_sec, burst) values (${ORG}, 'bench', 1, 1)`;
    const events = sampleEvents(1000);
    const batcher = new EventBatcher(sql, copyPool, {
      maxBatchRows: 5000,
      flushConcurrency: 2,
      maxQueuedEvents: 1_000_000,
      flushTimeoutMs: 10_000,
      dedupWindowHours: 24,
    });
    const bench = new Bench({ time, iterations: 20 });
    bench.add('raw COPY 1000 rows', async () => {
      const now = Date.now();
      await copyPool.copy(
        COPY_EVENTS_BINARY,
        encodeBinaryRows(events.map((event) => ({ orgId: ORG, id: uuidv7(now), receivedAt: isoMs(now), event }))),
      );
    });
    bench.add('batcher: 1000 single enqueues, all committed', async () => {
      const now = Date.now();
      await Promise.all(events.map((event) => batcher.enqueue(ORG, [event], now)));
    });
    return await runAndReport('batcher per-event cost (1000 events)', bench, {
      name: 'batcher',
      baseline: 'raw COPY 1000 rows',
      candidates: ['batcher: 1000 single enqueues, all committed'],
    });
  } finally {
    copyPool.close();
    await sql.end({ timeout: 1 });
    await pg.stop();
  }
}
