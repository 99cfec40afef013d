import type { Sql } from '../db/connect.js';
import { log } from '../log.js';
import { currentSecretsKeyId, hasSecretsKey } from './sealed.js';

/** How the stored secrets are kept: clear, or sealed under which key ids. */
export interface StoredSecretKeys {
  /** Webhook and destination signing secrets (`secret`, and `previous_secret` while it lasts). */
  secrets: SealedCounts;
  /** Destination configs (`config.sealed`: broker URLs, passwords, credential files). */
  configs: SealedCounts;
}

export interface SealedCounts {
  clear: number;
  /** Count of stored values per key id. */
  sealed: Map<string, number>;
}

// The key id is the third field of `sealed:v1:<key id>:…` (src/secrets/sealed.ts). One scan with
// GROUP BY (no UNION), which Citus also runs as it is. A destination's config is sealed on its own
// (a PATCH of the config seals it under the current key, its signing secret stays as it was), so it
// is counted apart.
export async function storedSecretKeys(sql: Sql): Promise<StoredSecretKeys> {
  const rows = await sql<
    {
      current_key: string | null;
      previous_key: string | null;
      previous: boolean;
      config_key: string | null;
      has_config: boolean;
      n: number;
    }[]
  >`
    select substring(secret from '^sealed:v1:([0-9a-f]{8}):') as current_key,
      substring(previous_secret from '^sealed:v1:([0-9a-f]{8}):') as previous_key,
      (previous_secret is not null and previous_secret_expires_at > now()) as previous,
      substring(config->>'sealed' from '^sealed:v1:([0-9a-f]{8}):') as config_key,
      (config->>'sealed' is not null) as has_config,
      count(*)::int as n
    from webhook_endpoints group by 1, 2, 3, 4, 5`;
  const found: StoredSecretKeys = { secrets: counts(), configs: counts() };
  for (const row of rows) {
    count(found.secrets, row.current_key, row.n);
    if (row.previous) count(found.secrets, row.previous_key, row.n);
    if (row.has_config) count(found.configs, row.config_key, row.n);
  }
  return found;
}

function counts(): SealedCounts {
  return { clear: 0, sealed: new Map() };
}

function count(into: SealedCounts, keyId: string | null, n: number): void {
  if (keyId === null) into.clear += n;
  else into.sealed.set(keyId, (into.sealed.get(keyId) ?? 0) + n);
}

/** How many of `counts`' values are sealed under a key this server was not given, and which keys. */
function unopenable(counts: SealedCounts): { keyIds: string[]; values: number } {
  const missing = [...counts.sealed].filter(([keyId]) => !hasSecretsKey(keyId));
  return { keyIds: missing.map(([keyId]) => keyId), values: missing.reduce((sum, [, n]) => sum + n, 0) };
}

/**
 * At start (the primary): a stored secret or destination config sealed under a key this server
 * was not given is said loudly, naming the key id, since every delivery of its endpoint will fail
 * until the key is back (a key replaced without moving the old one to SECRETS_KEY_PREVIOUS, a typo,
 * a lost key). Not a refusal to start: ingestion and every other endpoint still work.
 */
export async function reportStoredSecretKeys(sql: Sql): Promise<void> {
  let stored: StoredSecretKeys;
  try {
    stored = await storedSecretKeys(sql);
  } catch (error) {
    log.warn({ err: error }, 'could not check which keys the stored secrets are sealed under');
    return;
  }
  const secrets = unopenable(stored.secrets);
  const configs = unopenable(stored.configs);
  const keyIds = [...new Set([...secrets.keyIds, ...configs.keyIds])].sort();
  if (keyIds.length > 0) {
    const what = [
      secrets.values > 0 ? `${secrets.values} stored webhook secret(s)` : null,
      configs.values > 0 ? `${configs.values} destination config(s)` : null,
    ]
      .filter((part) => part !== null)
      .join(' and ');
    const message = `${what} are sealed under key id(s) ${keyIds.join(', ')}, which neither SECRETS_KEY nor SECRETS_KEY_PREVIOUS holds: deliveries of those endpoints fail until the key is configured (docs/SECRETS.md)`;
    log.error({ key_ids: keyIds, secrets: secrets.values, configs: configs.values }, message);
    process.stderr.write(`Triggers API: ${message}\n`);
  }
  if (currentSecretsKeyId() !== null && stored.secrets.clear + stored.configs.clear > 0) {
    log.warn(
      { secrets: stored.secrets.clear, configs: stored.configs.clear },
      'SECRETS_KEY is set but some webhook secrets or destination configs are stored clear: run `npm run secrets:rotate` to seal them (docs/SECRETS.md)',
    );
  }
}
