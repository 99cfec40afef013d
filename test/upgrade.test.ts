import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { openDatabase, type Sql } from '../src/db/connect.js';
import { deliveryId } from '../src/delivery/delivery-id.js';
import { generateSecret } from '../src/delivery/signature.js';
import { uuidv7 } from '../src/ids.js';
import { call } from './helpers/api.js';
import { TestCitus, citusUnavailable } from './helpers/citus.js';
import { createKeyFor, migrationsThrough, oldSchema } from './helpers/old-schema.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { assertExactlyOnce } from './helpers/webhook-kit.js';
import { Receiver, waitFor } from './webhooks-receiver.js';

/**
 * Upgrading from the previous release (006: events ordered by the inserting transaction's xid) to
 * the per-org commit order of sql/007_org_sequence.sql, on a small dataset written the way the old
 * server wrote it: several transactions whose xid order differs from id order, acknowledged
 * events, dedup ids, two days' partitions, webhook endpoints with cursors and delivery history.
 * Once on plain Postgres, once on a plain-Postgres install that became a Citus coordinator (the
 * server then distributes the tables and moves the rows to the shards, src/db/citus.ts).
 */

const PREVIOUS_RELEASE = '006_endpoint_streams.sql';
const LOCAL = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' };
const HOUR_MS = 3_600_000;
// Written out rather than imported from src/db/citus.ts, so a table dropped from its lists shows here.
const REFERENCE_TABLES = ['orgs', 'api_keys'];
const DISTRIBUTED_TABLES = ['events', 'event_dedup', 'webhook_endpoints', 'webhook_deliveries'];

interface OldEvent {
  orgId: string;
  id: string;
  type: string;
  payload: { name: string };
  dedupId: string | null;
  receivedAt: number;
  acked: boolean;
}

interface OldDataset {
  orgIds: string[];
  events: Map<string, OldEvent>;
  /** Each org's event ids in (xid, id) order: the order the old inbox and streams served. */
  order: Map<string, string[]>;
  /** Org A's endpoint, its cursor in the middle of org A's events; org B's, its cursor before them all. */
  endpoints: Array<{ id: string; orgId: string; owed: string[] }>;
  /** A succeeded delivery made by the old server (before org A's endpoint cursor). */
  delivered: { endpointId: string; eventId: string };
  /** An inbox cursor of the old format (xid), in the middle of org A's unacknowledged events. */
  oldInboxCursor: string;
  /** dedup_id → the event that holds it, per org. */
  dedupIds: Array<{ orgId: string; dedupId: string; eventId: string }>;
}

/** The old inbox cursor: version 1, order 0 (asc), the xid8 as u64 BE, the event id's 16 bytes. */
function oldCursor(xid: string, id: string): string {
  const bytes = Buffer.alloc(26);
  bytes[0] = 1;
  bytes[1] = 0;
  bytes.writeBigUInt64BE(BigInt(xid), 2);
  bytes.write(id.replace(/-/g, ''), 10, 16, 'hex');
  return bytes.toString('base64url');
}

type Connection = Sql | Awaited<ReturnType<Sql['reserve']>>;

/** Rows as the old server's flush wrote them (xid from the column default), with their dedup claims. */
async function insertOld(q: Connection, rows: OldEvent[]): Promise<Array<{ id: string; xid: string }>> {
  const inserted = await q`
    insert into events (org_id, id, type, payload, dedup_id, received_at, acked_at)
    select r.org_id, r.id, r.type, r.payload::json, r.dedup_id, r.received_at, r.acked_at
    from unnest(${rows.map((r) => r.orgId)}::uuid[], ${rows.map((r) => r.id)}::uuid[], ${rows.map((r) => r.type)}::text[],
                ${rows.map((r) => JSON.stringify(r.payload))}::text[], ${rows.map((r) => r.dedupId)}::text[],
                ${rows.map((r) => new Date(r.receivedAt).toISOString())}::timestamptz[],
                ${rows.map((r) => (r.acked ? new Date(r.receivedAt + 1000).toISOString() : null))}::timestamptz[])
      as r(org_id, id, type, payload, dedup_id, received_at, acked_at)
    returning id::text, xid::text`;
  const claims = rows.filter((r) => r.dedupId !== null);
  if (claims.length > 0) {
    await q`
      insert into event_dedup (org_id, dedup_id, event_id, received_at)
      select * from unnest(${claims.map((r) => r.orgId)}::uuid[], ${claims.map((r) => r.dedupId!)}::text[],
                           ${claims.map((r) => r.id)}::uuid[], ${claims.map((r) => new Date(r.receivedAt).toISOString())}::timestamptz[])`;
  }
  return inserted.map((row) => ({ id: row.id as string, xid: row.xid as string }));
}

