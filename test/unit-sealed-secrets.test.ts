import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, loadConfig } from '../src/config.js';
import { openEndpointKeys, unsignableReason } from '../src/delivery/endpoint-keys.js';
import { secretKey } from '../src/delivery/signature.js';
import {
  configureSecrets,
  isSealed,
  openSecret,
  SEALED_PREFIX,
  SecretUnavailableError,
  sealedKeyId,
  sealSecret,
  secretsKeyId,
} from '../src/secrets/sealed.js';

/** Sealing secrets at rest (src/secrets/sealed.ts) and reading its keys from the environment (src/config.ts). */

const KEY_A = randomBytes(32);
const KEY_B = randomBytes(32);
const CONTEXT = '0190f1a2-0000-7000-8000-000000000001:0190f1a2-0000-7000-8000-000000000002';
const OTHER_ROW = '0190f1a2-0000-7000-8000-000000000001:0190f1a2-0000-7000-8000-000000000003';
const SECRET = `whsec_${randomBytes(32).toString('base64')}`;

afterEach(() => configureSecrets({ current: null, previous: [] }));

test('a sealed value opens to what was sealed, and holds no trace of it', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  const stored = sealSecret(SECRET, CONTEXT);
  assert.ok(stored.startsWith(`${SEALED_PREFIX}${secretsKeyId(KEY_A)}:`), stored);
  assert.ok(!stored.includes(SECRET.slice(6, 20)));
  assert.equal(openSecret(stored, CONTEXT), SECRET);
});

test('property: any text round-trips under any context', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 300 }), fc.string({ maxLength: 80 }), (plain, context) => {
      assert.equal(openSecret(sealSecret(plain, context), context), plain);
    }),
    { numRuns: 300 },
  );
});

test('two seals of one value differ (a fresh IV each time)', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  const seals = new Set(Array.from({ length: 50 }, () => sealSecret(SECRET, CONTEXT)));
  assert.equal(seals.size, 50);
});

test('a value sealed for one row does not open for another (context is GCM additional data)', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  const stored = sealSecret(SECRET, CONTEXT);
  assert.throws(() => openSecret(stored, OTHER_ROW), SecretUnavailableError);
  assert.throws(() => openSecret(stored, ''), SecretUnavailableError);
});

test('a tampered value does not open: every byte of IV, ciphertext and tag is checked', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  const stored = sealSecret(SECRET, CONTEXT);
  const head = stored.slice(0, stored.lastIndexOf(':') + 1);
  const data = Buffer.from(stored.slice(head.length), 'base64url');
  for (let i = 0; i < data.length; i++) {
    const altered = Buffer.from(data);
    altered[i]! ^= 0x01;
    assert.throws(() => openSecret(head + altered.toString('base64url'), CONTEXT), SecretUnavailableError, `byte ${i}`);
  }
  // Truncated (tag cut off), and emptied.
  assert.throws(() => openSecret(head + data.subarray(0, 20).toString('base64url'), CONTEXT), SecretUnavailableError);
  assert.throws(() => openSecret(head, CONTEXT), SecretUnavailableError);
});

test('a value sealed under a previous key opens; new seals use the current key', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  const underA = sealSecret(SECRET, CONTEXT);
  configureSecrets({ current: KEY_B, previous: [KEY_A] });
  assert.equal(openSecret(underA, CONTEXT), SECRET);
  const underB = sealSecret(SECRET, CONTEXT);
  assert.equal(sealedKeyId(underB), secretsKeyId(KEY_B));
  assert.equal(openSecret(underB, CONTEXT), SECRET);
});

test('a value under a key not configured names the key id, never a key or the secret', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  const underA = sealSecret(SECRET, CONTEXT);
  configureSecrets({ current: KEY_B, previous: [] });
  const error = (() => {
    try {
      openSecret(underA, CONTEXT);
    } catch (caught) {
      return caught;
    }
    assert.fail('opened without its key');
  })() as SecretUnavailableError;
  assert.ok(error instanceof SecretUnavailableError);
  assert.equal(error.keyId, secretsKeyId(KEY_A));
  assert.match(error.message, new RegExp(`key ${secretsKeyId(KEY_A)}`));
  for (const hidden of [KEY_A.toString('base64'), KEY_B.toString('base64'), KEY_A.toString('hex'), SECRET]) {
    assert.ok(!error.message.includes(hidden));
  }
  // Without any key: the same clear error, not a crash.
  configureSecrets({ current: null, previous: [] });
  assert.throws(() => openSecret(underA, CONTEXT), /neither SECRETS_KEY nor in SECRETS_KEY_PREVIOUS/);
});

