import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { Webhook } from 'standardwebhooks';
import type { Sql } from '../src/db/connect.js';
import { openDatabase } from '../src/db/connect.js';
import { resealStoredSecrets, type ResealReport } from '../src/secrets/reseal.js';
import {
  configureSecrets,
  endpointSecretContext,
  openSecret,
  sealedKeyId,
  sealSecret,
  secretsKeyId,
} from '../src/secrets/sealed.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { webhookKit, webhookId } from './helpers/webhook-kit.js';
import { waitFor, type Receiver, type ReceivedWebhook } from './webhooks-receiver.js';

/**
 * Secrets at rest (docs/SECRETS.md) against the real server, its delivery worker, a real receiver
 * and `npm run secrets:rotate`: one database through the life of an install, from no key, to key
 * A, to key B, to a wrong key and back. Each phase restarts the server with other keys.
 */

const ROTATE_SCRIPT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../scripts/secrets-rotate.js');
const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const KEY_C = randomBytes(32);
const b64 = (key: Buffer) => key.toString('base64');
const SERVER_ENV = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  // A failed attempt is retried soon, and often enough to outlast a restart of the server.
  WEBHOOK_RETRY_SCHEDULE: '500ms,2s,2s,2s,2s,2s,2s,2s,2s,2s',
  WEBHOOK_TIMEOUT_MS: '5000',
};

let pg: TestPostgres;
let databaseUrl: string;
let db: Sql;
let server: TestServer | null = null;
const kit = webhookKit(() => server!.url);

interface Endpoint {
  id: string;
  hook: Receiver;
  /** Secrets a delivery must verify with (newest first). */
  secrets: string[];
}
let orgId: string;
let apiKey: string;
let createdClear: Endpoint;
let createdSealed: Endpoint;

async function restart(keys: { current?: Buffer; previous?: Buffer[] }): Promise<TestServer> {
  await server?.stop();
  server = await TestServer.start({
    databaseUrl,
    workers: 1,
    env: { ...SERVER_ENV, ...keysEnv(keys) },
  });
  return server;
}

function keysEnv(keys: { current?: Buffer; previous?: Buffer[] }): Record<string, string> {
  return {
    SECRETS_KEY: keys.current ? b64(keys.current) : '',
    SECRETS_KEY_PREVIOUS: (keys.previous ?? []).map(b64).join(','),
  };
}

/** `npm run secrets:rotate` as an operator runs it, beside the running server. */
async function rotateScript(keys: { current?: Buffer; previous?: Buffer[] }): Promise<ResealReport> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [ROTATE_SCRIPT, '--batch', '1'],
      { env: { ...process.env, DATABASE_URL: databaseUrl, LOG_LEVEL: 'warn', ...keysEnv(keys) } },
      (error, stdout, stderr) => {
        if (error) reject(new Error(`secrets:rotate failed: ${error.message}\n${stdout}\n${stderr}`));
        else resolve(JSON.parse(stdout) as ResealReport);
      },
    );
  });
}

async function storedSecrets(): Promise<Array<{ id: string; secret: string; previous_secret: string | null }>> {
  return db`select id::text as id, secret, previous_secret from webhook_endpoints order by id`;
}

/** No stored value is a clear secret; each names `keyId`. */
async function assertAllSealedUnder(keyId: string): Promise<void> {
  const rows = await storedSecrets();
  assert.ok(rows.length > 0);
  for (const row of rows) {
    for (const stored of [row.secret, row.previous_secret]) {
      if (stored === null) continue;
      assert.doesNotMatch(stored, /whsec_/, `a clear secret is stored: endpoint ${row.id}`);
      assert.ok(stored.startsWith(`sealed:v1:${keyId}:`), `endpoint ${row.id}: ${stored.slice(0, 20)}…`);
    }
  }
}

function headersOf(request: ReceivedWebhook): Record<string, string> {
  return Object.fromEntries(Object.entries(request.headers).map(([name, value]) => [name, String(value)]));
}