/**
 * The database as the previous release left it, on `db` (empty): schema through 006, three
 * orgs, 22 events, two endpoints, three deliveries. Returns what the upgrade must preserve.
 */
async function writeOldDataset(db: Sql, hookUrls: [string, string]): Promise<OldDataset> {
  const [a, b, c] = [uuidv7(Date.now()), uuidv7(Date.now()), uuidv7(Date.now())] as [string, string, string];
  await oldSchema(db, migrationsThrough(PREVIOUS_RELEASE), [a, b, c]);
  const endpointA = uuidv7(Date.now());
  const endpointB = uuidv7(Date.now());
  // Both created before any event, their cursors at the oldest running transaction, as 006 did.
  for (const [id, orgId, url] of [
    [endpointA, a, hookUrls[0]],
    [endpointB, b, hookUrls[1]],
  ] as const) {
    await db`
      insert into webhook_endpoints (id, org_id, url, secret, cursor_xid, deliver_from)
      values (${id}, ${orgId}, ${url}, ${generateSecret()}, pg_snapshot_xmin(pg_current_snapshot()), now() - interval '3 days')`;
  }

  // Received 25 h ago (the day before today's partition, UTC) and 10 min ago (within the dedup window).
  const yesterday = Date.now() - 25 * HOUR_MS;
  const today = Date.now() - 10 * 60_000;
  const events = new Map<string, OldEvent>();
  const byName = new Map<string, OldEvent>();
  const event = (
    orgId: string,
    name: string,
    at: number,
    options: { dedupId?: string; acked?: boolean } = {},
  ): OldEvent => {
    const row = {
      orgId,
      id: uuidv7(at),
      type: `old.${name.toLowerCase()}`,
      payload: { name },
      dedupId: options.dedupId ?? null,
      receivedAt: at,
      acked: options.acked ?? false,
    };
    events.set(row.id, row);
    byName.set(name, row);
    return row;
  };
  const xids = new Map<string, string>();
  const insert = async (q: Connection, rows: OldEvent[]) => {
    for (const row of await insertOld(q, rows)) xids.set(row.id, row.xid);
  };

  const one = await db.reserve();
  const two = await db.reserve();
  try {
    // A1 and A3 in one transaction, A2 (id between them) in one that starts later, commits first:
    // the old order is A1, A3, A2.
    await one`begin`;
    await insert(one, [event(a, 'A1', yesterday + 10), event(b, 'B1', yesterday + 20)]);
    await two`begin`;
    await insert(two, [event(a, 'A2', yesterday + 30), event(c, 'C1', yesterday + 40)]);
    await two`commit`;
    await insert(one, [event(a, 'A3', yesterday + 50)]);
    await one`commit`;
    // A flush of several orgs at once.
    await insert(db, [
      event(a, 'A4', yesterday + 60),
      event(a, 'A5', yesterday + 70, { acked: true }),
      event(a, 'A6', yesterday + 80),
      event(a, 'A7', yesterday + 90),
      event(b, 'B2', yesterday + 100, { acked: true }),
      event(b, 'B3', yesterday + 110),
    ]);
    // Today: A9's id is below A8's, but its transaction began later; A10 commits with A8.
    // One dedup_id in two orgs: never a collision.
    await one`begin`;
    await insert(one, [
      event(a, 'A8', today + 10, { dedupId: 'order-1' }),
      event(b, 'B4', today + 20, { dedupId: 'order-1' }),
    ]);
    await two`begin`;
    await insert(two, [event(a, 'A9', today + 0), event(c, 'C2', today + 30, { dedupId: 'c-1' })]);
    await two`commit`;
    await insert(one, [event(a, 'A10', today + 40)]);
    await one`commit`;
    await insert(db, [
      event(a, 'A11', today + 50, { acked: true }),
      event(a, 'A12', today + 60, { dedupId: 'order-2' }),
      event(a, 'A13', today + 70),
      event(b, 'B5', today + 80),
    ]);
  } finally {
    one.release();
    two.release();
  }

  const order = new Map<string, string[]>();
  for (const row of await db`select org_id::text, id::text from events order by org_id, xid, id`) {
    order.set(row.org_id, [...(order.get(row.org_id) ?? []), row.id]);
  }
  const named = (...names: string[]) => names.map((name) => byName.get(name)!.id);
  assert.deepEqual(
    order.get(a),
    named('A1', 'A3', 'A2', 'A4', 'A5', 'A6', 'A7', 'A8', 'A10', 'A9', 'A11', 'A12', 'A13'),
    'org A in (xid, id) order',
  );
  assert.notDeepEqual(order.get(a), [...order.get(a)!].sort(), 'xid order differs from id order');

  // The old stream had sent org A's events up to A8 and moved its cursor there; the last three
  // have their delivery rows (the id src/delivery/delivery-id.ts gives them).
  const cursorEvent = byName.get('A8')!;
  await db`update webhook_endpoints set cursor_xid = ${xids.get(cursorEvent.id)!}::xid8, cursor_id = ${cursorEvent.id} where id = ${endpointA}`;
  for (const sent of ['A6', 'A7', 'A8'].map((name) => byName.get(name)!)) {
    const attempts = [
      {
        at: new Date(sent.receivedAt + 500).toISOString(),
        response_status: 200,
        latency_ms: 5,
        error: null,
        next_attempt_at: null,
      },
    ];
    await db`
      insert into webhook_deliveries (org_id, endpoint_id, id, event_id, event_received_at, status, attempts)
      values (${a}, ${endpointA}, ${deliveryId(endpointA, sent.id)}, ${sent.id}, ${new Date(sent.receivedAt)}, 'succeeded', ${JSON.stringify(attempts)}::text::jsonb)`;
  }
  const orderA = order.get(a)!;
  const middle = byName.get('A4')!;
  return {
    orgIds: [a, b, c],
    events,
    order,
    endpoints: [
      { id: endpointA, orgId: a, owed: orderA.slice(orderA.indexOf(cursorEvent.id) + 1) },
      { id: endpointB, orgId: b, owed: order.get(b)! },
    ],
    delivered: { endpointId: endpointA, eventId: cursorEvent.id },
    oldInboxCursor: oldCursor(xids.get(middle.id)!, middle.id),
    dedupIds: [...events.values()]
      .filter((e) => e.dedupId !== null)
      .map((e) => ({ orgId: e.orgId, dedupId: e.dedupId!, eventId: e.id })),
  };
}

