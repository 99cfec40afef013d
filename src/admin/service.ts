import { hash } from '@node-rs/argon2';
import { ALL_SCOPES, generateApiKey, isScope, type KeyEnv } from '../auth/keys.js';
import { KEY_CHANGED_CHANNEL } from '../auth/verifier.js';
import type { Sql } from '../db/connect.js';
import { ApiError, type FieldError } from '../errors.js';
import { isoMs, isUuid, uuidv7 } from '../ids.js';
import { isPlainObject } from '../ingest/validate.js';

/**
 * Orgs and API keys: the operations behind both the admin HTTP API and the `npm run admin` CLI,
 * so the two can never disagree. Inputs are validated here with the API's 422 details.
 */

/** Postgres channel announcing an org whose limits or settings changed (payload: org id). */
export const ORG_CHANGED_CHANNEL = 'org_changed';
export const MAX_LIMIT = 10_000_000;

export interface OrgView {
  id: string;
  name: string;
  rate_limit_per_sec: number;
  burst: number;
  require_event_types: boolean;
  created_at: string;
}

export interface KeyView {
  id: string;
  org_id: string;
  kid: string;
  name: string | null;
  env: KeyEnv;
  scopes: string[];
  created_at: string;
  revoked_at: string | null;
}

const orgView = (row: Record<string, any>): OrgView => ({
  id: row.id,
  name: row.name,
  rate_limit_per_sec: row.rate_limit_per_sec,
  burst: row.burst,
  require_event_types: row.require_event_types,
  created_at: isoMs(row.created_at.getTime()),
});

const keyView = (row: Record<string, any>): KeyView => ({
  id: row.id,
  org_id: row.org_id,
  kid: row.kid,
  name: row.name,
  env: row.env,
  scopes: row.scopes,
  created_at: isoMs(row.created_at.getTime()),
  revoked_at: row.revoked_at ? isoMs(row.revoked_at.getTime()) : null,
});

function invalid(details: FieldError[]): never {
  throw new ApiError('validation_failed', 'The request has invalid fields.', details);
}

function checkFields(input: Record<string, unknown>, allowed: string[], details: FieldError[]): void {
  for (const key of Object.keys(input))
    if (!allowed.includes(key)) details.push({ field: key, message: 'unknown field' });
}

function checkLimit(input: Record<string, unknown>, field: string, details: FieldError[]): number | undefined {
  const value = input[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_LIMIT) {
    details.push({ field, message: `must be an integer from 1 to ${MAX_LIMIT}` });
    return undefined;
  }
  return value;
}

function checkName(input: Record<string, unknown>, details: FieldError[], required: boolean): string | undefined {
  const name = input.name;
  if (name === undefined && !required) return undefined;
  if (typeof name !== 'string' || name.trim().length === 0 || name.length > 200 || name.includes('\u0000')) {
    details.push({ field: 'name', message: 'must be a string of 1-200 characters' });
    return undefined;
  }
  return name;
}

function checkFlag(input: Record<string, unknown>, field: string, details: FieldError[]): boolean | undefined {
  const value = input[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'boolean') {
    details.push({ field, message: 'must be true or false' });
    return undefined;
  }
  return value;
}

export interface OrgDefaults {
  rateLimitPerSec: number;
  burst: number;
}

export async function createOrg(sql: Sql, input: unknown, defaults: OrgDefaults): Promise<OrgView> {
  if (!isPlainObject(input)) invalid([{ field: 'body', message: 'must be a JSON object' }]);
  const details: FieldError[] = [];
  checkFields(input, ['name', 'rate_limit_per_sec', 'burst', 'require_event_types'], details);
  const name = checkName(input, details, true);
  const requireEventTypes = checkFlag(input, 'require_event_types', details) ?? false;
  const givenRate = checkLimit(input, 'rate_limit_per_sec', details);
  const rate = givenRate ?? defaults.rateLimitPerSec;
  // Without an explicit burst: two seconds' worth of the given rate, or the configured default.
  const burst =
    checkLimit(input, 'burst', details) ?? (givenRate ? Math.min(givenRate * 2, MAX_LIMIT) : defaults.burst);
  if (details.length > 0) invalid(details);
  const [row] = await sql`
    insert into orgs (id, name, rate_limit_per_sec, burst, require_event_types) values (${uuidv7(Date.now())}, ${name!}, ${rate}, ${burst}, ${requireEventTypes})
    returning *`;
  return orgView(row!);
}

