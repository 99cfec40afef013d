import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey } from './helpers/api.js';
import { workerPids } from './helpers/processes.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { Receiver, waitFor, type Behaviour } from './webhooks-receiver.js';

/**
 * Webhook delivery across a second node and across a SIGKILL of the delivery worker: at least once,
 * never twice by two nodes, nothing lost to a crash. In the extended set (test/run.ts) with the other
 * multi-node and fault files; the contract's retries, timeouts, disabling and recover stay in
 * webhooks-delivery.test.ts.
 */

let pg: TestPostgres;
const receivers: Receiver[] = [];
const servers: TestServer[] = [];

const LOCAL = { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' };

before(async () => {
  pg = await TestPostgres.shared();
});

after(async () => {
  for (const receiver of receivers) await receiver.close();
  for (const extra of servers) await extra.killAll();
  await pg?.stop();
});

async function receiver(behaviour?: Behaviour): Promise<Receiver> {
  const started = await Receiver.start(behaviour);
  receivers.push(started);
  return started;
}

async function createWebhook(url: string, key: string, body: Record<string, unknown>, at: string) {
  const response = await call(at, 'POST', '/v1/webhooks', { key, body: { url, ...body } });
  assert.equal(response.status, 201, response.text);
  return response.body;
}

async function sendBatch(key: string, count: number, at: string): Promise<string[]> {
  const events = Array.from({ length: count }, (_, i) => ({ type: 'batch.event', payload: { i } }));
  const response = await call(at, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(response.status, 200, response.text);
  assert.equal(response.body.accepted, count);
  return response.body.results.map((r: any) => r.id);
}

test('two nodes on one database share the work without double-sending', async () => {
  const databaseUrl = await pg.createDatabase('two_nodes');
  const nodeA = await TestServer.start({ databaseUrl, workers: 1, env: LOCAL });
  servers.push(nodeA);
  const nodeB = await TestServer.start({ databaseUrl, workers: 1, env: LOCAL });
  servers.push(nodeB);
  const { key } = await createOrgWithKey(nodeA.url);
  const hook = await receiver(() => ({ status: 200, delayMs: 5 }));
  await createWebhook(hook.url, key, {}, nodeA.url);
  const ids = [...(await sendBatch(key, 150, nodeA.url)), ...(await sendBatch(key, 150, nodeB.url))];
  await waitFor('every event delivered', () => ids.every((id) => hook.ids().has(id)), 30_000);
  await new Promise((resolve) => setTimeout(resolve, 1000));
  assert.equal(hook.requests.length, ids.length, 'each event sent once');
  assert.equal(await nodeA.stop(), 0, nodeA.output);
  assert.equal(await nodeB.stop(), 0, nodeB.output);
});

test('SIGKILL of the delivery worker mid-stream loses nothing: every event arrives after the restart', async () => {
  const crashy = await TestServer.start({
    databaseUrl: await pg.createDatabase('crash'),
    workers: 1,
    env: { ...LOCAL, WEBHOOK_TIMEOUT_MS: '2000', WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms,200ms,200ms' },
  });
  servers.push(crashy);
  const at = crashy.url;
  const { key } = await createOrgWithKey(at);
  // A receiver slow enough that the kill lands while deliveries are in flight.
  const hook = await receiver(() => ({ status: 200, delayMs: 20 }));
  await createWebhook(hook.url, key, {}, at);
  const ids = await sendBatch(key, 300, at);
  await waitFor('deliveries to be under way', () => hook.ids().size >= 10, 20_000);

  const [pid] = workerPids(crashy.proc.pid!, 'delivery');
  assert.ok(pid, 'found the delivery worker');
  process.kill(pid, 'SIGKILL');
  // Events keep arriving while the worker is down.
  const later = await sendBatch(key, 100, at);
  const [replacement] = await waitFor(
    'a replacement delivery worker',
    () => {
      const pids = workerPids(crashy.proc.pid!, 'delivery').filter((p) => p !== pid);
      return pids.length > 0 ? pids : null;
    },
    20_000,
  );
  assert.notEqual(replacement, pid);

  const all = [...ids, ...later];
  await waitFor(
    'every event to be delivered after the crash',
    () => all.every((id) => hook.ids().has(id)),
    60_000,
    200,
  );
  assert.ok(hook.ids().size >= all.length);
  if (process.env.WEBHOOK_TEST_VERBOSE)
    console.log(`crash test: ${hook.requests.length} requests for ${all.length} events`);
  // Duplicates are allowed, but a re-send carries the same webhook-id and a valid body.
  for (const request of hook.requests) assert.equal(JSON.parse(request.body).id, request.headers['webhook-id']);
  assert.equal(await crashy.stop(), 0, crashy.output);
});