/** Every page of an org's inbox, `limit` at a time, from `cursor`. */
async function readInbox(base: string, key: string, limit: number, cursor = ''): Promise<string[]> {
  const ids: string[] = [];
  for (let pages = 0; pages < 50; pages++) {
    const page = await call(base, 'GET', `/v1/inbox?limit=${limit}${cursor ? `&cursor=${cursor}` : ''}`, { key });
    assert.equal(page.status, 200, page.text);
    ids.push(...page.body.events.map((e: { id: string }) => e.id));
    if (!page.body.has_more) return ids;
    cursor = page.body.next_cursor;
  }
  throw new Error('the inbox never ended');
}

/**
 * What the upgrade must have kept and made of `old`, read through `db` and the API of `server`,
 * then new events and webhook deliveries on top.
 */
async function assertUpgraded(server: TestServer, db: Sql, old: OldDataset, hooks: Receiver[]): Promise<void> {
  const keys = new Map<string, string>();
  for (const orgId of old.orgIds) keys.set(orgId, (await createKeyFor(server.url, orgId)).key);

  // Every row kept, numbered 1..n per org in the old (xid, id) order.
  const rows = await db`
    select org_id::text, id::text, seq::int as seq, type, payload::text, dedup_id, received_at, acked_at is not null as acked
    from events order by org_id, seq`;
  assert.equal(rows.length, old.events.size, 'every event is kept');
  for (const orgId of old.orgIds) {
    const mine = rows.filter((row) => row.org_id === orgId);
    assert.deepEqual(
      mine.map((row) => row.id),
      old.order.get(orgId),
      `org ${orgId}: seq order is the old (xid, id) order`,
    );
    assert.deepEqual(
      mine.map((row) => row.seq),
      mine.map((_, i) => i + 1),
      `org ${orgId}: seq is 1..n without a gap`,
    );
  }
  for (const row of rows) {
    const was = old.events.get(row.id)!;
    assert.deepEqual(
      [row.type, JSON.parse(row.payload), row.dedup_id, (row.received_at as Date).getTime(), row.acked],
      [was.type, was.payload, was.dedupId, was.receivedAt, was.acked],
      `event ${was.payload.name} unchanged`,
    );
  }
  // The schema as 007 and 008 leave it: 008 replaced 007's registrations of flushes by locks.
  const [inflight] = await db`select to_regclass('event_inflight') is null as gone`;
  assert.equal(inflight!.gone, true, 'event_inflight is dropped');
  const columns = await db`
    select table_name::text, column_name::text from information_schema.columns
    where table_schema = 'public' and table_name in ('events', 'webhook_endpoints') and column_name in ('xid', 'cursor_xid', 'seq', 'cursor_seq')
    order by 1, 2`;
  assert.deepEqual(
    columns.map((row) => `${row.table_name}.${row.column_name}`),
    ['events.seq', 'webhook_endpoints.cursor_seq'],
    'xid columns replaced by seq',
  );
  const keysOf = await db`
    select c.conrelid::regclass::text as table_name, array_agg(a.attname::text order by k.n) as columns
    from pg_constraint c cross join unnest(c.conkey) with ordinality k(attnum, n)
    join pg_attribute a on a.attrelid = c.conrelid and a.attnum = k.attnum
    where c.contype = 'p' and c.conrelid in ('events'::regclass, 'webhook_endpoints'::regclass)
    group by 1 order by 1`;
  assert.deepEqual(
    keysOf.map((row) => [row.table_name, row.columns]),
    [
      ['events', ['org_id', 'id', 'received_at']],
      ['webhook_endpoints', ['org_id', 'id']],
    ],
  );

  // Through the API: each event as it was.
  for (const was of old.events.values()) {
    const got = await call(server.url, 'GET', `/v1/events/${was.id}`, { key: keys.get(was.orgId)! });
    assert.equal(got.status, 200, got.text);
    assert.deepEqual(
      [
        got.body.type,
        got.body.payload,
        got.body.dedup_id,
        Date.parse(got.body.received_at),
        got.body.acked_at !== null,
      ],
      [was.type, was.payload, was.dedupId, was.receivedAt, was.acked],
      `GET ${was.payload.name}`,
    );
  }
  // The inbox: each org's unacknowledged events in the old order, across pages; an old cursor reads from the start.
  const unacked = (orgId: string) => old.order.get(orgId)!.filter((id) => !old.events.get(id)!.acked);
  for (const orgId of old.orgIds)
    assert.deepEqual(await readInbox(server.url, keys.get(orgId)!, 4), unacked(orgId), `org ${orgId}: inbox order`);
  const [a, b] = old.orgIds as [string, string];
  const fromOldCursor = await call(server.url, 'GET', `/v1/inbox?limit=100&cursor=${old.oldInboxCursor}`, {
    key: keys.get(a)!,
  });
  assert.equal(fromOldCursor.status, 200, `an old cursor is accepted: ${fromOldCursor.text}`);
  assert.deepEqual(
    fromOldCursor.body.events.map((e: { id: string }) => e.id),
    unacked(a),
    'an old cursor reads from the start',
  );
  // Dedup ids still dedupe, per org.
  for (const { orgId, dedupId, eventId } of old.dedupIds) {
    const again = await call(server.url, 'POST', '/v1/events', {
      key: keys.get(orgId)!,
      body: { type: 'old.again', payload: {}, dedup_id: dedupId },
    });
    assert.equal(again.status, 200, again.text);
    assert.deepEqual(
      [again.body.status, again.body.id, Date.parse(again.body.received_at)],
      ['duplicate', eventId, old.events.get(eventId)!.receivedAt],
      `dedup_id ${dedupId}`,
    );
  }

  // New events follow the old ones: they draw seq from event_order, which starts above every
  // number given to an old event (of any org), in the order they were sent; and after them in the inbox.
  const highestOld = Math.max(...old.orgIds.map((orgId) => old.order.get(orgId)!.length));
  const newEvents = new Map<string, string[]>([
    [a, []],
    [b, []],
  ]);
  for (const [orgId, count] of [
    [a, 3],
    [b, 1],
  ] as const) {
    for (let i = 0; i < count; i++) {
      const sent = await call(server.url, 'POST', '/v1/events', {
        key: keys.get(orgId)!,
        body: { type: 'new.event', payload: { i } },
      });
      assert.equal(sent.status, 202, sent.text);
      newEvents.get(orgId)!.push(sent.body.id);
    }
  }
  for (const [orgId, ids] of newEvents) {
    const seqs =
      await db`select id::text, seq::int from events where org_id = ${orgId} and id = any(${ids}::uuid[]) order by seq`;
    assert.deepEqual(
      seqs.map((row) => row.id),
      ids,
      `org ${orgId}: new events numbered in the order they were sent`,
    );
    assert.ok(
      seqs.every((row) => row.seq > highestOld),
      `org ${orgId}: new events numbered after every old one: ${JSON.stringify(seqs)}`,
    );
    assert.deepEqual(
      await readInbox(server.url, keys.get(orgId)!, 5),
      [...unacked(orgId), ...ids],
      `org ${orgId}: inbox with new events`,
    );
  }
  // An old event acknowledged after the upgrade leaves the inbox.
  const firstA = unacked(a)[0]!;
  const acked = await call(server.url, 'POST', '/v1/ack', { key: keys.get(a)!, body: { ids: [firstA] } });
  assert.deepEqual([acked.status, acked.body.acked], [200, 1], acked.text);
  assert.deepEqual(await readInbox(server.url, keys.get(a)!, 100), [...unacked(a).slice(1), ...newEvents.get(a)!]);

  // Webhooks: each endpoint gets what followed its old cursor, and the new events, once each.
  for (const [i, endpoint] of old.endpoints.entries()) {
    const expected = [...endpoint.owed, ...newEvents.get(endpoint.orgId)!];
    await waitFor(
      `endpoint ${i}: every event after its old cursor`,
      () => expected.every((id) => hooks[i]!.ids().has(id)),
      30_000,
      50,
    );
  }
  await new Promise((resolve) => setTimeout(resolve, 1000)); // time for a repeat, or an early event, to show up
  for (const [i, endpoint] of old.endpoints.entries()) {
    assertExactlyOnce(hooks[i]!, [...endpoint.owed, ...newEvents.get(endpoint.orgId)!], `endpoint ${i}`);
  }
  // The old delivery history is still listed.
  const history = await call(
    server.url,
    'GET',
    `/v1/webhooks/${old.delivered.endpointId}/deliveries?event_id=${old.delivered.eventId}`,
    { key: keys.get(a)! },
  );
  assert.equal(history.status, 200, history.text);
  assert.deepEqual(
    history.body.deliveries.map((d: any) => [d.status, d.attempts.map((t: any) => [t.response_status, t.latency_ms])]),
    [['succeeded', [[200, 5]]]],
  );
}

