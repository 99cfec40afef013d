import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ASC_START, DESC_START, decodeCursor, encodeCursor } from '../src/inbox/cursor.js';
import { ackStatement, prefixEnd, readInboxPage } from '../src/inbox/queries.js';
import { call, createOrgWithKey, sendEvent } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { InProcessServer } from './helpers/in-process.js';

let pg: TestPostgres;
let server: InProcessServer;
let base: string;

before(async () => {
  pg = await TestPostgres.shared();
  server = await InProcessServer.start({ databaseUrl: await pg.createDatabase('inbox') });
  base = server.url;
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

async function send(key: string, type: string, payload: Record<string, unknown> = {}): Promise<string> {
  const response = await sendEvent(base, key, { type, payload });
  assert.equal(response.status, 202, response.text);
  return response.body.id;
}

function inbox(key: string, query = '') {
  return call(base, 'GET', '/v1/inbox' + (query ? '?' + query : ''), { key });
}

/** Follows next_cursor until has_more is false; returns every event seen and the last cursor. */
async function drain(key: string, query: string, limit: number) {
  const events: any[] = [];
  let cursor: string | null = null;
  for (let page = 0; page < 1000; page++) {
    const response = await inbox(key, `limit=${limit}${query ? '&' + query : ''}${cursor ? '&cursor=' + cursor : ''}`);
    assert.equal(response.status, 200, response.text);
    assert.equal(typeof response.body.next_cursor, 'string');
    assert.ok(response.body.events.length <= limit);
    events.push(...response.body.events);
    cursor = response.body.next_cursor;
    if (!response.body.has_more) return { events, cursor: cursor! };
  }
  throw new Error('inbox did not end');
}

/** Polls until `check` holds: events become visible once their transaction is below the watermark. */
async function eventually<T>(
  read: () => Promise<T>,
  check: (value: T) => boolean,
  what: string,
  timeoutMs = 20_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await read();
    if (check(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${JSON.stringify(value).slice(0, 500)}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

describe('GET /v1/inbox', () => {
  test('an empty inbox gives a cursor to poll with, and polling it later shows new events', async () => {
    const { key } = await createOrgWithKey(base);
    const empty = await inbox(key);
    assert.equal(empty.status, 200, empty.text);
    assert.deepEqual(empty.body.events, []);
    assert.equal(empty.body.has_more, false);
    assert.equal(typeof empty.body.next_cursor, 'string');

    // Polling an empty page hands back a cursor that still works (the same position).
    const again = await inbox(key, 'cursor=' + empty.body.next_cursor);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.body.next_cursor, empty.body.next_cursor);

    const id = await send(key, 'user.signup', { n: 1 });
    const seen = await eventually(
      () => inbox(key, 'cursor=' + empty.body.next_cursor),
      (r) => r.body.events.length === 1,
      'the new event',
    );
    const [event] = seen.body.events;
    assert.deepEqual(Object.keys(event).sort(), ['dedup_id', 'id', 'occurred_at', 'payload', 'received_at', 'type']);
    assert.equal(event.id, id);
    assert.equal(event.type, 'user.signup');
    assert.deepEqual(event.payload, { n: 1 });
    assert.equal(event.dedup_id, null);
    assert.equal(event.occurred_at, null);
    assert.match(event.received_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.notEqual(seen.body.next_cursor, empty.body.next_cursor);

    // After the last event, the cursor stays put until something new arrives.
    const after = await inbox(key, 'cursor=' + seen.body.next_cursor);
    assert.deepEqual(after.body.events, []);
    assert.equal(after.body.next_cursor, seen.body.next_cursor);
    const id2 = await send(key, 'user.signup', { n: 2 });
    const later = await eventually(
      () => inbox(key, 'cursor=' + seen.body.next_cursor),
      (r) => r.body.events.length === 1,
      'the second event',
    );
    assert.equal(later.body.events[0].id, id2);
  });

  test('pages oldest first by default, with has_more and a default limit of 100', async () => {
    const { key } = await createOrgWithKey(base);
    const ids: string[] = [];
    for (let i = 0; i < 7; i++) ids.push(await send(key, 'order.created', { i }));
    await eventually(
      () => inbox(key),
      (r) => r.body.events.length === 7,
      'seven events',
    );

    const first = await inbox(key, 'limit=3');
    assert.deepEqual(
      first.body.events.map((e: any) => e.id),
      ids.slice(0, 3),
    );
    assert.equal(first.body.has_more, true);
    const { events } = await drain(key, '', 3);
    assert.deepEqual(
      events.map((e) => e.id),
      ids,
    );
    assert.deepEqual(
      events.map((e) => e.payload.i),
      [0, 1, 2, 3, 4, 5, 6],
    );

    // Exactly limit events left: has_more is false on the page that holds them.
    const exact = await inbox(key, 'limit=7');
    assert.equal(exact.body.events.length, 7);
    assert.equal(exact.body.has_more, false);

    const batch = await call(base, 'POST', '/v1/events/batch', {
      key,
      body: { events: Array.from({ length: 150 }, (_, i) => ({ type: 'bulk', payload: { i } })) },
    });
    assert.equal(batch.body.accepted, 150);
    const page = await eventually(
      () => inbox(key),
      (r) => r.body.has_more === true,
      'more than 100 events',
    );
    assert.equal(page.body.events.length, 100);
  });

  test('order=desc gives newest first and its cursor pages toward older events', async () => {
    const { key } = await createOrgWithKey(base);
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push(await send(key, 'page.viewed', { i }));
    await eventually(
      () => inbox(key),
      (r) => r.body.events.length === 5,
      'five events',
    );

    const newest = await inbox(key, 'order=desc&limit=2');
    assert.deepEqual(
      newest.body.events.map((e: any) => e.id),
      [ids[4], ids[3]],
    );
    assert.equal(newest.body.has_more, true);
    const { events, cursor } = await drain(key, 'order=desc', 2);
    assert.deepEqual(
      events.map((e) => e.id),
      [...ids].reverse(),
    );

    // A desc cursor at the end keeps returning nothing (older positions never fill in later).
    await send(key, 'page.viewed', { i: 5 });
    const end = await inbox(key, 'order=desc&cursor=' + cursor);
    assert.deepEqual(end.body.events, []);
    assert.equal(end.body.next_cursor, cursor);

    // A desc cursor is refused for asc and the other way round.
    const mixed = await inbox(key, 'order=asc&cursor=' + cursor);
    assert.equal(mixed.status, 422);
    assert.equal(mixed.body.error.details[0].field, 'cursor');
    const ascCursor = (await inbox(key, 'limit=1')).body.next_cursor;
    assert.equal((await inbox(key, 'order=desc&cursor=' + ascCursor)).status, 422);
  });

  test('type filters by exact type or by a prefix ending in *', async () => {
    const { key } = await createOrgWithKey(base);
    const signup = await send(key, 'user.signup');
    const login = await send(key, 'user.login');
    const order = await send(key, 'order.paid');
    const userish = await send(key, 'users_table.updated');
    await eventually(
      () => inbox(key),
      (r) => r.body.events.length === 4,
      'four events',
    );

    const ids = async (query: string) => (await drain(key, query, 100)).events.map((e) => e.id);
    assert.deepEqual(await ids('type=user.signup'), [signup]);
    assert.deepEqual(await ids('type=user.*'), [signup, login]);
    assert.deepEqual(await ids('type=user*'), [signup, login, userish]);
    assert.deepEqual(await ids('type=order.*&order=desc'), [order]);
    assert.deepEqual(await ids('type=*'), [signup, login, order, userish]);
    assert.deepEqual(await ids('type=nothing.here'), []);
    // "_" and "%" are literal characters, not LIKE wildcards.
    assert.deepEqual(await ids('type=users_*'), [userish]);
    assert.deepEqual(await ids('type=user_*'), []);
    // Paging through a filtered inbox with limit 1.
    assert.deepEqual(
      (await drain(key, 'type=user.*', 1)).events.map((e) => e.id),
      [signup, login],
    );
  });

  test('bad query parameters are 422 validation_failed naming each parameter', async () => {
    const { key } = await createOrgWithKey(base);
    const fieldsOf = async (query: string) => {
      const response = await inbox(key, query);
      assert.equal(response.status, 422, `${query}: ${response.text}`);
      assert.equal(response.body.error.code, 'validation_failed');
      assert.equal(response.body.error.request_id, response.headers.get('x-request-id'));
      return response.body.error.details.map((d: any) => d.field);
    };
    for (const limit of ['0', '1001', '-1', 'abc', '1.5', '', '10000'])
      assert.deepEqual(await fieldsOf('limit=' + limit), ['limit']);
    assert.deepEqual(await fieldsOf('order=newest'), ['order']);
    assert.deepEqual(await fieldsOf('type=bad%20type'), ['type']);
    assert.deepEqual(await fieldsOf('type=' + 'a'.repeat(129)), ['type']);
    assert.deepEqual(await fieldsOf('type=user.**'), ['type']);
    for (const cursor of ['garbage', 'AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA', '', 'x'.repeat(35), '%00']) {
      assert.deepEqual(await fieldsOf('cursor=' + cursor), ['cursor'], cursor);
    }
    assert.deepEqual(await fieldsOf('limt=5'), ['limt']);
    assert.deepEqual(await fieldsOf('limit=5&limit=6'), ['limit']);
    assert.deepEqual((await fieldsOf('limit=0&order=x&cursor=nope')).sort(), ['cursor', 'limit', 'order']);

    for (const limit of ['1', '1000', '100']) assert.equal((await inbox(key, 'limit=' + limit)).status, 200);
  });

  test('needs an API key with events:read', async () => {
    assert.equal((await call(base, 'GET', '/v1/inbox')).status, 401);
    const writer = await createOrgWithKey(base, { scopes: ['events:write'] });
    const response = await inbox(writer.key);
    assert.equal(response.status, 403);
    assert.equal(response.body.error.code, 'forbidden');
    assert.equal((await call(base, 'POST', '/v1/ack', { key: writer.key, body: { ids: [] } })).status, 403);
  });
});

describe('acknowledgement', () => {
  test('POST /v1/ack removes events from the inbox, is idempotent, and reports unknown ids', async () => {
    const { key } = await createOrgWithKey(base);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await send(key, 'invoice.sent', { i }));
    await eventually(
      () => inbox(key),
      (r) => r.body.events.length === 4,
      'four events',
    );

    const unknown = '01890000-0000-7000-8000-000000000000';
    const farFuture = 'ffffffff-ffff-4fff-bfff-ffffffffffff';
    const first = await call(base, 'POST', '/v1/ack', {
      key,
      body: { ids: [ids[0], ids[2], unknown, 'not-an-id', ids[0], farFuture] },
    });
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(first.body, { acked: 2, not_found: [unknown, 'not-an-id', farFuture] });

    // Acking again is not an error, and the already-acked ids are not "not_found".
    const second = await call(base, 'POST', '/v1/ack', { key, body: { ids: [ids[0], ids[2]] } });
    assert.deepEqual(second.body, { acked: 2, not_found: [] });

    const left = await inbox(key);
    assert.deepEqual(
      left.body.events.map((e: any) => e.id),
      [ids[1], ids[3]],
    );

    const acked = await call(base, 'GET', `/v1/events/${ids[0]}`, { key });
    assert.equal(acked.status, 200);
    assert.match(acked.body.acked_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // The first ack's time is kept on a repeated ack.
    await call(base, 'POST', '/v1/ack', { key, body: { ids: [ids[0]] } });
    assert.equal((await call(base, 'GET', `/v1/events/${ids[0]}`, { key })).body.acked_at, acked.body.acked_at);
    assert.equal((await call(base, 'GET', `/v1/events/${ids[1]}`, { key })).body.acked_at, null);
  });

  test("an ack finds its rows by primary key, however large the backlog: no scan of the org's unacked events", async () => {
    // A backlog ingested moments ago, on a partition Postgres has not analysed yet: the ack once
    // matched its `acked_at is null` to the partial index of unacked events, estimated 2 rows for
    // the org and scanned all of them per page, so draining the inbox cost O(backlog) per page.
    const { key, orgId } = await createOrgWithKey(base);
    for (let batch = 0; batch < 20; batch++) {
      const events = Array.from({ length: 1000 }, (_, i) => ({ type: 'backlog.item', payload: { batch, i } }));
      const response = await call(base, 'POST', '/v1/events/batch', { key, body: { events } });
      assert.deepEqual([response.status, response.body.accepted], [200, 1000], response.text.slice(0, 300));
    }
    const db = pg.connect('inbox');
    let ids: string[] = [];
    try {
      const page = await db`
        select id, received_at::text as received_at from events where org_id = ${orgId} order by seq limit 1000`;
      ids = page.map((row) => row.id as string);
      const [explained] = await db`explain (format json) ${ackStatement(
        db,
        orgId,
        ids,
        page.map((row) => row.received_at as string),
      )}`;
      const indexes: string[] = [];
      const walk = (node: any) => {
        if (node['Index Name']) indexes.push(node['Index Name']);
        for (const child of node.Plans ?? []) walk(child);
      };
      walk((explained!['QUERY PLAN'] as any)[0].Plan);
      assert.ok(indexes.length > 0, 'the ack reads through an index');
      assert.ok(
        indexes.every((name) => name.endsWith('_pkey')),
        `every index the ack reads is a primary key: ${indexes.join(', ')}`,
      );
    } finally {
      await db.end({ timeout: 1 });
    }
    const acked = await call(base, 'POST', '/v1/ack', { key, body: { ids } });
    assert.deepEqual([acked.status, acked.body.acked, acked.body.not_found], [200, 1000, []]);
  });

  test('acking behind and ahead of a cursor never makes it skip an unacked event', async () => {
    const { key } = await createOrgWithKey(base);
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(await send(key, 'x', { i }));
    await eventually(
      () => inbox(key),
      (r) => r.body.events.length === 6,
      'six events',
    );
    const page = await inbox(key, 'limit=2');
    // Ack the page just read and the next event; the cursor continues with the one after.
    await call(base, 'POST', '/v1/ack', { key, body: { ids: [ids[0], ids[1], ids[2]] } });
    const next = await inbox(key, 'limit=2&cursor=' + page.body.next_cursor);
    assert.deepEqual(
      next.body.events.map((e: any) => e.id),
      [ids[3], ids[4]],
    );
    const last = await inbox(key, 'limit=2&cursor=' + next.body.next_cursor);
    assert.deepEqual(
      last.body.events.map((e: any) => e.id),
      [ids[5]],
    );
    assert.equal(last.body.has_more, false);
  });

  test('bad ack bodies are rejected', async () => {
    const { key } = await createOrgWithKey(base);
    const ack = (body: unknown) => call(base, 'POST', '/v1/ack', { key, body });
    for (const body of [
      {},
      { ids: [] },
      { ids: 'x' },
      { ids: [1] },
      { ids: ['a'], extra: 1 },
      [],
      { ids: Array.from({ length: 1001 }, () => '01890000-0000-7000-8000-000000000000') },
    ]) {
      const response = await ack(body);
      assert.equal(response.status, 422, JSON.stringify(body).slice(0, 80));
      assert.equal(response.body.error.code, 'validation_failed');
      assert.ok(response.body.error.details.length > 0);
    }
    const thousand = await ack({
      ids: Array.from({ length: 1000 }, (_, i) => `01890000-0000-7000-8000-${String(i).padStart(12, '0')}`),
    });
    assert.equal(thousand.status, 200);
    assert.equal(thousand.body.not_found.length, 1000);
    assert.equal(
      (await call(base, 'POST', '/v1/ack', { key, raw: '{nope', headers: { 'content-type': 'application/json' } }))
        .status,
      400,
    );
    assert.equal(
      (await call(base, 'POST', '/v1/ack', { key, raw: '{"ids":["x"]}', headers: { 'content-type': 'text/plain' } }))
        .status,
      415,
    );
  });

  test('DELETE /v1/events/:id acknowledges one event: 204, idempotent, 404 when unknown', async () => {
    const { key } = await createOrgWithKey(base);
    const id = await send(key, 'email.bounced');
    const keep = await send(key, 'email.bounced');
    await eventually(
      () => inbox(key),
      (r) => r.body.events.length === 2,
      'two events',
    );
    const first = await call(base, 'DELETE', `/v1/events/${id}`, { key });
    assert.equal(first.status, 204);
    assert.equal(first.text, '');
    assert.equal((await call(base, 'DELETE', `/v1/events/${id}`, { key })).status, 204);
    assert.deepEqual(
      (await inbox(key)).body.events.map((e: any) => e.id),
      [keep],
    );
    assert.notEqual((await call(base, 'GET', `/v1/events/${id}`, { key })).body.acked_at, null);
    // Events are acknowledged, not erased: the event itself is still there.
    assert.equal((await call(base, 'GET', `/v1/events/${id}`, { key })).status, 200);

    const unknown = await call(base, 'DELETE', '/v1/events/01890000-0000-7000-8000-000000000000', { key });
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error.code, 'not_found');
    assert.equal((await call(base, 'DELETE', '/v1/events/not-a-uuid', { key })).status, 404);
    assert.equal((await call(base, 'DELETE', '/v1/events/ffffffff-ffff-4fff-bfff-ffffffffffff', { key })).status, 404);
    assert.equal((await call(base, 'DELETE', `/v1/events/${id}`)).status, 401);
  });
});

describe('tenancy', () => {
  test("another org cannot see, get, ack or delete an org's events", async () => {
    const a = await createOrgWithKey(base, { name: 'org a' });
    const b = await createOrgWithKey(base, { name: 'org b' });
    const idA = await send(a.key, 'secret.thing', { owner: 'a' });
    const idB = await send(b.key, 'secret.thing', { owner: 'b' });
    await eventually(
      () => inbox(a.key),
      (r) => r.body.events.length === 1,
      'org a event',
    );
    await eventually(
      () => inbox(b.key),
      (r) => r.body.events.length === 1,
      'org b event',
    );

    // B's inbox shows only B's event, in either order, with or without a filter, from any cursor.
    for (const query of ['', 'order=desc', 'type=secret.*', 'type=secret.thing']) {
      assert.deepEqual(
        (await drain(b.key, query, 10)).events.map((e) => e.id),
        [idB],
        query,
      );
    }
    // A cursor is only a position: one taken from A's inbox shows B nothing of A's.
    const cursorA = (await inbox(a.key, 'order=desc')).body.next_cursor;
    assert.deepEqual(
      (await drain(b.key, 'order=desc&cursor=' + cursorA, 10)).events.map((e) => e.id).filter((id) => id === idA),
      [],
    );

    const get = await call(base, 'GET', `/v1/events/${idA}`, { key: b.key });
    assert.equal(get.status, 404);
    const ack = await call(base, 'POST', '/v1/ack', { key: b.key, body: { ids: [idA, idB] } });
    assert.deepEqual(ack.body, { acked: 1, not_found: [idA] });
    assert.equal((await call(base, 'DELETE', `/v1/events/${idA}`, { key: b.key })).status, 404);

    // Nothing B did touched A's event.
    const stillThere = await call(base, 'GET', `/v1/events/${idA}`, { key: a.key });
    assert.equal(stillThere.body.acked_at, null);
    assert.deepEqual(
      (await inbox(a.key)).body.events.map((e: any) => e.id),
      [idA],
    );
  });
});

describe('cursor codec', () => {
  test('round-trips positions, including the largest seq, and refuses anything else', () => {
    const positions = [
      ASC_START,
      DESC_START,
      { seq: '748', id: '01a203d6-b49f-703d-94f7-0db25a438720' },
      { seq: '9223372036854775807', id: 'ffffffff-ffff-7fff-bfff-ffffffffffff' },
      { seq: String(2 ** 53 + 1), id: '00000000-0000-7000-8000-000000000001' },
    ];
    for (const order of ['asc', 'desc'] as const) {
      for (const position of positions) {
        const text = encodeCursor(order, position);
        assert.match(text, /^[A-Za-z0-9_-]{35}$/);
        assert.deepEqual(decodeCursor(text, order), position);
        assert.equal(decodeCursor(text, order === 'asc' ? 'desc' : 'asc'), 'order');
        // Any change of one character is either refused or a different, valid position.
        const flipped = text.slice(0, 34) + (text[34] === 'A' ? 'B' : 'A');
        const decoded = decodeCursor(flipped, order);
        assert.ok(
          decoded === 'malformed' || decoded === 'order' || JSON.stringify(decoded) !== JSON.stringify(position),
        );
      }
    }
    const valid = encodeCursor('asc', positions[2]!);
    const beyondBigint = Buffer.alloc(26, 0xff);
    beyondBigint[0] = 2;
    beyondBigint[1] = 0;
    for (const bad of [
      '',
      'x',
      valid + 'A',
      valid.slice(1),
      valid.replace(/^./, '+'),
      'A'.repeat(35),
      Buffer.alloc(26, 9).toString('base64url'),
      beyondBigint.toString('base64url'),
    ]) {
      assert.equal(decodeCursor(bad, 'asc'), 'malformed', bad);
    }
    // A cursor from before the per-org sequence (version 1, an xid8) reads as the start of its order.
    const versionOne = Buffer.from(Buffer.from(encodeCursor('desc', positions[2]!), 'base64url'));
    versionOne[0] = 1;
    assert.deepEqual(decodeCursor(versionOne.toString('base64url'), 'desc'), DESC_START);
    versionOne[1] = 0;
    assert.deepEqual(decodeCursor(versionOne.toString('base64url'), 'asc'), ASC_START);
  });

  test('prefixEnd bounds exactly the strings that start with the prefix', () => {
    assert.equal(prefixEnd('user.'), 'user/');
    assert.equal(prefixEnd('a'), 'b');
    assert.equal(prefixEnd('z'), '{');
    for (const type of ['user.', 'user.signup', 'user.z', 'user.~'])
      assert.ok(type >= 'user.' && type < prefixEnd('user.'), type);
    for (const type of ['user', 'users', 'user/', 'usera', 'user-x'])
      assert.ok(!(type >= 'user.' && type < prefixEnd('user.')), type);
  });
});

describe('the byte budget of a page (readInboxPage)', () => {
  test('rows fit while the payload bytes so far are within the budget; the first past it comes without its payload', async () => {
    const { key, orgId } = await createOrgWithKey(base, { name: 'budget' });
    // Payload texts of exactly 100, 200, 300, 400 bytes (verbatim: stored as sent), then one of
    // 20 000 bytes of one letter (stored compressed: smaller stored than shown).
    const sized = (bytes: number, fill = 'x') => ({ s: fill.repeat(bytes - 8) }); // {"s":"…"} is 8 bytes around
    const ids: string[] = [];
    for (const bytes of [100, 200, 300, 400]) ids.push(await send(key, 'budget.row', sized(bytes)));
    ids.push(await send(key, 'budget.row', sized(20_000, 'z')));
    const db = pg.connect('inbox');
    try {
      const read = async (order: 'asc' | 'desc', maxPayloadBytes: number, limit = 10) => {
        const rows = await eventually(
          () =>
            readInboxPage(db, {
              orgId,
              order,
              from: order === 'asc' ? ASC_START : DESC_START,
              limit,
              filter: { kind: 'all' },
              maxPayloadBytes,
            }),
          (r) => r.length >= Math.min(limit, 2),
          'rows below the watermark',
        );
        return rows.map((row) => (row.payload === null ? null : row.payload.length));
      };
      // Uncompressed payloads count with their stored header: 100 + 1, 200 + 4, 300 + 4, 400 + 4.
      assert.deepEqual(await read('asc', 609), [100, 200, 300, null], 'exactly at the budget is in');
      assert.deepEqual(await read('asc', 608), [100, 200, null]);
      assert.deepEqual(await read('asc', 50), [100, null], 'the first row always comes, even alone over the budget');
      assert.deepEqual(await read('asc', 1_000_000), [100, 200, 300, 400, 20_000]);
      assert.deepEqual(
        await read('asc', 10_000),
        [100, 200, 300, 400, null],
        'a compressed payload is measured as shown, not as stored',
      );
      assert.deepEqual(await read('desc', 20_500), [20_000, 400, null]);
      assert.deepEqual(await read('asc', 1_000_000, 2), [100, 200], 'the limit still applies');
    } finally {
      await db.end({ timeout: 1 });
    }
    // Through the route (8 MiB budget) nothing changes for small events.
    const page = await inbox(key, 'limit=3');
    assert.deepEqual(
      page.body.events.map((e: { id: string }) => e.id),
      ids.slice(0, 3),
    );
    assert.equal(page.body.has_more, true);
  });
});