/** Sends one event (both endpoints take every type) and checks each endpoint's delivery verifies with each of its secrets. */
async function assertDeliveriesVerify(endpoints: Endpoint[]): Promise<string> {
  const sent = await kit.send(apiKey);
  for (const endpoint of endpoints) {
    const delivered = await waitFor('the delivery', () =>
      endpoint.hook.requests.find((request) => webhookId(request) === sent.id),
    );
    for (const secret of endpoint.secrets) {
      assert.doesNotThrow(
        () => new Webhook(secret).verify(delivered.body, headersOf(delivered)),
        `endpoint ${endpoint.id}: does not verify with ${secret === endpoint.secrets[0] ? 'its secret' : 'its previous secret'}`,
      );
    }
  }
  return sent.id;
}

before(async () => {
  pg = await TestPostgres.shared();
  databaseUrl = await pg.createDatabase('secrets_at_rest');
  db = openDatabase(databaseUrl, { max: 2, name: 'triggers-test' });
});

after(async () => {
  configureSecrets({ current: null, previous: [] });
  await kit.closeReceivers();
  await server?.stop();
  await db?.end({ timeout: 1 });
  await pg?.stop();
});

test('without SECRETS_KEY, secrets are stored clear as before, and deliveries verify', async () => {
  await restart({});
  ({ orgId, key: apiKey } = await createOrgWithKey(server!.url));
  const hook = await kit.receiver();
  const created = await kit.createWebhook(apiKey, { url: hook.url });
  createdClear = { id: created.id, hook, secrets: [created.secret] };
  const [row] = await storedSecrets();
  assert.equal(row!.secret, created.secret);
  await assertDeliveriesVerify([createdClear]);
});

test('turning encryption on: clear rows keep delivering, the start says so, secrets:rotate seals them while serving', async () => {
  await restart({ current: KEY_A });
  assert.match(server!.output, /SECRETS_KEY is set but some webhook secrets or destination configs are stored clear/);
  await assertDeliveriesVerify([createdClear]);

  const report = await rotateScript({ current: KEY_A });
  assert.equal(report.key_id, secretsKeyId(KEY_A));
  assert.equal(report.rows_updated, 1, JSON.stringify(report));
  assert.deepEqual(report.failed, []);
  await assertAllSealedUnder(secretsKeyId(KEY_A));
  // The same clear secret under a new stored form: the delivery process reads it again, signatures unchanged.
  await assertDeliveriesVerify([createdClear]);

  const again = await rotateScript({ current: KEY_A });
  assert.equal(again.rows_updated, 0, 'a second run rewrote rows already under the current key');
});

test('with SECRETS_KEY, create and rotate-secret store only sealed values; deliveries verify with old and new during the overlap', async () => {
  const hook = await kit.receiver();
  const created = await kit.createWebhook(apiKey, { url: hook.url });
  createdSealed = { id: created.id, hook, secrets: [created.secret] };
  await assertAllSealedUnder(secretsKeyId(KEY_A));

  const rotated = await call(server!.url, 'POST', `/v1/webhooks/${created.id}/rotate-secret`, { key: apiKey });
  assert.equal(rotated.status, 200, rotated.text);
  assert.match(rotated.body.secret, /^whsec_/);
  createdSealed.secrets = [rotated.body.secret, created.secret];
  await assertAllSealedUnder(secretsKeyId(KEY_A));
  const [row] = await db`select secret, previous_secret from webhook_endpoints where id = ${created.id}`;
  assert.notEqual(row!.previous_secret, null);

  // Every delivery after the rotation's answer carries both signatures.
  await assertDeliveriesVerify([createdClear, createdSealed]);
  // GET never shows a secret, sealed or clear.
  const got = await call(server!.url, 'GET', `/v1/webhooks/${created.id}`, { key: apiKey });
  assert.equal(got.status, 200);
  assert.doesNotMatch(got.text, /whsec_|sealed:v1/);
});

