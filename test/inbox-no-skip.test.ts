import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey, produceMixed } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/**
 * The inbox's central promise (API.md §4): a consumer that follows next_cursor and keeps polling
 * sees every event that got a 202, even while other connections ingest concurrently and commit
 * out of order. Eight producers hammer the real server over HTTP (singles and batches, across
 * two HTTP workers whose group commits overlap) while two consumers follow cursors the whole time:
 * - org A's consumer never acks: it proves the cursor alone never passes an event that commits
 *   later (every event stays in the inbox, so a skip is a permanent miss);
 * - org B's consumer acks every page as it goes: it proves acks (rows leaving the partial index)
 *   never make the cursor skip or repeat, and the inbox ends empty.
 * Both must see exactly the set of accepted ids, each once.
 */
const PRODUCERS = 8;
const REQUESTS_PER_PRODUCER = Number(process.env.NO_SKIP_REQUESTS || 120);
const BATCH_EVERY = 4;
const BATCH_SIZE = 25;
const PAGE = 37;

let pg: TestPostgres;
let server: TestServer;

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({ databaseUrl: await pg.createDatabase(), workers: 2 });
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

interface Org {
  key: string;
  accepted: Set<string>;
}

function produce(base: string, orgs: Org[], producer: number): Promise<void> {
  return produceMixed(() => base, orgs, producer, {
    requests: REQUESTS_PER_PRODUCER,
    batchEvery: BATCH_EVERY,
    batchSize: BATCH_SIZE,
  });
}

interface Consumer {
  seen: string[];
  pages: number;
}

/** Follows cursors until `done()` and the consumer has seen every accepted id (or time runs out). */
async function consume(
  base: string,
  org: Org,
  ack: boolean,
  producing: () => boolean,
  consumer: Consumer,
): Promise<void> {
  let cursor = '';
  const deadline = Date.now() + 120_000;
  const seenSet = new Set<string>();
  while (Date.now() < deadline) {
    const response = await call(base, 'GET', `/v1/inbox?limit=${PAGE}${cursor ? '&cursor=' + cursor : ''}`, {
      key: org.key,
    });
    assert.equal(response.status, 200, response.text);
    assert.equal(typeof response.body.next_cursor, 'string');
    const ids: string[] = response.body.events.map((event: any) => event.id);
    for (const id of ids) seenSet.add(id);
    consumer.seen.push(...ids);
    consumer.pages++;
    cursor = response.body.next_cursor;
    if (ack && ids.length > 0) {
      const acked = await call(base, 'POST', '/v1/ack', { key: org.key, body: { ids } });
      assert.deepEqual(acked.body, { acked: ids.length, not_found: [] });
    }
    if (!response.body.has_more) {
      if (!producing() && seenSet.size >= org.accepted.size) return;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}

test('a consumer following cursors sees every accepted event exactly once while 8 producers ingest', {
  timeout: 300_000,
}, async () => {
  const base = server.url;
  const a: Org = { key: (await createOrgWithKey(base, { name: 'no-ack consumer' })).key, accepted: new Set() };
  const b: Org = { key: (await createOrgWithKey(base, { name: 'acking consumer' })).key, accepted: new Set() };
  let producing = true;
  const consumerA: Consumer = { seen: [], pages: 0 };
  const consumerB: Consumer = { seen: [], pages: 0 };
  const consumers = [
    consume(base, a, false, () => producing, consumerA),
    consume(base, b, true, () => producing, consumerB),
  ];
  await Promise.all(Array.from({ length: PRODUCERS }, (_, p) => produce(base, [a, b], p)));
  producing = false;
  await Promise.all(consumers);

  for (const [name, org, consumer] of [
    ['no-ack', a, consumerA],
    ['acking', b, consumerB],
  ] as const) {
    const seen = new Set(consumer.seen);
    const missed = [...org.accepted].filter((id) => !seen.has(id));
    const extra = [...seen].filter((id) => !org.accepted.has(id));
    assert.equal(
      missed.length,
      0,
      `${name} consumer missed ${missed.length} of ${org.accepted.size} accepted events, e.g. ${missed.slice(0, 3)}`,
    );
    assert.equal(extra.length, 0, `${name} consumer saw ids that never got a 202: ${extra.slice(0, 3)}`);
    assert.equal(
      consumer.seen.length,
      seen.size,
      `${name} consumer saw ${consumer.seen.length - seen.size} events twice`,
    );
    assert.ok(org.accepted.size > 1000, `${name}: only ${org.accepted.size} events were accepted`);
    // The consumer really did read while producers wrote (many pages, not one sweep at the end).
    assert.ok(consumer.pages > 20, `${name} consumer read only ${consumer.pages} pages`);
  }

  // The no-ack consumer, read again from the start, sees the same events in the same order.
  const again: string[] = [];
  let cursor = '';
  for (;;) {
    const page = await call(base, 'GET', `/v1/inbox?limit=1000${cursor ? '&cursor=' + cursor : ''}`, { key: a.key });
    again.push(...page.body.events.map((event: any) => event.id));
    cursor = page.body.next_cursor;
    if (!page.body.has_more) break;
  }
  assert.deepEqual(again, consumerA.seen);
  // Everything the acking consumer saw is acked: its inbox is empty.
  const left = await call(base, 'GET', '/v1/inbox', { key: b.key });
  assert.deepEqual(left.body.events, []);
});
