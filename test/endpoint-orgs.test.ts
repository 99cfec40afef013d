import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { EndpointOrgs } from '../src/delivery/endpoint-orgs.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { InProcessServer } from './helpers/in-process.js';
import { TestPostgres } from './helpers/postgres.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * Which orgs an HTTP worker wakes the delivery processes for (src/delivery/endpoint-orgs.ts).
 * Endpoints change through the real API of one server; what another process learns is watched
 * through a second EndpointOrgs over the same database, as another worker or node would hold it.
 * That wake-ups still reach delivery, across nodes, right after an endpoint was created elsewhere,
 * is webhooks-nodes.test.ts's business (with the delivery poll at 60 s).
 */

let pg: TestPostgres;
let server: InProcessServer;
let db: Sql;

before(async () => {
  pg = await TestPostgres.shared();
  const url = await pg.createDatabase('endpoint_orgs');
  server = await InProcessServer.start({
    databaseUrl: url,
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true' },
  });
  db = pg.connect('endpoint_orgs');
});

after(async () => {
  await db?.end({ timeout: 1 });
  await server?.stop();
  await pg?.stop();
});

async function createEndpoint(key: string): Promise<string> {
  const created = await call(server.url, 'POST', '/v1/webhooks', { key, body: { url: 'http://127.0.0.1:9/hook' } });
  assert.equal(created.status, 201, created.text);
  return created.body.id;
}

async function watching(reloadMs?: number): Promise<{ orgs: EndpointOrgs; gained: string[] }> {
  const gained: string[] = [];
  const orgs = new EndpointOrgs(db, (orgId) => gained.push(orgId), reloadMs);
  await orgs.start();
  return { orgs, gained };
}

test('an org without an enabled endpoint is not woken; an org with one is', async () => {
  const firehose = await createOrgWithKey(server.url);
  const hooked = await createOrgWithKey(server.url);
  await createEndpoint(hooked.key);
  const { orgs, gained } = await watching();
  try {
    assert.equal(orgs.mayHaveEndpoints(firehose.orgId), false);
    assert.equal(orgs.mayHaveEndpoints(hooked.orgId), true);
    assert.deepEqual(gained, [], 'nothing is gained at the first load: until then every org was woken');
  } finally {
    await orgs.stop();
  }
});

test('an endpoint created by another process is learned and its org woken once; disabling and deleting are learned too', async () => {
  const { key, orgId } = await createOrgWithKey(server.url);
  // No reload within the test: every change below is learned from the API's NOTIFY.
  const { orgs, gained } = await watching(600_000);
  try {
    assert.equal(orgs.mayHaveEndpoints(orgId), false);
    const id = await createEndpoint(key);
    // The wake-up when learned covers events this process committed while it did not know.
    await waitFor('the new endpoint to be learned', () => orgs.mayHaveEndpoints(orgId), 10_000, 5);
    await waitFor('the org to be woken when learned', () => gained.includes(orgId), 10_000, 5);
    assert.equal(gained.filter((org) => org === orgId).length, 1, 'woken once');

    const disabled = await call(server.url, 'PATCH', `/v1/webhooks/${id}`, { key, body: { enabled: false } });
    assert.equal(disabled.status, 200, disabled.text);
    await waitFor('the disabled endpoint to be learned', () => !orgs.mayHaveEndpoints(orgId), 10_000, 5);

    const enabled = await call(server.url, 'PATCH', `/v1/webhooks/${id}`, { key, body: { enabled: true } });
    assert.equal(enabled.status, 200, enabled.text);
    await waitFor('the re-enabled endpoint to be learned', () => orgs.mayHaveEndpoints(orgId), 10_000, 5);
    // At least once more. A NOTIFY may arrive after a reload already showed its change (seen in CI:
    // the disable's, read late, counted the org as changed again; a reload removed it; the enable's
    // NOTIFY added it once more: 3). An extra wake-up costs one message; a missing one would delay
    // events, which is what this checks.
    assert.ok(gained.filter((org) => org === orgId).length >= 2, 'woken again when it gained an endpoint again');

    const deleted = await call(server.url, 'DELETE', `/v1/webhooks/${id}`, { key });
    assert.equal(deleted.status, 204, deleted.text);
    await waitFor('the deleted endpoint to be learned', () => !orgs.mayHaveEndpoints(orgId), 10_000, 5);
  } finally {
    await orgs.stop();
  }
});

test('a gain whose NOTIFY never came is found by the next reload, and woken then', async () => {
  const { key, orgId } = await createOrgWithKey(server.url);
  const { orgs, gained } = await watching(200);
  try {
    assert.equal(orgs.mayHaveEndpoints(orgId), false);
    // An endpoint written without the API's NOTIFY, as if the listening connection had been down.
    const id = await createEndpoint(key);
    await db`update webhook_endpoints set enabled = false where id = ${id}`;
    await waitFor('the disabled endpoint to be learned', () => !orgs.mayHaveEndpoints(orgId), 10_000, 5);
    gained.length = 0;
    await db`update webhook_endpoints set enabled = true where id = ${id}`;
    await waitFor('the reload to find the endpoint', () => orgs.mayHaveEndpoints(orgId), 10_000, 20);
    assert.deepEqual(gained, [orgId]);
  } finally {
    await orgs.stop();
  }
});