let pg: TestPostgres | undefined;
const receivers: Receiver[] = [];

/** One receiver per old endpoint (org A's, org B's). */
async function twoReceivers(): Promise<Receiver[]> {
  const started = [await Receiver.start(), await Receiver.start()];
  receivers.push(...started);
  return started;
}

/** Runs `check` against a server started on `databaseUrl`; its output joins a failure's message. */
async function withServer(databaseUrl: string, check: (server: TestServer) => Promise<void>): Promise<void> {
  const server = await TestServer.start({ databaseUrl, workers: 1, env: LOCAL });
  try {
    await check(server);
  } catch (error) {
    await server.stop();
    (error as Error).message += `\n--- server output\n${server.output}`;
    throw error;
  }
  assert.equal(await server.stop(), 0, `a clean stop: ${server.output}`);
}

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  await pg?.stop();
});

test('from 006 on plain Postgres: every event kept and numbered in the old order, inbox and webhook streams continue where they were', async () => {
  const databaseUrl = await pg!.createDatabase('upgrade_plain');
  const db = pg!.connect('upgrade_plain');
  try {
    const hooks = await twoReceivers();
    const old = await writeOldDataset(db, [hooks[0]!.url, hooks[1]!.url]);
    await withServer(databaseUrl, (server) => assertUpgraded(server, db, old, hooks));
  } finally {
    await db.end({ timeout: 1 });
  }
});