test('clear values pass through: without a key nothing is sealed, and clear rows open under any key', () => {
  assert.equal(sealSecret(SECRET, CONTEXT), SECRET);
  assert.equal(openSecret(SECRET, CONTEXT), SECRET);
  configureSecrets({ current: KEY_A, previous: [KEY_B] });
  assert.equal(openSecret(SECRET, CONTEXT), SECRET);
  assert.equal(openSecret('', CONTEXT), '');
  assert.ok(!isSealed(SECRET));
});

test('a stored value that only looks sealed is refused as malformed, and its text is not echoed', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  for (const stored of ['sealed:v1:', 'sealed:v1:nothex!!:AAAA', `sealed:v1:<script>:${'A'.repeat(40)}`]) {
    assert.throws(
      () => openSecret(stored, CONTEXT),
      (error: unknown) =>
        error instanceof SecretUnavailableError &&
        /malformed/.test(error.message) &&
        !error.message.includes('<script>'),
    );
  }
});

test('endpoint keys: a secret that does not open gives no keys and a reason naming the key id', () => {
  configureSecrets({ current: KEY_A, previous: [] });
  const row = { id: 'e', org_id: 'o', secret: sealSecret(SECRET, 'o:e'), previous_secret: null };
  assert.deepEqual(openEndpointKeys(row), [secretKey(SECRET)]);
  configureSecrets({ current: KEY_B, previous: [] });
  const keys = openEndpointKeys(row);
  assert.equal(keys.length, 0);
  assert.match(unsignableReason(keys), new RegExp(`cannot sign: .*key ${secretsKeyId(KEY_A)}`));
  // A previous secret that does not open only drops the second signature.
  const rotated = { ...row, secret: sealSecret(SECRET, 'o:e'), previous_secret: row.secret };
  assert.deepEqual(openEndpointKeys(rotated), [secretKey(SECRET)]);
});

test('config: SECRETS_KEY as base64, base64url or hex; SECRETS_KEY_PREVIOUS comma-separated', () => {
  const base = { DATABASE_URL: 'postgres://u@localhost/db' };
  assert.deepEqual(loadConfig(base).secretsKeys, { current: null, previous: [] });
  for (const encoded of [KEY_A.toString('base64'), KEY_A.toString('base64url'), KEY_A.toString('hex')]) {
    assert.deepEqual(loadConfig({ ...base, SECRETS_KEY: encoded }).secretsKeys.current, KEY_A);
  }
  const keys = loadConfig({
    ...base,
    SECRETS_KEY: KEY_B.toString('base64'),
    SECRETS_KEY_PREVIOUS: ` ${KEY_A.toString('base64')} , ${KEY_B.toString('hex')},`,
  }).secretsKeys;
  assert.deepEqual(keys.previous, [KEY_A, KEY_B]);
});

test('config: a malformed key stops the start with what is wrong, never echoing the key', () => {
  const base = { DATABASE_URL: 'postgres://u@localhost/db' };
  const short = randomBytes(16).toString('base64');
  const long = randomBytes(48).toString('base64');
  const hex31 = randomBytes(31).toString('hex');
  const notBase64 = `${KEY_A.toString('base64').slice(0, 40)}!@#$`;
  for (const [env, name] of [
    [{ SECRETS_KEY: short }, 'SECRETS_KEY'],
    [{ SECRETS_KEY: long }, 'SECRETS_KEY'],
    [{ SECRETS_KEY: hex31 }, 'SECRETS_KEY'],
    [{ SECRETS_KEY: notBase64 }, 'SECRETS_KEY'],
    [
      { SECRETS_KEY: KEY_A.toString('base64'), SECRETS_KEY_PREVIOUS: `${KEY_B.toString('base64')},${short}` },
      'SECRETS_KEY_PREVIOUS (key 2)',
    ],
  ] as const) {
    const value = 'SECRETS_KEY_PREVIOUS' in env ? env.SECRETS_KEY_PREVIOUS : env.SECRETS_KEY;
    assert.throws(
      () => loadConfig({ ...base, ...env }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.startsWith(name) &&
        /openssl rand -base64 32/.test(error.message) &&
        !error.message.includes(short) &&
        !error.message.includes(value.split(',').pop()!) &&
        !error.message.includes(KEY_B.toString('base64')),
      JSON.stringify(env),
    );
  }
});