test('key A to key B: restart with B (A as previous), secrets:rotate re-seals everything under B, deliveries keep verifying', async () => {
  await restart({ current: KEY_B, previous: [KEY_A] });
  assert.doesNotMatch(server!.output, /which neither SECRETS_KEY nor SECRETS_KEY_PREVIOUS holds/);
  await assertDeliveriesVerify([createdClear, createdSealed]);

  const report = await rotateScript({ current: KEY_B, previous: [KEY_A] });
  assert.equal(report.rows_updated, 2, JSON.stringify(report));
  assert.equal(report.values_resealed, 3, 'two secrets and one previous secret');
  assert.deepEqual(report.failed, []);
  await assertAllSealedUnder(secretsKeyId(KEY_B));
  await assertDeliveriesVerify([createdClear, createdSealed]);
});

test('a server started with a wrong key names the missing key id, and deliveries fail with that reason until it is back', async () => {
  await restart({ current: KEY_C });
  const missing = secretsKeyId(KEY_B);
  assert.match(server!.output, new RegExp(`sealed under key id\\(s\\) ${missing}, which neither SECRETS_KEY nor`));
  for (const key of [KEY_A, KEY_B, KEY_C]) {
    assert.ok(!server!.output.includes(b64(key)) && !server!.output.includes(key.toString('hex')), 'a key in the log');
  }

  const sent = await kit.send(apiKey);
  // Each endpoint's attempt fails with the reason, and nothing unsigned reaches a receiver.
  for (const endpoint of [createdClear, createdSealed]) {
    const attempt = await waitFor('a failed attempt naming the key id', async () => {
      const deliveries = await kit.allDeliveries(endpoint.id, apiKey);
      const delivery = deliveries.find((d) => d.event_id === sent.id);
      return delivery?.attempts.find((a: { error: string | null }) => a.error?.includes(missing));
    });
    assert.match(attempt.error, /^cannot sign: secret is sealed under key [0-9a-f]{8}, which is neither SECRETS_KEY/);
    assert.equal(attempt.response_status, null);
    assert.ok(!endpoint.hook.requests.some((request) => webhookId(request) === sent.id));
  }
  // The delivery worker did not die over it: no worker exit, and ingestion still answers.
  assert.doesNotMatch(server!.output, /worker (died|exited)|cannot stay up/);
  assert.equal((await kit.send(apiKey)).id.length, 36);

  // Key B put back (as the previous key of a new current C): the retries go through, signed as before.
  await restart({ current: KEY_C, previous: [KEY_B] });
  for (const endpoint of [createdClear, createdSealed]) {
    const delivered = await waitFor(
      'the retried delivery',
      () => endpoint.hook.requests.find((request) => webhookId(request) === sent.id),
      30_000,
    );
    for (const secret of endpoint.secrets) new Webhook(secret).verify(delivered.body, headersOf(delivered));
  }
});

test('secrets:rotate beside a rotate-secret: the row is read again, and the new secret is never overwritten', async () => {
  // This process re-seals as the script would (C current, B previous, like the server now), and a
  // rotate-secret commits through the API between its read of the endpoint and its write.
  configureSecrets({ current: KEY_C, previous: [KEY_B] });
  let rotatedSecret: string | null = null;
  const report = await resealStoredSecrets(db, {
    batchSize: 1,
    beforeWrite: async (endpointId) => {
      if (endpointId !== createdSealed.id || rotatedSecret !== null) return;
      const rotated = await call(server!.url, 'POST', `/v1/webhooks/${endpointId}/rotate-secret`, { key: apiKey });
      assert.equal(rotated.status, 200, rotated.text);
      rotatedSecret = rotated.body.secret as string;
    },
  });
  assert.ok(rotatedSecret, 'the rotation ran');
  assert.deepEqual(report.failed, []);
  const [row] = await db`select secret, previous_secret from webhook_endpoints where id = ${createdSealed.id}`;
  const context = endpointSecretContext(orgId, createdSealed.id);
  assert.equal(openSecret(row!.secret, context), rotatedSecret, 'the rotation was overwritten');
  assert.equal(openSecret(row!.previous_secret, context), createdSealed.secrets[0]);
  await assertAllSealedUnder(secretsKeyId(KEY_C));
  createdSealed.secrets = [rotatedSecret, createdSealed.secrets[0]!];
  await assertDeliveriesVerify([createdClear, createdSealed]);
});

