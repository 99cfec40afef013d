import readline from 'node:readline';
import { MAX_BATCH_EVENTS, createTriggersClient, sendBatch, type EventInput, type RetryOptions } from '../src/index.js';
import { clientEnv, intEnv, run } from './env.js';

/**
 * A producer: reads events from stdin, one JSON object per line
 * (`{"type": "order.paid", "payload": {…}, "dedup_id": "…"}`), and sends them with
 * `POST /v1/events/batch`, BATCH_SIZE (default and most 1000) per call. A 429 or 503 is waited out
 * as its `Retry-After` says and the batch sent again (nothing was stored). Give events a `dedup_id`
 * and re-running the producer over the same input after a crash stores nothing twice. A batch costs
 * one rate-limit token per event, so keep BATCH_SIZE at most the org's `burst`: a bigger one is
 * refused with 429 every time.
 *
 *   TRIGGERS_BASE_URL=http://localhost:8080 TRIGGERS_API_KEY=zt_… node producer.js < events.ndjson
 *
 * Prints `producer: 2500 events in 3 batches: 2500 accepted, 0 duplicates, 0 rejected; waited 1×429, 0×503`
 * and exits 1 if a line was not JSON or an event was rejected (each reported on stderr).
 */
run('producer', async () => {
  const client = createTriggersClient(clientEnv());
  const batchSize = intEnv('BATCH_SIZE', MAX_BATCH_EVENTS, 1, MAX_BATCH_EVENTS);
  const totals = {
    events: 0,
    batches: 0,
    accepted: 0,
    duplicates: 0,
    rejected: 0,
    unreadable: 0,
    waited429: 0,
    waited503: 0,
  };
  const retry: RetryOptions = {
    attempts: 20,
    onRetry(error) {
      if (error.status === 429) totals.waited429++;
      else totals.waited503++;
    },
  };

  let batch: EventInput[] = [];
  let batchLines: number[] = [];
  const flush = async () => {
    const answer = await sendBatch(client, batch, retry);
    totals.batches++;
    totals.accepted += answer.accepted;
    totals.duplicates += answer.duplicates;
    totals.rejected += answer.rejected;
    for (const result of answer.results) {
      if (result.status === 'rejected')
        process.stderr.write(`producer: line ${batchLines[result.index]} rejected: ${JSON.stringify(result.error)}\n`);
    }
    batch = [];
    batchLines = [];
  };

  let lineNumber = 0;
  for await (const line of readline.createInterface({ input: process.stdin, crlfDelay: Infinity })) {
    lineNumber++;
    if (line.trim() === '') continue;
    let event: EventInput;
    try {
      event = JSON.parse(line) as EventInput;
    } catch {
      totals.unreadable++;
      process.stderr.write(`producer: line ${lineNumber} is not JSON, skipped\n`);
      continue;
    }
    batch.push(event);
    batchLines.push(lineNumber);
    totals.events++;
    if (batch.length === batchSize) await flush();
  }
  if (batch.length > 0) await flush();

  process.stdout.write(
    `producer: ${totals.events} events in ${totals.batches} batches: ${totals.accepted} accepted, ${totals.duplicates} duplicates, ` +
      `${totals.rejected} rejected; waited ${totals.waited429}×429, ${totals.waited503}×503\n`,
  );
  return totals.rejected + totals.unreadable > 0 ? 1 : 0;
});
