import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { TriggersApiError } from '../../client/src/errors.js';
import type { Destination, Endpoint, Webhook } from '../src/pages/endpoint-api.js';
import {
  changedBody,
  createBody,
  type Draft,
  draftOf,
  EMPTY_DRAFT,
  fieldProblems,
  urlForNewPassword,
} from '../src/pages/endpoint-draft.js';

/**
 * The endpoint forms' drafts and the request bodies made from them (console/src/pages/
 * endpoint-draft.ts), without a browser: an edit sends only what changed, never credentials it was
 * not given, and refuses what it can tell is wrong before sending. The forms themselves, and what
 * the API answers to these bodies, are tested in Chromium (test/console-endpoints.test.ts).
 */

const TIME = '2026-12-05T12:00:00.000Z';

function webhook(fields: Partial<Webhook> = {}): Webhook {
  return {
    id: '0193a0b0-0000-7000-8000-000000000001',
    url: 'https://hooks.example.com/in',
    description: null,
    event_types: [],
    filter: null,
    enabled: true,
    disabled_reason: null,
    rate_limit_per_sec: null,
    ordering: 'none',
    max_in_flight: null,
    created_at: TIME,
    updated_at: TIME,
    ...fields,
  };
}

function destination(fields: Partial<Destination> = {}): Destination {
  return {
    ...webhook(),
    type: 'redis_stream',
    config: { url: 'redis://:****@127.0.0.1:6379', stream: 'events' },
    ...fields,
  } as Destination;
}

/** What the API can answer for an endpoint's editable fields. */
const editable = fc.record({
  description: fc.option(fc.string({ maxLength: 40 }), { nil: null }),
  event_types: fc.array(fc.stringMatching(/^[A-Za-z0-9._:-]{1,12}\*?$/), { maxLength: 4 }),
  filter: fc.option(
    fc.dictionary(
      fc.stringMatching(/^payload\.[a-z]{1,6}$/),
      fc.oneof(
        fc.integer(),
        fc.string({ maxLength: 8 }),
        fc.record({ $gte: fc.double({ noNaN: true, noDefaultInfinity: true }) }),
      ),
      { minKeys: 1, maxKeys: 3 },
    ),
    { nil: null },
  ),
  rate_limit_per_sec: fc.option(fc.integer({ min: 1, max: 10_000_000 }), { nil: null }),
  ordering: fc.constantFrom('none' as const, 'fifo' as const, 'key' as const),
  max_in_flight: fc.option(fc.integer({ min: 1, max: 1_000 }), { nil: null }),
});

describe('editing an endpoint sends only what changed', () => {
  test('a draft of any endpoint, left as it is, sends nothing: webhooks and each kind of destination', () => {
    fc.assert(
      fc.property(editable, fc.constantFrom('webhook', 'rabbitmq', 'nats', 'redis_stream'), (fields, kind) => {
        const endpoint: Endpoint =
          kind === 'webhook' ? webhook(fields) : destination({ ...fields, type: kind, config: { masked: '****' } });
        assert.deepEqual(changedBody(endpoint, draftOf(endpoint)), {});
      }),
    );
  });

  test('one field changed sends that field alone', () => {
    const endpoint = webhook({ description: 'CRM', event_types: ['user.*'], rate_limit_per_sec: 50 });
    const draft = draftOf(endpoint);
    assert.deepEqual(changedBody(endpoint, { ...draft, rateLimit: '75' }), { rate_limit_per_sec: 75 });
    assert.deepEqual(changedBody(endpoint, { ...draft, url: ' https://other.example.com/in ' }), {
      url: 'https://other.example.com/in',
    });
    assert.deepEqual(changedBody(endpoint, { ...draft, ordering: 'key' }), { ordering: 'key' });
    assert.deepEqual(changedBody(endpoint, { ...draft, eventTypes: 'user.*, order.paid' }), {
      event_types: ['user.*', 'order.paid'],
    });
  });

  test('emptied boxes clear their field with null', () => {
    const endpoint = webhook({
      description: 'CRM',
      event_types: ['user.*'],
      filter: { 'payload.country': 'DE' },
      rate_limit_per_sec: 50,
      max_in_flight: 4,
    });
    const cleared: Draft = {
      ...draftOf(endpoint),
      description: ' ',
      eventTypes: '',
      filter: '',
      rateLimit: '',
      maxInFlight: '',
    };
    assert.deepEqual(changedBody(endpoint, cleared), {
      description: null,
      event_types: null,
      filter: null,
      rate_limit_per_sec: null,
      max_in_flight: null,
    });
  });

  test('a description kept as it was is not sent again, even with spaces the API stored', () => {
    const endpoint = webhook({ description: '  CRM sync ' });
    assert.deepEqual(changedBody(endpoint, { ...draftOf(endpoint), rateLimit: '5' }), { rate_limit_per_sec: 5 });
    assert.deepEqual(changedBody(endpoint, { ...draftOf(endpoint), description: 'CRM' }), { description: 'CRM' });
  });

  test('a number box holding text goes as typed, so the API names the field', () => {
    const endpoint = webhook();
    assert.deepEqual(changedBody(endpoint, { ...draftOf(endpoint), maxInFlight: 'ten' }), { max_in_flight: 'ten' });
  });
});

