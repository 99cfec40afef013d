import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Webhook as StandardWebhook, WebhookVerificationError } from 'standardwebhooks';
import { Webhook as SvixWebhook, WebhookVerificationError as SvixVerificationError } from 'svix';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { webhookKit } from './helpers/webhook-kit.js';
import { waitFor, type ReceivedWebhook } from './webhooks-receiver.js';

/**
 * Receivers verify our deliveries with off-the-shelf libraries, not with our code: the reference
 * `standardwebhooks` and `svix`'s (each with its own parsing of headers, secrets and signature
 * lists) must accept every real delivery, also during a secret rotation with either secret, and
 * refuse one under a wrong secret or with an altered body. webhooks.test.ts checks the signature
 * bytes against an independent HMAC; this file checks that what receivers run agrees.
 */

// svix bundles its own copy of standardwebhooks, so its error class is not the same object.
const LIBRARIES = [
  {
    name: 'standardwebhooks',
    verifier: (secret: string) => new StandardWebhook(secret),
    refusal: WebhookVerificationError,
  },
  { name: 'svix', verifier: (secret: string) => new SvixWebhook(secret), refusal: SvixVerificationError },
];
const WRONG_SECRET = `whsec_${Buffer.alloc(32, 1).toString('base64')}`;

// Payloads whose bytes are easy to get wrong between signing and sending: escapes, non-ASCII,
// U+2028 (valid in JSON, not in old JS), big and fractional numbers, nesting, an empty object.
const PAYLOADS: Array<Record<string, unknown>> = [
  {},
  { text: 'plain' },
  { quote: '"\\/\b\f\n\r\t', control: '\u0001\u001f' },
  { accents: 'çàéü ß', cjk: '事件', emoji: '✓🚀', separators: '\u2028\u2029' },
  { big: 12345678901234567890, small: -0.000001, exponent: 1e21, truth: [true, false, null] },
  { nested: { a: [{ b: { c: [1, 2, { d: 'deep' }] } }] } },
  { spaced: '  leading and trailing  ', 'key with spaces': 1, üñí: 'çødé' },
];

let pg: TestPostgres;
let server: TestServer;
const kit = webhookKit(() => server.url);

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('webhook_libraries'),
    workers: 1,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_RETRY_SCHEDULE: '200ms,200ms',
      WEBHOOK_TIMEOUT_MS: '2000',
    },
  });
});

after(async () => {
  await kit.closeReceivers();
  await server?.stop();
  await pg?.stop();
});

/** Sends one event per payload and returns each one's delivery as the receiver got it. */
async function deliver(key: string, hook: Awaited<ReturnType<typeof kit.receiver>>): Promise<ReceivedWebhook[]> {
  const events = PAYLOADS.map((payload, i) => ({ type: `library.check.${i}`, payload }));
  const sent = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events } });
  assert.equal(sent.status, 200, sent.text);
  const ids: string[] = sent.body.results.map((result: { id: string }) => result.id);
  await waitFor('every delivery', () => ids.every((id) => hook.ids().has(id)));
  return ids.map((id) => hook.requests.find((request) => request.headers['webhook-id'] === id)!);
}

function headersOf(request: ReceivedWebhook): Record<string, string> {
  return Object.fromEntries(Object.entries(request.headers).map(([name, value]) => [name, String(value)]));
}

/** Each library, with each secret, accepts each delivery and returns its body parsed. */
function assertVerifies(deliveries: ReceivedWebhook[], secrets: string[]): void {
  for (const { name, verifier } of LIBRARIES) {
    for (const secret of secrets) {
      const webhook = verifier(secret);
      for (const delivery of deliveries) {
        const parsed = webhook.verify(delivery.body, headersOf(delivery));
        assert.deepEqual(
          parsed,
          JSON.parse(delivery.body),
          `${name} with ${secret === secrets[0] ? 'the first' : 'another'} secret`,
        );
      }
    }
  }
}

/** Each library refuses each delivery under a wrong secret, and with its body altered. */
function assertRefuses(deliveries: ReceivedWebhook[], secret: string): void {
  for (const { name, verifier, refusal } of LIBRARIES) {
    for (const delivery of deliveries) {
      assert.throws(
        () => verifier(WRONG_SECRET).verify(delivery.body, headersOf(delivery)),
        refusal,
        `${name}: a wrong secret`,
      );
      const altered = delivery.body.replace('"type":"library', '"type":"forged');
      assert.notEqual(altered, delivery.body);
      assert.throws(() => verifier(secret).verify(altered, headersOf(delivery)), refusal, `${name}: an altered body`);
    }
  }
}

test('standardwebhooks and svix verify every real delivery, and refuse a wrong secret or an altered body', async () => {
  const { key } = await createOrgWithKey(server.url);
  const hook = await kit.receiver();
  const endpoint = await kit.createWebhook(key, { url: hook.url });
  const deliveries = await deliver(key, hook);
  for (const delivery of deliveries) assert.equal(String(delivery.headers['webhook-signature']).split(' ').length, 1);
  assertVerifies(deliveries, [endpoint.secret]);
  assertRefuses(deliveries, endpoint.secret);
});

test('during a secret rotation, both libraries verify every delivery with the old secret and with the new one', async () => {
  const { key } = await createOrgWithKey(server.url);
  const hook = await kit.receiver();
  const endpoint = await kit.createWebhook(key, { url: hook.url });
  const rotated = await call(server.url, 'POST', `/v1/webhooks/${endpoint.id}/rotate-secret`, { key });
  assert.equal(rotated.status, 200, rotated.text);
  // The delivery worker learns of the rotation asynchronously (a wake, then a settings reload), so
  // an event sent within milliseconds of the 200 may still go out signed by the old secret alone.
  // What this file checks is the libraries, so wait until the second signature is live.
  await waitFor(
    'deliveries signed by both secrets',
    async () => {
      const probe = await call(server.url, 'POST', '/v1/events', { key, body: { type: 'library.probe', payload: {} } });
      assert.equal(probe.status, 202, probe.text);
      const request = await waitFor('the probe', () =>
        hook.requests.find((r) => r.headers['webhook-id'] === probe.body.id),
      );
      return String(request.headers['webhook-signature']).split(' ').length === 2;
    },
    10_000,
    20,
  );
  const deliveries = await deliver(key, hook);
  for (const delivery of deliveries) {
    assert.equal(
      String(delivery.headers['webhook-signature']).split(' ').length,
      2,
      'both signatures, space-separated',
    );
  }
  // A receiver still on the old secret keeps working; one redeployed with the new one works too.
  assertVerifies(deliveries, [endpoint.secret, rotated.body.secret]);
  assertRefuses(deliveries, rotated.body.secret);
});
