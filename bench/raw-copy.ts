import { CopyPool } from '../src/db/copy-pool.js';
import { wireTarget } from '../src/db/wire.js';
import { isoMs, uuidv7 } from '../src/ids.js';
import { COPY_EVENTS_BINARY } from '../src/ingest/batcher.js';
import { encodeBinaryRows } from '../src/ingest/copy-encode.js';
import { validateEvent } from '../src/ingest/validate.js';

/**
 * The database's own ceiling for the batch scenario: `writers` connections each COPYing
 * `batchRows` events at a time, straight into the events table, for `seconds`. Same payload and
 * same table (indexes included) as the server writes, through the server's own fastest COPY path
 * (one socket write per COPY, binary format) but with no HTTP, batching or waiting.
 */
export async function rawCopyRate(
  databaseUrl: string,
  orgId: string,
  payload: object,
  options: { writers: number; batchRows: number; seconds: number },
  /** Read at the start and once more before the connections close; `measured` is the difference. */
  gauge: () => number = () => 0,
): Promise<{ rate: number; rows: number; measured: number }> {
  const event = validateEvent({ type: 'bench.raw', payload }, '');
  const deadline = performance.now() + options.seconds * 1000;
  const pool = new CopyPool(wireTarget(databaseUrl, { application_name: 'bench-raw-copy' }), options.writers);
  let rows = 0;
  const writer = async () => {
    while (performance.now() < deadline) {
      const now = Date.now();
      const batch = Array.from({ length: options.batchRows }, () => ({
        orgId,
        id: uuidv7(now),
        receivedAt: isoMs(now),
        event,
      }));
      await pool.copy(COPY_EVENTS_BINARY, encodeBinaryRows(batch));
      rows += batch.length;
    }
  };
  const gaugeBefore = gauge();
  const started = performance.now();
  await Promise.all(Array.from({ length: options.writers }, writer));
  const elapsed = (performance.now() - started) / 1000;
  const measured = gauge() - gaugeBefore;
  pool.close();
  return { rate: rows / elapsed, rows, measured };
}