export async function getOrg(sql: Sql, id: string): Promise<OrgView | null> {
  if (!isUuid(id)) return null;
  const [row] = await sql`select * from orgs where id = ${id}`;
  return row ? orgView(row) : null;
}

export async function listOrgs(sql: Sql): Promise<OrgView[]> {
  return (await sql`select * from orgs order by created_at`).map(orgView);
}

export async function updateOrg(sql: Sql, id: string, input: unknown): Promise<OrgView | null> {
  if (!isPlainObject(input)) invalid([{ field: 'body', message: 'must be a JSON object' }]);
  const details: FieldError[] = [];
  checkFields(input, ['name', 'rate_limit_per_sec', 'burst', 'require_event_types'], details);
  const name = checkName(input, details, false);
  const rate = checkLimit(input, 'rate_limit_per_sec', details);
  const burst = checkLimit(input, 'burst', details);
  const requireEventTypes = checkFlag(input, 'require_event_types', details);
  if (details.length > 0) invalid(details);
  if (!isUuid(id)) return null;
  const row = await sql.begin(async (tx) => {
    const [updated] = await tx`
      update orgs set
        name = coalesce(${name ?? null}, name),
        rate_limit_per_sec = coalesce(${rate ?? null}::integer, rate_limit_per_sec),
        burst = coalesce(${burst ?? null}::integer, burst),
        require_event_types = coalesce(${requireEventTypes ?? null}::boolean, require_event_types)
      where id = ${id} returning *`;
    if (updated) await tx`select pg_notify(${ORG_CHANGED_CHANNEL}, ${id})`;
    return updated;
  });
  return row ? orgView(row) : null;
}

export interface CreatedKey extends KeyView {
  /** The full key: returned here once and never stored. */
  key: string;
}

export async function createKey(sql: Sql, orgId: string, input: unknown): Promise<CreatedKey | null> {
  const body = input === undefined ? {} : input;
  if (!isPlainObject(body)) invalid([{ field: 'body', message: 'must be a JSON object' }]);
  const details: FieldError[] = [];
  checkFields(body, ['name', 'scopes', 'env'], details);
  const name = checkName(body, details, false) ?? null;
  let scopes: string[] = [...ALL_SCOPES];
  if (body.scopes !== undefined) {
    if (!Array.isArray(body.scopes) || !body.scopes.every(isScope)) {
      details.push({ field: 'scopes', message: `must be a list of ${ALL_SCOPES.join(', ')}` });
    } else if (body.scopes.length > 0) {
      scopes = [...new Set(body.scopes as string[])];
    }
  }
  const env = body.env ?? 'live';
  if (env !== 'live' && env !== 'test') details.push({ field: 'env', message: 'must be "live" or "test"' });
  if (details.length > 0) invalid(details);
  if (!(await getOrg(sql, orgId))) return null;

  const generated = generateApiKey(env as KeyEnv);
  const secretHash = await hash(generated.secret); // argon2id, the package defaults
  const row = await sql.begin(async (tx) => {
    const [inserted] = await tx`
      insert into api_keys (id, org_id, kid, env, name, scopes, secret_hash)
      values (${uuidv7(Date.now())}, ${orgId}, ${generated.kid}, ${env as string}, ${name}, ${scopes}, ${secretHash})
      returning *`;
    // Processes that cached "unknown kid" for this kid forget it now.
    await tx`select pg_notify(${KEY_CHANGED_CHANNEL}, ${generated.kid})`;
    return inserted!;
  });
  return { ...keyView(row), key: generated.key };
}

export async function listKeys(sql: Sql, orgId: string): Promise<KeyView[] | null> {
  if (!(await getOrg(sql, orgId))) return null;
  return (await sql`select * from api_keys where org_id = ${orgId} order by created_at`).map(keyView);
}

/** Revokes a key (idempotent). Every process hears of it through NOTIFY and drops its cache. */
export async function revokeKey(sql: Sql, keyId: string): Promise<KeyView | null> {
  if (!isUuid(keyId)) return null;
  const row = await sql.begin(async (tx) => {
    // Two statements, not coalesce(revoked_at, now()): Citus allows no stable function inside
    // a COALESCE of an UPDATE on a reference table.
    const [revoked] =
      await tx`update api_keys set revoked_at = now() where id = ${keyId} and revoked_at is null returning *`;
    const [updated] = revoked ? [revoked] : await tx`select * from api_keys where id = ${keyId}`;
    if (updated) await tx`select pg_notify(${KEY_CHANGED_CHANNEL}, ${updated.kid})`;
    return updated;
  });
  return row ? keyView(row) : null;
}
