import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, loadConfig } from '../src/config.js';

/** The delivery process's caps: defaults, and a bad value stops the start naming the variable. */

test('DELIVERY_MAX_IN_FLIGHT, DELIVERY_BUFFER_BYTES and WEBHOOK_ENDPOINT_BUFFER_BYTES default to 1 024, 64 MiB and 8 MiB', () => {
  const config = loadConfig({});
  assert.equal(config.deliveryMaxInFlight, 1024);
  assert.equal(config.deliveryBufferBytes, 64 * 1024 * 1024);
  assert.equal(config.webhookEndpointBufferBytes, 8 * 1024 * 1024);
  assert.equal(
    loadConfig({ DELIVERY_BUFFER_BYTES: String(4 * 1024 * 1024) }).webhookEndpointBufferBytes,
    4 * 1024 * 1024,
    'the endpoint default never exceeds the process budget',
  );
});

test('bad values are refused with the variable named', () => {
  const cases: Array<[Record<string, string>, RegExp]> = [
    [{ DELIVERY_MAX_IN_FLIGHT: '0' }, /DELIVERY_MAX_IN_FLIGHT must be an integer/],
    [{ DELIVERY_MAX_IN_FLIGHT: 'lots' }, /DELIVERY_MAX_IN_FLIGHT/],
    [{ DELIVERY_BUFFER_BYTES: '1000' }, /DELIVERY_BUFFER_BYTES must be an integer from 1048576/],
    [{ WEBHOOK_ENDPOINT_BUFFER_BYTES: '1.5' }, /WEBHOOK_ENDPOINT_BUFFER_BYTES must be an integer/],
    [
      { DELIVERY_BUFFER_BYTES: String(16 * 1024 * 1024), WEBHOOK_ENDPOINT_BUFFER_BYTES: String(32 * 1024 * 1024) },
      /WEBHOOK_ENDPOINT_BUFFER_BYTES must not exceed DELIVERY_BUFFER_BYTES/,
    ],
  ];
  for (const [env, message] of cases) {
    assert.throws(
      () => loadConfig(env),
      (error: unknown) => error instanceof ConfigError && message.test(error.message),
      JSON.stringify(env),
    );
  }
});
