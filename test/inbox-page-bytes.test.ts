import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { after, before, test } from 'node:test';
import { INBOX_PAGE_MAX_BYTES } from '../src/inbox/queries.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { workerPids } from './helpers/processes.js';
import { TestServer } from './helpers/server.js';

/*
 * An inbox page is bounded in bytes as well as in events: limit=1000 over 256 KiB payloads used to
 * be ~256 MB in one HTTP worker. A page stops before the event that would pass
 * INBOX_PAGE_MAX_BYTES of payload, says has_more, and its cursor continues exactly there.
 */

const EVENTS = 100;
const PER_BATCH = 25; // 25 × 256 KiB stays under the batch route's 8 MiB body
// JSON around the payloads: ids, types, times, cursor; generous.
const PAGE_OVERHEAD = 64 * 1024;
// Stated bound for each HTTP worker's resident memory (VmRSS, /proc/<pid>/status, the worker's
// whole life so far, ingest included) while 4 clients page at once: measured 210-256 MB peak here
// with the budget, ~400 MB without it (each page of 100 events held ~26 MB of payload text several
// times over: rows, the JSON string, the response buffer).
const WORKER_RSS_LIMIT = 340 * 1024 * 1024;

let pg: TestPostgres;
let server: TestServer;
let key: string;
const ingested: string[] = [];

/** A payload of exactly 256 KiB serialized less a little: random (incompressible) or repetitive. */
function bigPayload(i: number): Record<string, unknown> {
  const size = 256 * 1024 - 40;
  const blob =
    i % 2 === 0 ? randomBytes(size).toString('base64').slice(0, size) : String.fromCharCode(97 + (i % 26)).repeat(size);
  return { i, blob };
}

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({ databaseUrl: await pg.createDatabase('inboxbytes'), workers: 2 });
  ({ key } = await createOrgWithKey(server.url));
  for (let start = 0; start < EVENTS; start += PER_BATCH) {
    const events = Array.from({ length: PER_BATCH }, (_, k) => ({
      type: 'big.payload',
      payload: bigPayload(start + k),
    }));
    const response = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events } });
    assert.equal(response.status, 200, response.text.slice(0, 300));
    assert.equal(response.body.accepted, PER_BATCH, response.text.slice(0, 300));
    for (const result of response.body.results) ingested.push(result.id);
  }
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

interface Page {
  ids: string[];
  bytes: number;
  hasMore: boolean;
  cursor: string;
}

async function page(order: 'asc' | 'desc', cursor: string | null): Promise<Page> {
  const response = await fetch(`${server.url}/v1/inbox?limit=1000&order=${order}${cursor ? `&cursor=${cursor}` : ''}`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const text = await response.text();
  assert.equal(response.status, 200, text.slice(0, 300));
  const body = JSON.parse(text);
  return {
    ids: body.events.map((e: { id: string }) => e.id),
    bytes: Buffer.byteLength(text),
    hasMore: body.has_more,
    cursor: body.next_cursor,
  };
}

/** Follows next_cursor to the end; checks every page against the budget. */
async function readAll(order: 'asc' | 'desc'): Promise<{ ids: string[]; pages: number }> {
  const ids: string[] = [];
  let cursor: string | null = null;
  for (let pages = 1; pages < 100; pages++) {
    const next = await page(order, cursor);
    assert.ok(next.ids.length >= 1 || !next.hasMore, 'a page with more to come holds at least one event');
    assert.ok(
      next.bytes <= INBOX_PAGE_MAX_BYTES + PAGE_OVERHEAD,
      `a page of ${next.bytes} bytes (${next.ids.length} events)`,
    );
    if (next.hasMore) assert.ok(next.ids.length < 1000);
    ids.push(...next.ids);
    cursor = next.cursor;
    if (!next.hasMore) return { ids, pages };
  }
  throw new Error('the inbox did not end');
}

test('limit=1000 over 256 KiB payloads: pages stop at the byte budget, and the cursor misses and repeats nothing', async () => {
  assert.equal(ingested.length, EVENTS);
  const asc = await readAll('asc');
  assert.deepEqual(asc.ids, ingested, 'every event exactly once, in order');
  // ~31 payloads of 256 KiB fit in 8 MiB: at least 4 pages for 100 events.
  assert.ok(asc.pages >= Math.ceil((EVENTS * 256 * 1024) / INBOX_PAGE_MAX_BYTES), `${asc.pages} pages`);
  const desc = await readAll('desc');
  assert.deepEqual(desc.ids, [...ingested].reverse());

  // One event alone, and the same events read one by one, are unaffected.
  const one = await call(server.url, 'GET', `/v1/events/${ingested[7]}`, { key });
  assert.equal(one.status, 200);
  assert.equal(one.body.payload.i, 7);
  const small = await page('asc', null);
  assert.equal(small.ids[0], ingested[0]);
});

test('4 clients paging at once keep each HTTP worker under the stated memory', async () => {
  const pids = workerPids(server.proc.pid!, 'http');
  assert.equal(pids.length, 2);
  const rss = (pid: number) =>
    Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  const before = Math.max(...pids.map(rss));
  let peak = 0;
  let paging = true;
  const sampler = (async () => {
    while (paging) {
      for (const pid of pids) peak = Math.max(peak, rss(pid));
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  })();
  try {
    const readers = await Promise.all(Array.from({ length: 4 }, (_, i) => readAll(i % 2 === 0 ? 'asc' : 'desc')));
    for (const [i, reader] of readers.entries())
      assert.deepEqual(reader.ids, i % 2 === 0 ? ingested : [...ingested].reverse());
  } finally {
    paging = false;
    await sampler;
  }
  console.log(
    `# VmRSS of the larger HTTP worker: ${(before / 1024 / 1024).toFixed(0)} MB before, peak ${(peak / 1024 / 1024).toFixed(0)} MB while 4 clients paged`,
  );
  assert.ok(peak < WORKER_RSS_LIMIT, `an HTTP worker reached ${(peak / 1024 / 1024).toFixed(0)} MB resident`);
});
