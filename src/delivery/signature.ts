import { createHmac, randomBytes } from 'node:crypto';

/**
 * Standard Webhooks signing (https://www.standardwebhooks.com): the secret is `whsec_` + base64
 * of random bytes, and the signature is `v1,` + base64 HMAC-SHA256 over
 * "{webhook-id}.{webhook-timestamp}.{body}" keyed with the DECODED bytes, not the string.
 */
const SECRET_PREFIX = 'whsec_';
const SECRET_BYTES = 32;

export function generateSecret(): string {
  return SECRET_PREFIX + randomBytes(SECRET_BYTES).toString('base64');
}

/** The HMAC key of a `whsec_…` secret. */
export function secretKey(secret: string): Buffer {
  return Buffer.from(secret.startsWith(SECRET_PREFIX) ? secret.slice(SECRET_PREFIX.length) : secret, 'base64');
}

/** One `v1,<base64>` entry per key, space-separated (newest key first during a rotation). */
export function signatureHeader(keys: readonly Buffer[], webhookId: string, timestamp: number, body: string): string {
  let header = '';
  for (const key of keys) {
    const mac = createHmac('sha256', key).update(`${webhookId}.${timestamp}.`).update(body).digest('base64');
    header += (header === '' ? 'v1,' : ' v1,') + mac;
  }
  return header;
}
