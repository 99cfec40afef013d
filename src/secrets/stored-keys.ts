import type { Sql } from '../db/connect.js';
import { log } from '../log.js';
import { currentSecretsKeyId, hasSecretsKey } from './sealed.js';

/** How the stored webhook signing secrets are kept: clear, or sealed under which key ids. */
export interface StoredSecretKeys {
  clear: number;
  /** Count of stored secrets per key id. */
  sealed: Map<string, number>;
}

// The key id is the third field of `sealed:v1:<key id>:…` (src/secrets/sealed.ts). One scan with
// GROUP BY (no UNION), which Citus also runs as it is.
export async function storedSecretKeys(sql: Sql): Promise<StoredSecretKeys> {
  const rows = await sql<{ current_key: string | null; previous_key: string | null; previous: boolean; n: number }[]>`
    select substring(secret from '^sealed:v1:([0-9a-f]{8}):') as current_key,
      substring(previous_secret from '^sealed:v1:([0-9a-f]{8}):') as previous_key,
      (previous_secret is not null and previous_secret_expires_at > now()) as previous,
      count(*)::int as n
    from webhook_endpoints group by 1, 2, 3`;
  const found: StoredSecretKeys = { clear: 0, sealed: new Map() };
  const count = (key: string | null, n: number) => {
    if (key === null) found.clear += n;
    else found.sealed.set(key, (found.sealed.get(key) ?? 0) + n);
  };
  for (const row of rows) {
    count(row.current_key, row.n);
    if (row.previous) count(row.previous_key, row.n);
  }
  return found;
}

/**
 * At start (the primary): a stored secret sealed under a key this server was not given is said
 * loudly, naming the key id, since every delivery of its endpoint will fail until the key is
 * back (a key replaced without moving the old one to SECRETS_KEY_PREVIOUS, a typo, a lost key).
 * Not a refusal to start: ingestion and every other endpoint still work.
 */
export async function reportStoredSecretKeys(sql: Sql): Promise<void> {
  let stored: StoredSecretKeys;
  try {
    stored = await storedSecretKeys(sql);
  } catch (error) {
    log.warn({ err: error }, 'could not check which keys the stored secrets are sealed under');
    return;
  }
  const missing = [...stored.sealed].filter(([keyId]) => !hasSecretsKey(keyId));
  if (missing.length > 0) {
    const keyIds = missing.map(([keyId]) => keyId);
    const secrets = missing.reduce((sum, [, n]) => sum + n, 0);
    const message = `${secrets} stored webhook secret(s) are sealed under key id(s) ${keyIds.join(', ')}, which neither SECRETS_KEY nor SECRETS_KEY_PREVIOUS holds: deliveries of those endpoints fail until the key is configured (docs/SECRETS.md)`;
    log.error({ key_ids: keyIds, secrets }, message);
    process.stderr.write(`Triggers API: ${message}\n`);
  }
  if (currentSecretsKeyId() !== null && stored.clear > 0) {
    log.warn(
      { secrets: stored.clear },
      'SECRETS_KEY is set but some webhook secrets are stored clear: run `npm run secrets:rotate` to seal them (docs/SECRETS.md)',
    );
  }
}