test('from 006 on a plain-Postgres install that became a Citus coordinator: the tables are distributed, the rows moved to the shards, and all of the above holds', async (t) => {
  const unavailable = citusUnavailable(); // throws under CI=true: there, a missing Citus fails
  if (unavailable) {
    t.skip(`Citus unavailable: ${unavailable}`);
    return;
  }
  const citus = await TestCitus.start();
  const db = openDatabase(citus.url, { max: 4, name: 'triggers-test' });
  try {
    const hooks = await twoReceivers();
    // cluster.sh created the extension in this database; the old server knew nothing of it.
    const old = await writeOldDataset(db, [hooks[0]!.url, hooks[1]!.url]);
    const tables = [...REFERENCE_TABLES, ...DISTRIBUTED_TABLES];
    // The coordinator's own storage of each table and events partition (Citus reads a distributed
    // table from its shards, so a count would not tell; the local heap's size does).
    const localBytes = () => db`
      select c.relname::text as name, pg_relation_size(c.oid)::int as bytes from pg_class c
      where c.relkind = 'r' and c.relnamespace = 'public'::regnamespace
        and (c.relname = any(${tables}::text[]) or c.oid in (select inhrelid from pg_inherits where inhparent = 'events'::regclass))
      order by 1`;
    const before = await localBytes();
    assert.ok(
      before.filter((row) => row.name.startsWith('events_') && row.bytes > 0).length >= 2,
      `old events in two local partitions: ${JSON.stringify(before)}`,
    );

    await withServer(citus.url, async (server) => {
      const kinds =
        await db`select table_name::text as name, citus_table_type as kind from citus_tables where table_name::text = any(${tables}::text[])`;
      assert.deepEqual(
        Object.fromEntries(kinds.map((row) => [row.name, row.kind])),
        Object.fromEntries([
          ...REFERENCE_TABLES.map((name) => [name, 'reference']),
          ...DISTRIBUTED_TABLES.map((name) => [name, 'distributed']),
        ]),
      );
      const after = await localBytes();
      assert.ok(after.length > tables.length, `the shells and partitions are still there: ${JSON.stringify(after)}`);
      assert.deepEqual(
        after.filter((row) => row.bytes > 0),
        [],
        "the coordinator's local copies are emptied",
      );
      await assertUpgraded(server, db, old, hooks);
    });
  } finally {
    await db.end({ timeout: 1 });
    await citus.destroy();
  }
});
