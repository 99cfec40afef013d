import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { decodeListCursor, encodeListCursor } from '../src/event-list/cursor.js';
import { parseEventListParams } from '../src/event-list/params.js';
import { eventListQuery, LIST_SCAN_ROWS } from '../src/event-list/queries.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { InProcessServer } from './helpers/in-process.js';
import { TestPostgres } from './helpers/postgres.js';

let pg: TestPostgres;
let server: InProcessServer;
let db: Sql;
let base: string;

before(async () => {
  pg = await TestPostgres.shared();
  server = await InProcessServer.start({ databaseUrl: await pg.createDatabase('eventlist') });
  db = pg.connect('eventlist');
  base = server.url;
});

after(async () => {
  await db?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

async function send(key: string, type: string, payload: Record<string, unknown> = {}) {
  const response = await sendEvent(base, key, { type, payload });
  assert.equal(response.status, 202, response.text);
  return response.body as { id: string; received_at: string };
}

async function sendBatch(key: string, events: Array<{ type: string; payload: Record<string, unknown> }>) {
  const response = await call(base, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(response.status, 200, response.text);
  assert.equal(response.body.accepted, events.length, response.text);
  return (response.body.results as Array<{ id: string }>).map((result) => result.id);
}

function list(key: string, query = '') {
  return call(base, 'GET', '/v1/events' + (query ? '?' + query : ''), { key });
}

/** Follows next_cursor to the end; every page's events in order. */
async function walk(key: string, query: string, between?: () => Promise<unknown>) {
  const events: any[] = [];
  let cursor: string | null = null;
  let pages = 0;
  for (; pages < 1000; pages++) {
    const response = await list(key, query + (cursor ? '&cursor=' + cursor : ''));
    assert.equal(response.status, 200, response.text);
    events.push(...response.body.events);
    cursor = response.body.next_cursor;
    if (cursor === null) return { events, pages: pages + 1 };
    await between?.();
  }
  throw new Error('the walk did not end');
}

function assertNewestFirst(events: Array<{ id: string }>) {
  for (let i = 1; i < events.length; i++)
    assert.ok(events[i - 1]!.id > events[i]!.id, `not newest first at ${i}: ${events[i - 1]!.id} ${events[i]!.id}`);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('GET /v1/events', () => {
  test('each item is what GET /v1/events/{id} shows; an empty org has an empty last page', async () => {
    const { key } = await createOrgWithKey(base);
    const empty = await list(key);
    assert.equal(empty.status, 200, empty.text);
    assert.deepEqual(empty.body, { events: [], next_cursor: null });

    const sent = await send(key, 'user.signup', { n: 1, nested: { a: [1, 2] } });
    await call(base, 'DELETE', `/v1/events/${sent.id}`, { key });
    const page = await list(key);
    const one = await call(base, 'GET', `/v1/events/${sent.id}`, { key });
    assert.equal(one.status, 200);
    assert.deepEqual(page.body, { events: [one.body], next_cursor: null });
    assert.notEqual(one.body.acked_at, null);
  });

  test('pages newest first without gaps or repeats across a cursor walk while new events arrive', async () => {
    const { key } = await createOrgWithKey(base);
    const before = await sendBatch(
      key,
      Array.from({ length: 45 }, (_, i) => ({ type: 'walk.before', payload: { i } })),
    );
    for (let i = 0; i < 5; i++) before.push((await send(key, 'walk.before', { single: i })).id);
    let arriving = 0;
    const { events, pages } = await walk(key, 'limit=7', async () => {
      // New events, newer than everything listed so far, arrive between pages.
      await send(key, 'walk.during', { arriving: arriving++ });
    });
    assert.ok(pages >= 8, `pages: ${pages}`);
    assertNewestFirst(events);
    const ids = events.map((event) => event.id);
    assert.equal(new Set(ids).size, ids.length, 'an event listed twice');
    // Every event committed before the walk, exactly once; of those arriving during it, none
    // (they are newer than the walk's first page).
    assert.deepEqual(ids.filter((id) => before.includes(id)).sort(), [...before].sort());
    assert.equal(events.filter((event) => event.type === 'walk.during').length, 0);
    // A fresh walk starts from the newest and sees them.
    const fresh = await walk(key, 'limit=100');
    assert.equal(fresh.events.length, before.length + arriving);
    assertNewestFirst(fresh.events);
  });

  test('type: exact, prefix, and * for all', async () => {
    const { key } = await createOrgWithKey(base);
    await sendBatch(key, [
      { type: 'user.signup', payload: {} },
      { type: 'user.login', payload: {} },
      { type: 'user', payload: {} },
      { type: 'order.created', payload: {} },
      { type: 'user.signup.v2', payload: {} },
    ]);
    const types = async (query: string) =>
      (await walk(key, query)).events.map((event: { type: string }) => event.type).sort();
    assert.deepEqual(await types('type=user.signup'), ['user.signup']);
    assert.deepEqual(await types('type=user.*'), ['user.login', 'user.signup', 'user.signup.v2']);
    assert.deepEqual(await types('type=user*'), ['user', 'user.login', 'user.signup', 'user.signup.v2']);
    assert.deepEqual(await types('type=*'), ['order.created', 'user', 'user.login', 'user.signup', 'user.signup.v2']);
    assert.deepEqual(await types('type=nothing.*'), []);
    // A page of a type holds up to `limit` of that type.
    const page = await list(key, 'type=user.*&limit=2');
    assert.equal(page.body.events.length, 2);
    assert.equal(typeof page.body.next_cursor, 'string');
  });

  test('since is inclusive, until exclusive, on received_at to the millisecond', async () => {
    const { key } = await createOrgWithKey(base);
    const sent: Array<{ id: string; received_at: string }> = [];
    for (let i = 0; i < 4; i++) {
      sent.push(await send(key, 'window', { i }));
      await sleep(5); // distinct milliseconds
    }
    const ids = async (query: string) => (await walk(key, query)).events.map((event: { id: string }) => event.id);
    const [a, b, c, d] = sent;
    assert.deepEqual(await ids(`since=${b!.received_at}&until=${d!.received_at}`), [c!.id, b!.id]);
    assert.deepEqual(await ids(`since=${d!.received_at}`), [d!.id]);
    assert.deepEqual(await ids(`until=${b!.received_at}`), [a!.id]);
    // Another zone names the same instant.
    const bMs = Date.parse(b!.received_at);
    const plusTwo = new Date(bMs + 2 * 3600_000).toISOString().replace('Z', '+02:00');
    assert.deepEqual(await ids(`since=${encodeURIComponent(plusTwo)}&until=${c!.received_at}`), [b!.id]);
    // The default window is the last 24 hours: an `until` a day before the events holds nothing.
    assert.deepEqual(await ids(`until=${new Date(Date.parse(a!.received_at) - 86_400_000).toISOString()}`), []);
    assert.equal((await ids('')).length, 4);
    // Far past the retention is fine and bounded by it; an `until` before it is an empty page.
    assert.equal((await ids('since=2001-01-01T00:00:00Z')).length, 4);
    assert.deepEqual((await list(key, 'until=0001-01-01T00:00:00Z')).body, { events: [], next_cursor: null });
  });

  test("another org's events never appear, whatever the filter or cursor", async () => {
    const mine = await createOrgWithKey(base);
    const theirs = await createOrgWithKey(base);
    const myId = (await send(mine.key, 'shared.type', {})).id;
    await sendBatch(
      theirs.key,
      Array.from({ length: 10 }, () => ({ type: 'shared.type', payload: { secret: true } })),
    );
    const walked = await walk(mine.key, 'limit=1&type=shared.*&since=2001-01-01T00:00:00Z');
    assert.deepEqual(
      walked.events.map((event: { id: string }) => event.id),
      [myId],
    );
    // A cursor made from their newest id, handed to my key, still lists only mine.
    const theirPage = await list(theirs.key, 'limit=1');
    const fromTheirs = await list(mine.key, 'cursor=' + theirPage.body.next_cursor);
    assert.ok(fromTheirs.body.events.every((event: { id: string }) => event.id === myId));
  });

  test('limit: 1 to 100, default 50', async () => {
    const { key } = await createOrgWithKey(base);
    await sendBatch(
      key,
      Array.from({ length: 120 }, (_, i) => ({ type: 'many', payload: { i } })),
    );
    assert.equal((await list(key)).body.events.length, 50);
    assert.equal((await list(key, 'limit=1')).body.events.length, 1);
    const hundred = await list(key, 'limit=100');
    assert.equal(hundred.body.events.length, 100);
    assertNewestFirst(hundred.body.events);
    for (const bad of ['0', '101', '-1', '1.5', 'x', '', '0100']) {
      const response = await list(key, 'limit=' + bad);
      assert.equal(response.status, 422, `limit=${bad}: ${response.text}`);
      assert.deepEqual(response.body.error.details, [{ field: 'limit', message: 'must be an integer from 1 to 100' }]);
    }
  });

  test('bad parameters are 422 naming each; a malformed cursor is 422', async () => {
    const { key } = await createOrgWithKey(base);
    const response = await list(
      key,
      'limit=0&type=bad type&since=2026-01-01T00:00:00&until=yesterday&cursor=abc&limt=5&order=desc',
    );
    assert.equal(response.status, 422, response.text);
    assert.equal(response.body.error.code, 'validation_failed');
    assert.deepEqual(response.body.error.details.map((detail: { field: string }) => detail.field).sort(), [
      'cursor',
      'limit',
      'limt',
      'order',
      'since',
      'type',
      'until',
    ]);
    const cursor = encodeListCursor({ beforeId: '01900000-0000-7000-8000-000000000000', sinceMs: 0 });
    const bytes = Buffer.from(cursor, 'base64url');
    const withByte = (index: number, value: number) => {
      const copy = Buffer.from(bytes);
      copy[index] = value;
      return copy.toString('base64url');
    };
    const tooOld = Buffer.from(bytes);
    tooOld.writeBigInt64BE(-(1n << 62n), 17);
    const tampered = [
      withByte(0, 2), // another version
      cursor + 'A',
      cursor.slice(0, -1),
      cursor.slice(0, -1) + '*',
      tooOld.toString('base64url'),
      Buffer.from('x'.repeat(26)).toString('base64url'),
    ];
    for (const bad of tampered) {
      const answer = await list(key, 'cursor=' + encodeURIComponent(bad));
      assert.equal(answer.status, 422, `${bad}: ${answer.text}`);
      assert.deepEqual(answer.body.error.details, [{ field: 'cursor', message: 'is not a cursor this API issued' }]);
    }
    assert.equal((await list(key, 'cursor=' + cursor)).status, 200);
    // A well-formed cursor whose id's time has no RFC 3339 form (past year 9999): refused, not a 500.
    const farFuture = encodeListCursor({ beforeId: 'fffffffe-0000-7000-8000-000000000000', sinceMs: Date.now() });
    const future = await list(key, 'cursor=' + farFuture);
    assert.equal(future.status, 422, future.text);
    assert.deepEqual(future.body.error.details, [{ field: 'cursor', message: 'is not a cursor this API issued' }]);
    // The edges of RFC 3339 are answers, not errors: a window in year 9999, one before the retention.
    for (const edge of [
      'since=9999-12-31T23:59:59.999Z',
      'until=9999-12-31T23:59:59.999Z&since=0001-01-01T00:00:00Z',
      'since=0001-01-01T00:00:00Z&until=0001-01-02T00:00:00-23:59',
      'until=0001-01-01T00:00:00.001Z&type=a*',
    ]) {
      const answer = await list(key, edge);
      assert.equal(answer.status, 200, `${edge}: ${answer.text}`);
      assert.deepEqual(answer.body, { events: [], next_cursor: null });
    }
    const reversed = await list(key, 'since=2026-01-02T00:00:00Z&until=2026-01-02T00:00:00Z');
    assert.equal(reversed.status, 422);
    assert.deepEqual(reversed.body.error.details, [{ field: 'until', message: 'must be later than since' }]);
    const twice = await list(key, 'limit=1&limit=2');
    assert.deepEqual(twice.body.error.details, [{ field: 'limit', message: 'given more than once' }]);
    // The scope is events:read.
    const writer = await createOrgWithKey(base, { scopes: ['events:write'] });
    assert.equal((await list(writer.key)).status, 403);
  });

  test('the cursor round-trips, and keeps the walk’s since', () => {
    const position = { beforeId: '0193a1b2-c3d4-7e5f-8a6b-7c8d9e0f1a2b', sinceMs: 1_700_000_000_123 };
    assert.deepEqual(decodeListCursor(encodeListCursor(position)), position);
    const now = 1_800_000_000_000;
    const params = parseEventListParams('cursor=' + encodeListCursor(position), now, 3650);
    assert.equal(params.sinceMs, position.sinceMs);
    assert.equal(params.beforeId, position.beforeId);
    // Bounded by the retention.
    assert.equal(parseEventListParams('cursor=' + encodeListCursor(position), now, 30).sinceMs, now - 31 * 86_400_000);
  });

  test('a typed page examines at most LIST_SCAN_ROWS events, and its cursor goes on to a rare match', async () => {
    const { key, orgId } = await createOrgWithKey(base);
    const now = Date.now();
    await bulkInsert(orgId, 3 * LIST_SCAN_ROWS, now, 'common.event');
    // Older than all of them: a walk newest first meets it after 3 capped scans.
    await bulkInsert(orgId, 1, now - 3 * LIST_SCAN_ROWS - 10, 'rare.one');
    const [rare] = await db`select id::text from events where org_id = ${orgId} and type = 'rare.one'`;
    const first = await list(key, 'type=rare.one');
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(first.body.events, []);
    assert.equal(typeof first.body.next_cursor, 'string');
    const walked = await walk(key, 'type=rare.one');
    assert.deepEqual(
      walked.events.map((event: { id: string }) => event.id),
      [rare.id],
    );
    assert.ok(walked.pages >= 4, `pages: ${walked.pages}`);
    // Untyped pages are not capped that way: they stop at `limit`.
    assert.equal((await list(key, 'limit=100')).body.events.length, 100);
  });

  test('a page stops before its payloads pass 8 MiB, and the cursor continues there', async () => {
    const { key } = await createOrgWithKey(base);
    const big = 'x'.repeat(250 * 1024);
    const ids: string[] = [];
    for (let i = 0; i < 40; i++) ids.push((await send(key, 'big', { i, big })).id);
    const first = await list(key, 'limit=100');
    assert.equal(first.status, 200);
    assert.ok(first.body.events.length < 40 && first.body.events.length >= 30, `${first.body.events.length}`);
    assert.ok(first.text.length <= 8 * 1024 * 1024 + 64 * 1024);
    const walked = await walk(key, 'limit=100');
    assert.deepEqual(
      walked.events.map((event: { id: string }) => event.id),
      [...ids].reverse(),
    );
  });

  test('EXPLAIN: a plain and a typed page are index range scans on the primary key, no seq scan of events', async () => {
    const { orgId } = await createOrgWithKey(base);
    const other = await createOrgWithKey(base);
    await bulkInsert(orgId, 20_000, Date.now(), 'explain.a');
    await bulkInsert(other.orgId, 20_000, Date.now(), 'explain.b');
    await db`analyze events`;
    const now = Date.now();
    for (const query of ['', 'type=explain.a', 'type=explain.*', 'since=2001-01-01T00:00:00Z&type=explain.a']) {
      const params = parseEventListParams(query, now, 30);
      const plan = await db`explain (format json) ${eventListQuery(db, { ...params, orgId }) as any}`;
      const nodes = planNodes((plan[0] as any)['QUERY PLAN'][0].Plan);
      const text = JSON.stringify(nodes.map((node) => [node['Node Type'], node['Relation Name'], node['Index Name']]));
      assert.ok(!nodes.some((node) => node['Node Type'] === 'Seq Scan'), `${query}: ${text}`);
      assert.ok(!nodes.some((node) => node['Node Type'] === 'Sort'), `${query}: ${text}`);
      const scans = nodes.filter(
        (node) => node['Node Type'] === 'Index Scan' && node['Relation Name']?.startsWith('events_'),
      );
      assert.ok(scans.length > 0, `${query}: ${text}`);
      for (const scan of scans) {
        assert.match(scan['Index Name'], /_pkey$/, text);
        assert.equal(scan['Scan Direction'], 'Backward', text);
      }
      // The default window (24 h) prunes the partitions before yesterday.
      const yesterday = new Date(now - 86_400_000).toISOString().slice(0, 10).replace(/-/g, '');
      if (query === '')
        assert.ok(
          scans.every((scan) => scan['Relation Name'] >= 'events_' + yesterday),
          text,
        );
    }
  });
});

function planNodes(node: any): any[] {
  return [node, ...(node.Plans ?? []).flatMap(planNodes)];
}

/** `count` events straight into the table, one per millisecond back from `newestMs`, with UUIDv7 ids of their time. */
async function bulkInsert(orgId: string, count: number, newestMs: number, type: string) {
  await db`
    insert into events (org_id, id, type, payload, received_at)
    select ${orgId}::uuid,
      (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid,
      ${type}, '{"bulk":true}'::json, to_timestamp(ms / 1000.0)
    from (
      select ms, lpad(to_hex(ms), 12, '0') as h, md5(random()::text) as r
      from (select (${newestMs}::bigint - i) as ms from generate_series(0, ${count - 1}) i) t
    ) s`;
}
