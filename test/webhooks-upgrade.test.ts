import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateSecret } from '../src/delivery/signature.js';
import { uuidv7 } from '../src/ids.js';
import { call } from './helpers/api.js';
import { createKeyFor, insertOldEvents, oldSchema } from './helpers/old-schema.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { assertExactlyOnce } from './helpers/webhook-kit.js';
import { Receiver, waitFor } from './webhooks-receiver.js';

/**
 * Upgrading a database whose webhooks ran on an older fan-out: the per-endpoint cursors of 003,
 * then the global cursor of 004/005. The server started on it must send every delivery still
 * owed, once, and keep the history. Moved out of webhooks-fanout.test.ts into the extended set
 * (test/run.ts EXTENDED, with the other upgrade tests): two more server starts on old schemas.
 */

const LOCAL = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' };

let pg: TestPostgres;
const receivers: Receiver[] = [];
const extraServers: TestServer[] = [];

before(async () => {
  pg = await TestPostgres.start();
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  for (const extra of extraServers) await extra.killAll();
  await pg?.stop();
});

async function receiver(): Promise<Receiver> {
  const started = await Receiver.start();
  receivers.push(started);
  return started;
}

test('upgrading from per-endpoint cursors (003) loses no pending event and repeats none', async () => {
  const databaseUrl = await pg.createDatabase('upgrade');
  const old = pg.connect('upgrade');
  const hook = await receiver();
  const orgId = uuidv7(Date.now());
  const endpointId = uuidv7(Date.now());
  const insertEvents = (count: number) => insertOldEvents(old, orgId, count);
  let owed: Array<Record<string, string>>;
  try {
    // The schema as 003 left it, as if an older version had run.
    await oldSchema(old, ['001_core.sql', '002_inbox.sql', '003_webhooks.sql'], [orgId]);
    await insertEvents(3); // before the endpoint: never its
    await old`
      insert into webhook_endpoints (id, org_id, url, secret, cursor_xid, deliver_from)
      values (${endpointId}, ${orgId}, ${hook.url}, ${generateSecret()}, pg_snapshot_xmin(pg_current_snapshot()), clock_timestamp())`;
    owed = [...(await insertEvents(2)), ...(await insertEvents(2))];
    // The old fan-out had handled the first two: a delivery row exists, its cursor is past them.
    await old`
      insert into webhook_deliveries (id, endpoint_id, event_id, event_received_at, status)
      select gen_random_uuid(), ${endpointId}, id, received_at, 'succeeded' from events where id = any(${[owed[0]!.id, owed[1]!.id]}::uuid[])`;
    await old`update webhook_endpoints set cursor_xid = ${owed[1]!.cursor_xid}::xid8, cursor_id = ${owed
      .slice(0, 2)
      .map((e) => e.id)
      .sort()[1]!} where id = ${endpointId}`;
  } finally {
    await old.end({ timeout: 1 });
  }

  const upgraded = await TestServer.start({ databaseUrl, workers: 1, env: LOCAL });
  extraServers.push(upgraded);
  const pending = owed.slice(2).map((e) => e.id);
  await waitFor(
    'the events still pending before the upgrade',
    () => pending.every((id) => hook.ids().has(id)),
    60_000,
    100,
  );
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assertExactlyOnce(hook, pending, 'upgraded endpoint');
  assert.equal(await upgraded.stop(), 0, upgraded.output);
});

test('upgrading from the global fan-out cursor (004/005): queued and failed deliveries are sent, events past the cursor are delivered, nothing is repeated, history is kept', async () => {
  const databaseUrl = await pg.createDatabase('upgrade_global');
  const old = pg.connect('upgrade_global');
  const hook = await receiver();
  const orgId = uuidv7(Date.now());
  const endpointId = uuidv7(Date.now());
  const insertEvents = (count: number) => insertOldEvents(old, orgId, count);
  let succeeded: string, failed: string, queued: string, pastCursor: Array<Record<string, string>>;
  try {
    // The schema as 005 left it, as if the previous version had run.
    await oldSchema(
      old,
      ['001_core.sql', '002_inbox.sql', '003_webhooks.sql', '004_fanout.sql', '005_payload_json.sql'],
      [orgId],
    );
    await old`insert into webhook_endpoints (id, org_id, url, secret, deliver_from) values (${endpointId}, ${orgId}, ${hook.url}, ${generateSecret()}, now() - interval '1 minute')`;
    const fannedOut = await insertEvents(3);
    [succeeded, failed, queued] = fannedOut.map((e) => e.id!) as [string, string, string];
    // The old fan-out turned those three into rows and moved the global cursor past them.
    const rows = await old`
      insert into webhook_deliveries (id, endpoint_id, event_id, event_received_at, status, retry_index, next_attempt_at)
      select gen_random_uuid(), ${endpointId}, id, received_at,
        case id when ${succeeded}::uuid then 'succeeded' when ${failed}::uuid then 'failed' else 'pending' end,
        case id when ${failed}::uuid then 1 else 0 end,
        case id when ${succeeded}::uuid then null else now() - interval '1 second' end
      from events where id = any(${fannedOut.map((e) => e.id!)}::uuid[])
      returning id, event_id::text`;
    const succeededRow = rows.find((row) => row.event_id === succeeded)!;
    await old`insert into webhook_attempts (delivery_id, attempted_at, response_status, latency_ms) values (${succeededRow.id}, now(), 204, 7)`;
    const last = [...fannedOut]
      .sort((a, b) =>
        BigInt(a.cursor_xid!) < BigInt(b.cursor_xid!)
          ? -1
          : a.cursor_xid === b.cursor_xid
            ? a.id! < b.id!
              ? -1
              : 1
            : 1,
      )
      .pop()!;
    await old`update webhook_fanout set cursor_xid = ${last.cursor_xid!}::xid8, cursor_id = ${last.id!}`;
    pastCursor = await insertEvents(2);
  } finally {
    await old.end({ timeout: 1 });
  }

  const upgraded = await TestServer.start({ databaseUrl, workers: 1, env: LOCAL });
  extraServers.push(upgraded);
  const owed = [failed!, queued!, ...pastCursor!.map((e) => e.id!)];
  await waitFor(
    'the failed, queued and not yet fanned-out events',
    () => owed.every((id) => hook.ids().has(id)),
    60_000,
    100,
  );
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assertExactlyOnce(hook, owed, 'upgraded endpoint');

  const { key } = await createKeyFor(upgraded.url, orgId);
  const history = await call(upgraded.url, 'GET', `/v1/webhooks/${endpointId}/deliveries?event_id=${succeeded!}`, {
    key,
  });
  assert.equal(history.status, 200, history.text);
  assert.equal(history.body.deliveries.length, 1);
  assert.equal(history.body.deliveries[0].status, 'succeeded');
  assert.deepEqual(
    history.body.deliveries[0].attempts.map((a: any) => [a.response_status, a.latency_ms]),
    [[204, 7]],
  );
  assert.equal(await upgraded.stop(), 0, upgraded.output);
});
