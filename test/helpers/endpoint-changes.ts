import assert from 'node:assert/strict';
import type postgres from 'postgres';
import { call } from './api.js';
import type { TestServer } from './server.js';
import { webhookId, type webhookKit } from './webhook-kit.js';
import { expectedSignature, waitFor, type Receiver } from '../webhooks-receiver.js';

/**
 * API.md §5 "Changes to an endpoint … apply, on every process and node": the checks shared by
 * test/webhook-endpoint-changes.test.ts (plain Postgres, one and two nodes) and test/citus.test.ts.
 */

type Kit = ReturnType<typeof webhookKit>;
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Which of `nodes` runs the delivery process holding the endpoint's lease (waits for one). */
export async function leaseHolder(
  db: postgres.Sql,
  endpointId: string,
  nodes: TestServer[],
  workersOf: (pid: number) => number[],
): Promise<number> {
  return waitFor(
    'a delivery process to hold the endpoint',
    async () => {
      const [row] = await db`
      select w.pid from delivery_leases l join delivery_workers w on w.id = l.owner
      where l.endpoint_id = ${endpointId} and l.expires_at > now()`;
      if (!row) return null;
      const index = nodes.findIndex((node) => workersOf(node.proc.pid!).includes(row.pid as number));
      return index === -1 ? null : index + 1;
    },
    20_000,
    50,
  ).then((n) => n - 1);
}

/**
 * A steady stream of events is delivered while the secret is rotated through `rotateAt`; then 50
 * events are sent at once. Every delivery that started after the rotation's answer (all of the
 * 50, and any of the stream's that started after it) must carry a signature valid with the new
 * secret. Returns how many deliveries were checked.
 */
export async function rotationUnderLoad(
  kit: Kit,
  options: {
    key: string;
    endpointId: string;
    hook: Receiver;
    oldSecret: string;
    sendAt: string[];
    rotateAt: string;
  },
): Promise<{ checked: number; answeredInMs: number }> {
  const { key, endpointId, hook, sendAt } = options;
  const steady: string[] = [];
  let streaming = true;
  const stream = (async () => {
    for (let i = 0; streaming; i++) {
      steady.push((await kit.send(key, sendAt[i % sendAt.length])).id);
      await sleep(5);
    }
  })();
  await waitFor('the steady stream to be delivered', () => hook.requests.length >= 10, 20_000, 10);
  const askedAt = Date.now();
  const rotated = await call(options.rotateAt, 'POST', `/v1/webhooks/${endpointId}/rotate-secret`, { key });
  const answeredAt = Date.now();
  assert.equal(rotated.status, 200, rotated.text);
  const secret = rotated.body.secret as string;
  const afterIds = (
    await Promise.all(Array.from({ length: 50 }, (_, i) => kit.send(key, sendAt[i % sendAt.length])))
  ).map((sent) => sent.id);
  await sleep(200);
  streaming = false;
  await stream;
  const all = [...steady, ...afterIds];
  await waitFor('every event delivered', () => all.every((id) => hook.ids().has(id)), 30_000, 50);

  // When each attempt started, as the server recorded it (the same clock as Date.now() here).
  const deliveries = await kit.settledDeliveries(endpointId, key, all, options.rotateAt);
  const startedAt = new Map<string, number>();
  for (const delivery of deliveries)
    for (const attempt of delivery.attempts) {
      startedAt.set(delivery.event_id, Math.min(startedAt.get(delivery.event_id) ?? Infinity, Date.parse(attempt.at)));
    }
  const after = new Set(afterIds);
  let checked = 0;
  const oldOnly: string[] = [];
  for (const request of hook.requests) {
    const id = webhookId(request);
    if (!after.has(id) && !(startedAt.get(id)! > answeredAt)) continue;
    checked++;
    const timestamp = String(request.headers['webhook-timestamp']);
    const signatures = String(request.headers['webhook-signature']).split(' ');
    if (!signatures.includes(expectedSignature(secret, id, timestamp, request.body))) {
      assert.ok(
        signatures.includes(expectedSignature(options.oldSecret, id, timestamp, request.body)),
        'signed with some other key',
      );
      oldOnly.push(`${id} (started ${startedAt.get(id)! - answeredAt} ms after the answer)`);
    }
  }
  assert.deepEqual(
    oldOnly,
    [],
    `${oldOnly.length} of ${checked} deliveries started after the rotation's answer carried only the old signature`,
  );
  assert.ok(checked >= 50);
  return { checked, answeredInMs: answeredAt - askedAt };
}

/**
 * PATCH (url), disable and delete through `changeAt`; events sent more than 1 s after each answer
 * (through every node in `sendAt`) must see the change: the new receiver gets them, or nobody does.
 */
export async function changesApplyWithinOneSecond(
  kit: Kit,
  options: {
    key: string;
    endpointId: string;
    hook: Receiver;
    sendAt: string[];
    changeAt: string;
  },
): Promise<void> {
  const { key, endpointId, hook, sendAt, changeAt } = options;
  const sendRound = async () => {
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push((await kit.send(key, sendAt[i % sendAt.length])).id);
    return ids;
  };
  const moved = await kit.receiver();
  const patched = await call(changeAt, 'PATCH', `/v1/webhooks/${endpointId}`, { key, body: { url: moved.url } });
  assert.equal(patched.status, 200, patched.text);
  await sleep(1_100);
  const toMoved = await sendRound();
  await waitFor(
    'the events sent after the PATCH at the new URL',
    () => toMoved.every((id) => moved.ids().has(id)),
    20_000,
    20,
  );
  const atOld = toMoved.filter((id) => hook.ids().has(id));
  assert.deepEqual(atOld, [], 'sent more than 1 s after the PATCH, yet delivered to the old URL');

  const disabled = await call(changeAt, 'PATCH', `/v1/webhooks/${endpointId}`, { key, body: { enabled: false } });
  assert.equal(disabled.status, 200, disabled.text);
  await sleep(1_100);
  const whileDisabled = await sendRound();
  const enabled = await call(changeAt, 'PATCH', `/v1/webhooks/${endpointId}`, { key, body: { enabled: true } });
  assert.equal(enabled.status, 200, enabled.text);
  await sleep(1_100);
  const afterEnable = await sendRound();
  await waitFor('the events sent after re-enabling', () => afterEnable.every((id) => moved.ids().has(id)), 20_000, 20);
  assert.deepEqual(
    whileDisabled.filter((id) => moved.ids().has(id) || hook.ids().has(id)),
    [],
    'delivered although the endpoint was disabled',
  );

  const deleted = await call(changeAt, 'DELETE', `/v1/webhooks/${endpointId}`, { key });
  assert.equal(deleted.status, 204, deleted.text);
  await sleep(1_100);
  const seen = moved.requests.length;
  await sendRound();
  await sleep(2_500);
  assert.equal(moved.requests.length, seen, 'delivered after the endpoint was deleted');
}