describe('destination credentials', () => {
  test('an edit with every config box empty sends no config: the stored credentials stay', () => {
    for (const type of ['rabbitmq', 'nats', 'redis_stream'] as const) {
      const endpoint = destination({ type, config: { url: 'amqp://app:****@mq:5672/', exchange: 'events' } });
      assert.equal('config' in changedBody(endpoint, draftOf(endpoint)), false, type);
    }
  });

  test('a new password goes inside the URL, percent-encoded', () => {
    const endpoint = destination();
    const draft = { ...draftOf(endpoint), brokerUrl: 'redis://127.0.0.1:6380', password: 'p@ss word/1' };
    const body = changedBody(endpoint, draft);
    assert.deepEqual(body.config, { url: 'redis://:p%40ss%20word%2F1@127.0.0.1:6380' });
    assert.equal(new URL(String(body.config?.url)).password, 'p%40ss%20word%2F1');
  });

  test('a new password alone goes into the stored URL, whose password is the masked part', () => {
    const redis = destination({ config: { url: 'redis://:****@cache.internal:6379', stream: 'events' } });
    assert.deepEqual(changedBody(redis, { ...draftOf(redis), password: 'n3w' }), {
      config: { url: 'redis://:n3w@cache.internal:6379' },
    });
    const rabbit = destination({
      type: 'rabbitmq',
      config: { url: 'amqps://app:****@mq.internal:5671/prod', exchange: 'events' },
    });
    assert.deepEqual(changedBody(rabbit, { ...draftOf(rabbit), password: 'n3w' }), {
      config: { url: 'amqps://app:n3w@mq.internal:5671/prod' },
    });
    assert.equal(urlForNewPassword(destination({ config: { url: 'redis://cache.internal:6379', stream: 'e' } })), null);
  });

  test('a stored token (the user name masked) cannot be kept: a new one without its URL is refused before sending', () => {
    const endpoint = destination({ config: { url: 'redis://****@cache.internal:6379', stream: 'events' } });
    assert.throws(
      () => changedBody(endpoint, { ...draftOf(endpoint), password: 'new' }),
      (error: unknown) => /new token/.test(String(fieldProblems(error).get('config.url'))),
    );
  });

  test('a RabbitMQ exchange left empty: the default exchange on create, unchanged on edit', () => {
    const draft: Draft = { ...EMPTY_DRAFT, type: 'rabbitmq', brokerUrl: 'amqp://mq:5672/', exchange: '' };
    assert.deepEqual(createBody('destinations', draft).config, { url: 'amqp://mq:5672/', exchange: '' });
    const endpoint = destination({ type: 'rabbitmq', config: { url: 'amqp://mq:5672/', exchange: 'events' } });
    assert.equal('config' in changedBody(endpoint, { ...draftOf(endpoint), exchange: '' }), false);
    assert.deepEqual(changedBody(endpoint, { ...draftOf(endpoint), exchange: 'orders' }).config, {
      exchange: 'orders',
    });
  });

  test('NATS: servers split on commas and spaces; the .creds text is sent as typed', () => {
    const creds = '-----BEGIN NATS USER JWT-----\neyJ0\n------END NATS USER JWT------\n';
    const draft: Draft = {
      ...EMPTY_DRAFT,
      type: 'nats',
      servers: 'nats://a:4222, nats://b:4222',
      subject: ' orders ',
      credentials: creds,
    };
    assert.deepEqual(createBody('destinations', draft).config, {
      servers: ['nats://a:4222', 'nats://b:4222'],
      subject: 'orders',
      credentials: creds,
    });
  });
});

describe('creating an endpoint', () => {
  test('a webhook: its fields as typed, the empty ones left out or null', () => {
    const draft: Draft = {
      ...EMPTY_DRAFT,
      url: ' https://hooks.example.com/in ',
      eventTypes: 'user.*',
      description: ' CRM ',
    };
    assert.deepEqual(createBody('webhooks', draft), {
      url: 'https://hooks.example.com/in',
      ordering: 'none',
      rate_limit_per_sec: null,
      max_in_flight: null,
      event_types: ['user.*'],
      description: 'CRM',
    });
  });

  test('a filter that is not JSON is refused before sending, named `filter`, with the parser’s reason', () => {
    let refused: unknown;
    assert.throws(
      () => createBody('webhooks', { ...EMPTY_DRAFT, url: 'https://x.example/in', filter: '{"payload.a": ' }),
      (error) => {
        refused = error;
        return true;
      },
    );
    assert.ok(refused instanceof TriggersApiError);
    assert.equal(refused.status, 422);
    assert.match(String(fieldProblems(refused).get('filter')), /^is not JSON: /);
  });

  test('fieldProblems keeps the first problem of each field and ignores what is not a 422', () => {
    const error = new TriggersApiError(
      422,
      'validation_failed',
      'bad',
      null,
      [
        { field: 'url', message: 'must be https' },
        { field: 'url', message: 'second' },
        { field: 'filter', message: 'unknown operator $regex' },
      ],
      null,
    );
    assert.deepEqual(
      [...fieldProblems(error)],
      [
        ['url', 'must be https'],
        ['filter', 'unknown operator $regex'],
      ],
    );
    assert.equal(fieldProblems(new TriggersApiError(409, 'conflict', 'x', null, [], null)).size, 0);
    assert.equal(fieldProblems(new Error('x')).size, 0);
  });
});
