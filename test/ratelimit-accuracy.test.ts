import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { assertAccurate, driveEvents, expectedAccepted, spreadCalls } from './helpers/rate-load.js';
import { TestServer } from './helpers/server.js';

/**
 * Rate-limit accuracy on one node without Redis, over 10 s of load each: the limits of
 * ratelimit.test.ts measured rather than checked once. A file of its own so that it runs beside
 * the others instead of after them.
 */

const EVENT = { type: 'rate.test', payload: { ok: true } };

describe('rate-limit accuracy (single node, leases over cluster IPC)', () => {
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

  test('accuracy with load spread over both workers: within 10% over 10 s', async () => {
    const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 100, burst: 100 });
    const result = await driveEvents([{ url: server.url, connections: 16 }], key, 10_000);
    assertAccurate(result, 100, 100, 'spread');
  });

  test('accuracy with all load on one worker (one connection): within 10% over 10 s', async () => {
    const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 20, burst: 20 });
    const result = await driveEvents([{ url: server.url, connections: 1 }], key, 10_000);
    assertAccurate(result, 20, 20, 'one worker');
  });

  test('a 1/s limit behaves: about one event a second, tokens not stranded in idle workers', async () => {
    const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 1, burst: 1 });
    const result = await driveEvents([{ url: server.url, connections: 8 }], key, 10_000);
    const expected = expectedAccepted(1, 1, result.elapsedMs);
    console.log(
      `# 1/s: accepted ${result.accepted}, limited ${result.limited} in ${result.elapsedMs.toFixed(0)} ms; expected ${expected.toFixed(1)}`,
    );
    assert.deepEqual(result.other, {});
    // Each worker may admit one event on credit while both race for the same token (over), or
    // hold one unspent when the window closes, with up to one more not yet leased (under).
    assert.ok(
      result.accepted >= expected - 3 && result.accepted <= expected + 2,
      `accepted ${result.accepted}, expected ${expected.toFixed(1)}`,
    );

    // After the load (and the repayment of any token admitted on credit), one event every 1.5 s
    // is admitted on whichever worker it lands: no token sits unused in the other worker's lease.
    // Each worker may end the load one token in debt: 3 s refill that and the next token exactly,
    // so wait 5 s (a busy machine's lease round trips are late); the 1.5 s rounds are the test.
    await new Promise((resolve) => setTimeout(resolve, 5000));
    for (let i = 0; i < 4; i++) {
      const [one] = await spreadCalls(server.url, 1, 'POST', '/v1/events', key, EVENT);
      assert.equal(one!.status, 202, `one event after 1.5 s is admitted (round ${i})`);
      await new Promise((resolve) => setTimeout(resolve, 1500));
    }
  });
});
