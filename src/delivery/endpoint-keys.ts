import { log } from '../log.js';
import { endpointSecretContext, openSecret, SecretUnavailableError } from '../secrets/sealed.js';
import { secretKey } from './signature.js';

/**
 * An endpoint's HMAC keys, newest first. Empty when its secret could not be opened (sealed under
 * a key this process does not have, or altered): `unavailable` then says why, and each send
 * becomes a failed attempt with that reason (stream.ts), retried on the schedule, rather than a
 * crash of the delivery process or a delivery signed with nothing.
 */
export interface EndpointKeys extends Array<Buffer> {
  unavailable?: string;
}

export interface StoredSecrets {
  id: string;
  org_id: string;
  secret: string;
  previous_secret: string | null;
}

/** Replaces the contents of `keys` with the HMAC keys of the row's stored secrets (sealed or clear). */
export function fillEndpointKeys(keys: EndpointKeys, row: StoredSecrets): EndpointKeys {
  const context = endpointSecretContext(row.org_id, row.id);
  keys.length = 0;
  if (keys.unavailable !== undefined) delete keys.unavailable;
  const current = openStored(row.secret, context, row, 'secret');
  if (typeof current !== 'string') {
    keys.unavailable = current.reason;
    return keys;
  }
  keys.push(secretKey(current));
  // A previous secret that does not open only loses its second signature: receivers that took
  // the new secret from the rotation's answer still verify.
  if (row.previous_secret) {
    const previous = openStored(row.previous_secret, context, row, 'previous_secret');
    if (typeof previous === 'string') keys.push(secretKey(previous));
  }
  return keys;
}

export function openEndpointKeys(row: StoredSecrets): EndpointKeys {
  return fillEndpointKeys([], row);
}

/** Why sends of an endpoint with these keys cannot be signed. */
export function unsignableReason(keys: EndpointKeys): string {
  return `cannot sign: ${keys.unavailable ?? 'no signing secret'}`;
}

function openStored(stored: string, context: string, row: StoredSecrets, column: string): string | { reason: string } {
  try {
    return openSecret(stored, context);
  } catch (error) {
    if (!(error instanceof SecretUnavailableError)) throw error;
    // Once per change of the row in this process (signing-keys.ts applies a row only when its secrets change).
    log.error(
      { endpoint_id: row.id, org_id: row.org_id, column, key_id: error.keyId },
      `webhook signing ${column} cannot be opened: ${error.message} (docs/SECRETS.md)`,
    );
    return { reason: error.message };
  }
}
