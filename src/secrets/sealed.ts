import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';

/**
 * Secrets at rest (docs/SECRETS.md): webhook signing secrets and destination credentials are
 * stored sealed with AES-256-GCM under SECRETS_KEY when it is set, so a database dump or backup
 * alone does not give them away.
 *
 * Stored form: `sealed:v1:<key id>:<base64url(iv ‖ ciphertext ‖ tag)>`. The key id is a short
 * hash of the key, so opening picks the key at once and an error can name it without naming the
 * key. `context` (`${orgId}:${endpointId}`) is GCM's additional data: a sealed value copied into
 * another row or org does not open there.
 *
 * Without SECRETS_KEY, sealSecret stores the clear value and openSecret passes clear values
 * through: rows written before the key was set keep working until `npm run secrets:rotate`
 * seals them.
 */

export const SEALED_PREFIX = 'sealed:v1:';
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const SECRETS_KEY_BYTES = 32;
// A domain label, so the key id is not a plain hash of the key that some other tool might also publish.
const KEY_ID_LABEL = 'triggers-api secrets key id v1\0';
const KEY_ID = /^[0-9a-f]{8}$/;

export interface SecretsKeys {
  /** Seals and opens; null: new values are stored clear. */
  current: Buffer | null;
  /** Older keys, only to open values not yet re-sealed (SECRETS_KEY_PREVIOUS). */
  previous: Buffer[];
}

/** A stored value that cannot be opened: its key is not configured, or it was altered or moved. */
export class SecretUnavailableError extends Error {
  constructor(
    message: string,
    /** The key id the value names, when it names one (never the key). */
    readonly keyId: string | null,
  ) {
    super(message);
    this.name = 'SecretUnavailableError';
  }
}

interface LoadedKey {
  id: string;
  key: Buffer;
}

let current: LoadedKey | null = null;
let openers = new Map<string, Buffer>();

/** The key's id as stored values carry it: 8 hex digits of a labelled SHA-256 (32 bits say nothing of 256). */
export function secretsKeyId(key: Buffer): string {
  return createHash('sha256').update(KEY_ID_LABEL).update(key).digest('hex').slice(0, 8);
}

/** Called once per process at start with the config (primary, HTTP workers, delivery worker, scripts). */
export function configureSecrets(keys: SecretsKeys): void {
  for (const key of [keys.current, ...keys.previous]) {
    if (key !== null && key.length !== SECRETS_KEY_BYTES)
      throw new Error(`a secrets key must be ${SECRETS_KEY_BYTES} bytes`);
  }
  current = keys.current === null ? null : { id: secretsKeyId(keys.current), key: keys.current };
  openers = new Map();
  for (const key of [keys.current, ...keys.previous]) if (key !== null) openers.set(secretsKeyId(key), key);
}

/** The id of the key new values are sealed under, or null when they are stored clear. */
export function currentSecretsKeyId(): string | null {
  return current?.id ?? null;
}

/** Whether a key with this id is configured (current or previous). */
export function hasSecretsKey(keyId: string): boolean {
  return openers.has(keyId);
}

/** Whether a stored value is in the sealed form (a clear value never is: see docs/SECRETS.md). */
export function isSealed(stored: string): boolean {
  return stored.startsWith(SEALED_PREFIX);
}

/** The key id a sealed value names, or null for a clear value or one not in the sealed form. */
export function sealedKeyId(stored: string): string | null {
  if (!isSealed(stored)) return null;
  const end = stored.indexOf(':', SEALED_PREFIX.length);
  const keyId = end < 0 ? '' : stored.slice(SEALED_PREFIX.length, end);
  // Checked, so an error message that names it never carries arbitrary stored text.
  return KEY_ID.test(keyId) ? keyId : null;
}

/** The stored form of `plain`: AES-256-GCM under SECRETS_KEY when set, else `plain` unchanged. */
export function sealSecret(plain: string, context: string): string {
  if (current === null) return plain;
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv('aes-256-gcm', current.key, iv);
  cipher.setAAD(Buffer.from(context, 'utf8'));
  const sealed = Buffer.concat([iv, cipher.update(plain, 'utf8'), cipher.final(), cipher.getAuthTag()]);
  return `${SEALED_PREFIX}${current.id}:${sealed.toString('base64url')}`;
}

/**
 * The clear text of a stored value, sealed or not (a row written before SECRETS_KEY was set).
 * Throws SecretUnavailableError, whose message names the key id and never a key or a secret.
 */
export function openSecret(stored: string, context: string): string {
  if (!isSealed(stored)) return stored;
  const keyId = sealedKeyId(stored);
  if (keyId === null) throw new SecretUnavailableError('sealed secret is malformed', null);
  const key = openers.get(keyId);
  if (key === undefined) {
    throw new SecretUnavailableError(
      `secret is sealed under key ${keyId}, which is neither SECRETS_KEY nor in SECRETS_KEY_PREVIOUS`,
      keyId,
    );
  }
  const data = Buffer.from(stored.slice(SEALED_PREFIX.length + keyId.length + 1), 'base64url');
  if (data.length < IV_BYTES + TAG_BYTES) throw new SecretUnavailableError('sealed secret is malformed', keyId);
  const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, IV_BYTES));
  decipher.setAAD(Buffer.from(context, 'utf8'));
  decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
  try {
    return Buffer.concat([
      decipher.update(data.subarray(IV_BYTES, data.length - TAG_BYTES)),
      decipher.final(),
    ]).toString('utf8');
  } catch {
    // GCM says only "unable to authenticate": altered, truncated, or copied from another row.
    throw new SecretUnavailableError(
      `sealed secret does not open under key ${keyId} (altered, or not this row's)`,
      keyId,
    );
  }
}

/** The context sealed values of one endpoint or destination are bound to. */
export function endpointSecretContext(orgId: string, endpointId: string): string {
  return `${orgId}:${endpointId}`;
}

/**
 * Fields of a destination's stored `config` that hold sealed values, re-sealed by
 * `npm run secrets:rotate`. A destination stores its whole config sealed as one value under
 * `sealed`, beside a `masked` copy for answers (src/destinations/config.ts), the same for every type.
 */
export function sealedConfigFields(_type: string): readonly string[] {
  return SEALED_CONFIG_FIELDS;
}
const SEALED_CONFIG_FIELDS = ['sealed'] as const;