test('a malformed SECRETS_KEY or SECRETS_KEY_PREVIOUS stops the start with what is wrong, never the value', async () => {
  await server?.stop();
  server = null;
  const short = randomBytes(20).toString('base64');
  for (const [env, name] of [
    [{ SECRETS_KEY: short }, 'SECRETS_KEY'],
    [{ SECRETS_KEY: b64(KEY_A), SECRETS_KEY_PREVIOUS: `${b64(KEY_B)},not-a-key` }, 'SECRETS_KEY_PREVIOUS \\(key 2\\)'],
  ] as const) {
    const failed = await TestServer.start({ databaseUrl, workers: 1, env: { ...SERVER_ENV, ...env } }).then(
      () => assert.fail('started with a malformed key'),
      (error: Error) => error.message,
    );
    assert.match(failed, new RegExp(`configuration error: ${name} must be 32 random bytes as base64`));
    assert.ok(!failed.includes(short) && !failed.includes(b64(KEY_A)) && !failed.includes(b64(KEY_B)));
  }
});

test('secrets:rotate re-seals a destination config (its `sealed` value), leaving its masked copy as it is', async () => {
  configureSecrets({ current: KEY_B, previous: [] });
  const context = endpointSecretContext(orgId, createdClear.id);
  const clear = JSON.stringify({
    type: 'rabbitmq',
    config: { url: 'amqp://user:pw@broker.internal:5672/vh', exchange: 'events' },
  });
  const config = {
    masked: { url: 'amqp://user:****@broker.internal:5672/vh', exchange: 'events' },
    sealed: sealSecret(clear, context),
  };
  await db`update webhook_endpoints set config = ${db.json(config)} where id = ${createdClear.id}`;

  const report = await rotateScript({ current: KEY_C, previous: [KEY_B] });
  assert.equal(report.configs_checked, true);
  assert.deepEqual(report.failed, []);
  const [row] = await db`select config from webhook_endpoints where id = ${createdClear.id}`;
  const stored = row!.config as typeof config;
  assert.deepEqual(stored.masked, config.masked, 'the masked copy is not sealed');
  assert.equal(sealedKeyId(stored.sealed), secretsKeyId(KEY_C));
  configureSecrets({ current: null, previous: [KEY_C] });
  assert.equal(openSecret(stored.sealed, context), clear);
  assert.ok(!JSON.stringify(stored).includes('pw@'), 'a clear credential is stored');
  assert.equal((await rotateScript({ current: KEY_C })).rows_updated, 0, 'a second run rewrote a config');
});

test('a start names the key of a destination config it cannot open, counted apart from the signing secrets', async () => {
  // Every value under key C first; then one config sealed under B (as a PATCH of the config made
  // while B was the current key would leave it), and a start with C alone.
  assert.deepEqual((await rotateScript({ current: KEY_C })).failed, []);
  configureSecrets({ current: KEY_B, previous: [] });
  const context = endpointSecretContext(orgId, createdClear.id);
  const config = {
    masked: { url: 'redis://:****@cache.internal:6379', stream: 'events' },
    sealed: sealSecret(
      JSON.stringify({ type: 'redis_stream', config: { url: 'redis://:pw@cache.internal:6379', stream: 'events' } }),
      context,
    ),
  };
  await db`update webhook_endpoints set config = ${db.json(config)} where id = ${createdClear.id}`;

  await restart({ current: KEY_C });
  const keyB = secretsKeyId(KEY_B);
  assert.match(
    server!.output,
    new RegExp(
      `Triggers API: 1 destination config\\(s\\) are sealed under key id\\(s\\) ${keyB}, which neither SECRETS_KEY nor`,
    ),
  );
  assert.doesNotMatch(
    server!.output,
    /stored webhook secret\(s\)/,
    'every signing secret is under C, which the server has',
  );
  assert.ok(!server!.output.includes('pw@'), 'a credential in the output');

  await restart({ current: KEY_C, previous: [KEY_B] });
  assert.doesNotMatch(server!.output, /which neither SECRETS_KEY nor SECRETS_KEY_PREVIOUS holds/);
});
