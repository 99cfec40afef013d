import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { hash } from '@node-rs/argon2';
import { generateApiKey } from '../src/auth/keys.js';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey, sendEvent, keySecret } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

let pg: TestPostgres;
let server: TestServer;
let base: string;

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({ databaseUrl: await pg.createDatabase('auth'), workers: 2 });
  base = server.url;
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

const event = { type: 'auth.check', payload: {} };

/** Sends `count` requests on fresh connections, so both workers (SO_REUSEPORT) see the key. */
async function statuses(key: string, count: number): Promise<number[]> {
  return Promise.all(
    Array.from({ length: count }, () =>
      call(base, 'POST', '/v1/events', { key, body: event, headers: { connection: 'close' } }).then((r) => r.status),
    ),
  );
}

test('a revoked key stops working on every worker within 2 s', async () => {
  const { key, keyId } = await createOrgWithKey(base);
  // Warm both workers' caches with the key.
  assert.deepEqual(new Set(await statuses(key, 20)), new Set([202]));

  const revoked = await call(base, 'DELETE', `/v1/admin/keys/${keyId}`, { admin: true });
  assert.equal(revoked.status, 200);
  assert.ok(revoked.body.revoked_at);

  const started = Date.now();
  let elapsed = -1;
  while (Date.now() - started < 5000) {
    const seen = await statuses(key, 10);
    if (seen.every((status) => status === 401)) {
      elapsed = Date.now() - started;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  assert.ok(elapsed >= 0, 'revoked key still accepted after 5 s');
  assert.ok(elapsed <= 2000, `revocation took ${elapsed} ms (contract: 2 s)`);
  // And it stays revoked.
  assert.deepEqual(new Set(await statuses(key, 10)), new Set([401]));
});

test('a key created after a failed look-up of its kid works at once', async () => {
  const { orgId } = await createOrgWithKey(base, { name: 'late keys' });
  const created = await call(base, 'POST', `/v1/admin/orgs/${orgId}/keys`, {
    admin: true,
    body: { scopes: ['events:write'], env: 'test' },
  });
  assert.equal(created.status, 201);
  assert.match(created.body.key, /^zt_test_[a-z0-9]{12}_[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(created.body.scopes, ['events:write']);
  assert.deepEqual(new Set(await statuses(created.body.key, 6)), new Set([202]));
  const listed = await call(base, 'GET', `/v1/admin/orgs/${orgId}/keys`, { admin: true });
  assert.equal(listed.status, 200);
  assert.equal(listed.body.keys.length, 2);
  for (const key of listed.body.keys) assert.equal(key.key, undefined, 'the secret is never listed');
  assert.ok(!listed.text.includes(keySecret(created.body.key)));
});

test('a flood of wrong keys is refused without taking the server down', async () => {
  const valid = await createOrgWithKey(base, { name: 'flood victim' });
  // A client in use has been verified before: warm both workers' caches with it.
  assert.deepEqual(new Set(await statuses(valid.key, 20)), new Set([202]));
  const [kidPrefix] = valid.key.match(/^zt_live_[a-z0-9]+_/)!;
  const wrongSecret = () => kidPrefix + randomBytes(32).toString('base64url');
  const unknownKid = () => `zt_live_${randomBytes(6).toString('hex')}_${randomBytes(32).toString('base64url')}`;

  // Unknown kids are rejected without hashing: even 400 at once never fill the hash queue (no 503).
  const unknown = await Promise.all(Array.from({ length: 400 }, () => sendEvent(base, unknownKid(), event)));
  assert.deepEqual(new Set(unknown.map((r) => r.status)), new Set([401]));

  // Wrong secrets for a real kid need a hash each; the bounded queue refuses the excess with 503
  // at once instead of queueing seconds of argon2 work. A valid (cached) client is still served.
  const flood = Promise.all(Array.from({ length: 400 }, () => sendEvent(base, wrongSecret(), event)));
  const during = await Promise.all(Array.from({ length: 20 }, () => sendEvent(base, valid.key, event)));
  const results = await flood;
  const seen = new Set(results.map((r) => r.status));
  for (const status of seen) assert.ok(status === 401 || status === 503, `unexpected ${status}`);
  assert.ok(
    results.some((r) => r.status === 503),
    'the hash queue never pushed back: hashing work is unbounded',
  );
  for (const r of results.filter((x) => x.status === 503)) {
    assert.equal(r.body.error.code, 'unavailable');
    assert.ok(r.headers.get('retry-after'));
  }
  assert.ok(
    during.every((r) => r.status === 202),
    `valid client failed during flood: ${during.map((r) => r.status)}`,
  );

  // A wrong key that was already hashed is remembered: replaying it costs no hash, so no 503.
  const replayed = wrongSecret();
  assert.equal((await sendEvent(base, replayed, event)).status, 401);
  const replays = await Promise.all(Array.from({ length: 200 }, () => sendEvent(base, replayed, event)));
  assert.ok(
    replays.every((r) => r.status === 401),
    'replayed wrong key was hashed again',
  );

  assert.equal((await call(base, 'GET', '/status')).status, 200);
});

test('admin API: token required, orgs created, read and patched with validation', async () => {
  assert.equal((await call(base, 'POST', '/v1/admin/orgs', { body: { name: 'x' } })).status, 401);
  assert.equal(
    (
      await call(base, 'POST', '/v1/admin/orgs', {
        body: { name: 'x' },
        headers: { authorization: 'Bearer wrong-token-wrong-token' },
      })
    ).status,
    401,
  );
  const bad = await call(base, 'POST', '/v1/admin/orgs', {
    admin: true,
    body: { name: '', rate_limit_per_sec: 0, extra: true },
  });
  assert.equal(bad.status, 422);
  assert.deepEqual(bad.body.error.details.map((d: { field: string }) => d.field).sort(), [
    'extra',
    'name',
    'rate_limit_per_sec',
  ]);
  const org = await call(base, 'POST', '/v1/admin/orgs', {
    admin: true,
    body: { name: 'acme', rate_limit_per_sec: 50, burst: 100 },
  });
  assert.equal(org.status, 201);
  assert.equal(org.body.rate_limit_per_sec, 50);
  const patched = await call(base, 'PATCH', `/v1/admin/orgs/${org.body.id}`, {
    admin: true,
    body: { rate_limit_per_sec: 75 },
  });
  assert.equal(patched.body.rate_limit_per_sec, 75);
  assert.equal(patched.body.burst, 100);
  assert.equal((await call(base, 'GET', `/v1/admin/orgs/${org.body.id}`, { admin: true })).body.rate_limit_per_sec, 75);
  assert.equal(
    (await call(base, 'GET', '/v1/admin/orgs/01a203d1-7def-7065-b4c2-4bb80fb395d2', { admin: true })).status,
    404,
  );
  assert.equal(
    (await call(base, 'DELETE', '/v1/admin/keys/01a203d1-7def-7065-b4c2-4bb80fb395d2', { admin: true })).status,
    404,
  );
});

test('a key works only with the env it was issued for, before and after it is cached', async () => {
  const { orgId, key: liveKey } = await createOrgWithKey(base, { name: 'envs' });
  const created = await call(base, 'POST', `/v1/admin/orgs/${orgId}/keys`, { admin: true, body: { env: 'test' } });
  assert.equal(created.status, 201);
  const testKey = created.body.key as string;
  assert.match(liveKey, /^zt_live_/);
  assert.match(testKey, /^zt_test_/);
  const asTest = liveKey.replace(/^zt_live_/, 'zt_test_');
  const asLive = testKey.replace(/^zt_test_/, 'zt_live_');

  // Never seen: the swapped env is refused like any bad key (one message for all).
  for (const wrong of [asTest, asLive]) {
    const refused = await sendEvent(base, wrong, event);
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error.message, 'Missing or invalid API key.');
  }
  // The real keys work on both workers, which now hold their records and verified digests ...
  assert.deepEqual(new Set(await statuses(liveKey, 10)), new Set([202]));
  assert.deepEqual(new Set(await statuses(testKey, 10)), new Set([202]));
  // ... and the swapped ones are still refused there, also the GET routes without a body.
  assert.deepEqual(new Set(await statuses(asTest, 10)), new Set([401]));
  assert.deepEqual(new Set(await statuses(asLive, 10)), new Set([401]));
  assert.equal((await call(base, 'GET', '/v1/inbox', { key: asTest })).status, 401);
  assert.equal((await call(base, 'GET', '/v1/inbox', { key: liveKey })).status, 200);
});

test('a key whose creation was never announced (a missed NOTIFY) works within the 2 s an unknown kid is remembered', async () => {
  const { orgId } = await createOrgWithKey(base, { name: 'missed notify' });
  const generated = generateApiKey('live');
  // Both workers look the kid up, find nothing and remember that.
  assert.deepEqual(new Set(await statuses(generated.key, 10)), new Set([401]));
  // The key appears as another node would create it, but without the NOTIFY.
  const db = pg.connect('auth');
  try {
    await db`
      insert into api_keys (id, org_id, kid, env, name, scopes, secret_hash)
      values (${randomUUID()}, ${orgId}, ${generated.kid}, 'live', 'silent', ${['events:write']}, ${await hash(generated.secret)})`;
  } finally {
    await db.end({ timeout: 1 });
  }
  const inserted = Date.now();
  let elapsed = -1;
  while (Date.now() - inserted < 10_000) {
    if ((await statuses(generated.key, 6)).every((status) => status === 202)) {
      elapsed = Date.now() - inserted;
      break;
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  assert.ok(elapsed >= 0, 'the new key was still refused after 10 s');
  // 2 s of negative cache; generous for a loaded machine, and below the 5 s it used to be.
  assert.ok(elapsed < 4_000, `the new key worked after ${elapsed} ms`);
});
