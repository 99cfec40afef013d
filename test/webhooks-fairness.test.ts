import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { Receiver, waitFor } from './webhooks-receiver.js';

/**
 * The delivery process's send slots are shared between orgs (src/delivery/slot-shares.ts): an
 * org whose endpoints all hang cannot take the slots another org's healthy endpoint needs. The
 * real server with a tiny process cap (DELIVERY_MAX_IN_FLIGHT=8), so that 50 hanging endpoints
 * are far more than the cap: first come, first served, org B's endpoint waited behind org A's
 * streams for their 10 s timeouts, several rounds of them.
 */

const TIMEOUT_MS = 10_000;
const STUCK_ENDPOINTS = 50;
const HEALTHY_EVENTS = 30;
// Far below one WEBHOOK_TIMEOUT_MS, and generous for a shared machine.
const PROMPT_MS = 6_000;

let pg: TestPostgres;
let server: TestServer;
const receivers: Receiver[] = [];

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('fairness'),
    workers: 1,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
      WEBHOOK_RETRY_SCHEDULE: '1h',
      DELIVERY_MAX_IN_FLIGHT: '8',
      SHUTDOWN_TIMEOUT_MS: '3000',
    },
  });
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  await server?.stop();
  await pg?.stop();
});

async function createWebhook(key: string, url: string): Promise<string> {
  const created = await call(server.url, 'POST', '/v1/webhooks', { key, body: { url } });
  assert.equal(created.status, 201, created.text);
  return created.body.id;
}

async function sendBatch(key: string, count: number): Promise<string[]> {
  const events = Array.from({ length: count }, (_, i) => ({ type: 'fair.event', payload: { i } }));
  const response = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(response.status, 200, response.text);
  return response.body.results.map((result: { id: string }) => result.id);
}

test(`${STUCK_ENDPOINTS} hanging endpoints of one org leave another org's healthy endpoint its share of the process's slots`, async () => {
  const hanging = await Receiver.start(() => ({ status: 200, hang: true }));
  const healthy = await Receiver.start(() => ({ status: 200 }));
  receivers.push(hanging, healthy);
  const orgA = await createOrgWithKey(server.url, { name: 'noisy' });
  const orgB = await createOrgWithKey(server.url, { name: 'quiet' });
  for (let i = 0; i < STUCK_ENDPOINTS; i++) await createWebhook(orgA.key, `${hanging.url}?n=${i}`);
  await createWebhook(orgB.key, healthy.url);

  await sendBatch(orgA.key, 3);
  // Org A alone holds what it may: its endpoints never answered, so an eighth of its share (half
  // the process, 4) with the fix, which is one send; all of the process (8) without.
  await waitFor('org A to hold slots with hanging sends', () => hanging.requests.length >= 1, 15_000);
  await new Promise((resolve) => setTimeout(resolve, 300));

  const started = Date.now();
  const ids = await sendBatch(orgB.key, HEALTHY_EVENTS);
  await waitFor(
    `org B's ${HEALTHY_EVENTS} events to arrive`,
    () => ids.every((id) => healthy.ids().has(id)),
    PROMPT_MS + 2 * TIMEOUT_MS,
  );
  const took = Date.now() - started;
  assert.ok(
    took < PROMPT_MS,
    `org B's events took ${took} ms to arrive (org A's sends time out after ${TIMEOUT_MS} ms)`,
  );
  assert.ok(
    hanging.requests.length <= 8,
    `org A never had more sends than the process cap (${hanging.requests.length})`,
  );
});
