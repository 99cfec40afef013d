import type { Queryable, Sql } from '../db/connect.js';
import { ENDPOINTS_CHANGED_CHANNEL } from '../delivery/endpoint-orgs.js';
import { SIGNING_KEYS_VALID_MS } from '../delivery/signing-keys.js';
import { generateSecret } from '../delivery/signature.js';
import { refusedHostReason, urlHost } from '../delivery/ssrf.js';
import { ApiError, notFound, type FieldError } from '../errors.js';
import { checkFilter } from '../filter/filter.js';
import { isoMs, isUuid, uuidv7 } from '../ids.js';
import { isPlainObject } from '../json.js';
import { MAX_EVENT_TYPES, isEventTypeFilter } from '../delivery/event-types.js';
import { readWatermark } from '../ingest/sequence.js';
import { endpointSecretContext, sealSecret } from '../secrets/sealed.js';

/**
 * Webhook endpoints of one org: create, read, change, delete, rotate the secret, list deliveries,
 * recover. Every query is scoped by org_id, so another org's endpoint is simply not found.
 */

export interface UrlPolicy {
  allowHttp: boolean;
  allowPrivate: boolean;
}

export interface EndpointPolicy extends UrlPolicy {
  /** WEBHOOK_MAX_ENDPOINTS_PER_ORG: endpoints (enabled or not) one org may have. */
  maxEndpointsPerOrg: number;
}

/**
 * Webhooks (`/v1/webhooks`, kind 'http') and broker destinations (`/v1/destinations`, API.md §5b)
 * are rows of one table served by one delivery engine; each route family sees only its own rows,
 * so a destination's id is 404 under /v1/webhooks and the reverse.
 */
export interface EndpointFamily {
  noun: 'Webhook' | 'Destination';
  http: boolean;
}
export const WEBHOOKS: EndpointFamily = { noun: 'Webhook', http: true };
export const DESTINATIONS: EndpointFamily = { noun: 'Destination', http: false };

export interface EndpointView {
  id: string;
  url: string;
  description: string | null;
  event_types: string[];
  filter: Record<string, unknown> | null;
  enabled: boolean;
  disabled_reason: string | null;
  rate_limit_per_sec: number | null;
  ordering: 'none' | 'fifo' | 'key';
  max_in_flight: number | null;
  created_at: string;
  updated_at: string;
}

export interface EndpointWithSecret extends EndpointView {
  secret: string;
}

const ROTATION_OVERLAP_HOURS = 24;
export const MAX_URL_LENGTH = 2048;
export const MAX_DESCRIPTION = 1000;
export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'dead'] as const;
const RFC3339_RE = /^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;

/** The `webhook_endpoints` columns that the views and rotateSecret read from `select *` or `returning *`. */
export interface EndpointRow {
  id: string;
  org_id: string;
  kind: 'http' | 'rabbitmq' | 'nats' | 'redis_stream';
  url: string;
  /** A broker destination's config, as src/destinations/config.ts stores it; null for a webhook. */
  config: { masked: Record<string, unknown>; sealed: string } | null;
  description: string | null;
  event_types: string[];
  filter: Record<string, unknown> | null;
  enabled: boolean;
  disabled_reason: string | null;
  rate_limit_per_sec: number | null;
  ordering: 'none' | 'fifo' | 'key';
  max_in_flight: number | null;
  created_at: Date;
  updated_at: Date;
  previous_secret_expires_at: Date | null;
}

const endpointView = (row: EndpointRow): EndpointView => ({
  id: row.id,
  url: row.url,
  description: row.description,
  event_types: row.event_types,
  filter: row.filter,
  enabled: row.enabled,
  disabled_reason: row.disabled_reason,
  rate_limit_per_sec: row.rate_limit_per_sec,
  ordering: row.ordering,
  max_in_flight: row.max_in_flight,
  created_at: isoMs(row.created_at.getTime()),
  updated_at: isoMs(row.updated_at.getTime()),
});

export function invalid(details: FieldError[]): never {
  throw new ApiError('validation_failed', 'The request has invalid fields.', details);
}

export function requireObject(input: unknown): Record<string, unknown> {
  if (!isPlainObject(input)) invalid([{ field: 'body', message: 'must be a JSON object' }]);
  return input;
}

export function checkFields(input: Record<string, unknown>, allowed: readonly string[], details: FieldError[]): void {
  for (const key of Object.keys(input))
    if (!allowed.includes(key)) details.push({ field: key, message: 'unknown field' });
}

/** Syntax and scheme first (cheap), then DNS: every address the host resolves to must be public. */
async function checkUrl(value: unknown, policy: UrlPolicy, details: FieldError[]): Promise<string | undefined> {
  const scheme = policy.allowHttp ? 'an http:// or https://' : 'an https://';
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_URL_LENGTH) {
    details.push({ field: 'url', message: `must be ${scheme} URL of at most ${MAX_URL_LENGTH} characters` });
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    details.push({ field: 'url', message: 'is not a valid URL' });
    return undefined;
  }
  if (url.protocol !== 'https:' && !(policy.allowHttp && url.protocol === 'http:')) {
    details.push({
      field: 'url',
      message: policy.allowHttp
        ? 'must use http:// or https://'
        : 'must use https:// (http:// only with WEBHOOK_ALLOW_HTTP=true)',
    });
    return undefined;
  }
  if (url.username !== '' || url.password !== '') {
    details.push({ field: 'url', message: 'must not contain credentials' });
    return undefined;
  }
  if (!policy.allowPrivate) {
    const reason = await refusedHostReason(urlHost(url));
    if (reason !== null) {
      details.push({ field: 'url', message: reason });
      return undefined;
    }
  }
  url.hash = '';
  return url.toString();
}

function checkEventTypes(value: unknown, details: FieldError[]): string[] | undefined {
  if (value === undefined || value === null) return undefined;
  if (!Array.isArray(value) || value.length > MAX_EVENT_TYPES || !value.every(isEventTypeFilter)) {
    details.push({
      field: 'event_types',
      message: `must be a list of at most ${MAX_EVENT_TYPES} event types (1-128 of [A-Za-z0-9._:-]) or prefixes ending in "*"`,
    });
    return undefined;
  }
  return [...new Set(value as string[])];
}

function checkDescription(value: unknown, details: FieldError[]): string | null | undefined {
  if (value === undefined) return undefined;
  if (value === null) return null;
  if (typeof value !== 'string' || value.length > MAX_DESCRIPTION || value.includes('\u0000')) {
    details.push({ field: 'description', message: `must be a string of at most ${MAX_DESCRIPTION} characters` });
    return undefined;
  }
  return value;
}

/** Delivery controls (API.md §5): `undefined` when absent, `null` to clear. */
interface DeliveryControls {
  rateLimitPerSec?: number | null;
  ordering?: 'none' | 'fifo' | 'key';
  maxInFlight?: number | null;
}

function checkOptionalInt(
  body: Record<string, unknown>,
  field: string,
  min: number,
  max: number,
  details: FieldError[],
): number | null | undefined {
  const value = body[field];
  if (value === undefined || value === null) return value;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    details.push({ field, message: `must be an integer from ${min} to ${max}, or null for none` });
    return undefined;
  }
  return value;
}

function checkControls(body: Record<string, unknown>, details: FieldError[]): DeliveryControls {
  const controls: DeliveryControls = {
    rateLimitPerSec: checkOptionalInt(body, 'rate_limit_per_sec', 1, 100_000, details),
    maxInFlight: checkOptionalInt(body, 'max_in_flight', 1, 1000, details),
  };
  if (body.ordering !== undefined) {
    if (body.ordering === 'none' || body.ordering === 'fifo' || body.ordering === 'key')
      controls.ordering = body.ordering;
    else details.push({ field: 'ordering', message: 'must be "none", "fifo" or "key"' });
  }
  return controls;
}

const CONTROL_FIELDS = ['rate_limit_per_sec', 'ordering', 'max_in_flight'] as const;

/*
 * A new (or re-enabled) endpoint is owed the events received from deliver_from on: this process's
 * clock, read after the org's last seq was read. Its stream starts after that seq: every event up
 * to it had committed by then, so it was received before deliver_from and is not owed; every
 * later one is read from the cursor and filtered by received_at >= deliver_from.
 * received_at is stamped by the Node process that took the event: this assumes the nodes' clocks
 * agree (NTP). (Not Postgres's clock_timestamp(): Citus refuses volatile and stable functions in
 * the CASE of an UPDATE on a distributed table.)
 */

/**
 * deliver_from for an endpoint whose start seq has just been read: the next millisecond. An event
 * stamped with it or later was received after that read, so it commits after it, with a higher
 * seq; one stamped in the current millisecond may have committed before the read.
 */
const deliverFromNow = () => new Date(Date.now() + 1);

/**
 * The org's highest event seq below the watermark (0 before its first event): where a new or
 * re-enabled endpoint starts. Every event of the org at or below it that will ever commit has
 * committed (src/ingest/sequence.ts). One look-up on each partial index (events_unacked,
 * events_acked_by_org_seq), in one snapshot taken after the watermark was read.
 */
async function lastEventSeq(sql: Sql, orgId: string): Promise<string> {
  const watermark = await readWatermark(sql);
  const [row] = await sql`
    select coalesce(greatest(
      (select seq from events where org_id = ${orgId} and acked_at is null and seq < ${watermark}::bigint order by seq desc limit 1),
      (select seq from events where org_id = ${orgId} and acked_at is not null and seq < ${watermark}::bigint order by seq desc limit 1)), 0)::text as last_seq`;
  return row!.last_seq as string;
}

/**
 * Every endpoint change is announced in its own transaction: Postgres sends the NOTIFY at commit,
 * to the HTTP workers (EndpointOrgs) and every delivery process (src/delivery/wake.ts) of every
 * node, and never for a change that rolled back. Sent by this session, so under Citus it fires on
 * the coordinator, where everyone listens (a trigger on the distributed table would fire on a
 * worker node instead). The payload is the org id.
 */
async function announceChange(tx: Queryable, orgId: string): Promise<void> {
  await tx`select pg_notify(${ENDPOINTS_CHANGED_CHANNEL}, ${orgId})`;
}

// Advisory-lock class of the per-org endpoint cap ('WHK1'), in the two-int form: no clash with
// the bigint locks of src/ingest/sequence.ts, src/db/migrate.ts or src/ops/retention.ts.
const ENDPOINT_CAP_LOCK = 0x57484b31;

/**
 * Creates take turns per org, so two at once at cap - 1 cannot both see room. A transaction-level
 * advisory lock rather than a row lock: it needs no row (an org's first endpoint) and, on Citus,
 * it is taken on the coordinator every session goes through, while the count and the insert go
 * to the org's shard. (A single-shard write commits on its worker before the coordinator's own
 * commit releases the lock, so the next holder's count sees it.)
 */
async function lockOrgEndpoints(tx: Queryable, orgId: string, max: number): Promise<void> {
  await tx`select pg_advisory_xact_lock(${ENDPOINT_CAP_LOCK}::int, hashtext(${orgId}))`;
  const [row] = await tx`select count(*)::int as n from webhook_endpoints where org_id = ${orgId}`;
  if ((row!.n as number) >= max) {
    throw new ApiError(
      'conflict',
      `This org already has ${row!.n} webhook endpoints and destinations, the most allowed (${max}); delete one before creating another.`,
    );
  }
}

/** The fields every kind of endpoint shares (API.md §5, §5b), checked; `undefined` = absent. */
export interface CommonFields {
  eventTypes?: string[];
  /** null: clear it. */
  filter?: Record<string, unknown> | null;
  description?: string | null;
  enabled?: boolean;
  controls: DeliveryControls;
}

export const COMMON_FIELDS = ['event_types', 'filter', 'description', ...CONTROL_FIELDS] as const;

/** Checks the shared fields of a create (`patch` false) or a PATCH; problems go to `details`. */
export function checkCommonFields(body: Record<string, unknown>, patch: boolean, details: FieldError[]): CommonFields {
  const fields: CommonFields = {
    eventTypes: patch && body.event_types === null ? [] : checkEventTypes(body.event_types, details),
    filter:
      body.filter === undefined ? undefined : (checkFilter(body.filter, details) as Record<string, unknown> | null),
    description: checkDescription(body.description, details),
    controls: checkControls(body, details),
  };
  if (patch && body.enabled !== undefined) {
    if (typeof body.enabled === 'boolean') fields.enabled = body.enabled;
    else details.push({ field: 'enabled', message: 'must be true or false' });
  }
  return fields;
}

/** Where an endpoint's deliveries go: a webhook URL, or a broker destination's masked label and stored config. */
export interface EndpointTarget {
  kind: EndpointRow['kind'];
  url: string;
  /** Builds the stored config once the endpoint's id is known (its secrets are sealed with it). */
  config: ((endpointId: string) => EndpointRow['config']) | null;
}

/** Inserts a new endpoint of any kind with a fresh signing secret; the secret is returned once. */
export async function insertEndpoint(
  sql: Sql,
  orgId: string,
  fields: CommonFields,
  target: EndpointTarget,
  policy: EndpointPolicy,
): Promise<{ row: EndpointRow; secret: string }> {
  const secret = generateSecret();
  // The id is made first: the secret (and a destination's config) are sealed for this row (src/secrets/sealed.ts).
  const id = uuidv7(Date.now());
  const config = target.config?.(id) ?? null;
  const cursorSeq = await lastEventSeq(sql, orgId);
  const row = await sql.begin(async (tx) => {
    await lockOrgEndpoints(tx, orgId, policy.maxEndpointsPerOrg);
    const [inserted] = await tx<EndpointRow[]>`
    insert into webhook_endpoints (id, org_id, kind, url, config, description, event_types, filter, secret, deliver_from, cursor_seq,
                                   rate_limit_per_sec, ordering, max_in_flight)
    values (${id}, ${orgId}, ${target.kind}, ${target.url}, ${config === null ? null : tx.json(config as never)},
            ${fields.description ?? null}, ${fields.eventTypes ?? []}::text[], ${fields.filter ? tx.json(fields.filter as never) : null},
            ${sealSecret(secret, endpointSecretContext(orgId, id))}, ${deliverFromNow()},
            ${cursorSeq}::bigint, ${fields.controls.rateLimitPerSec ?? null}, ${fields.controls.ordering ?? 'none'}, ${fields.controls.maxInFlight ?? null})
    returning *`;
    await announceChange(tx, orgId);
    return inserted;
  });
  return { row: row!, secret };
}

export async function createEndpoint(
  sql: Sql,
  orgId: string,
  input: unknown,
  policy: EndpointPolicy,
): Promise<EndpointWithSecret> {
  const body = requireObject(input);
  const details: FieldError[] = [];
  checkFields(body, ['url', ...COMMON_FIELDS], details);
  const fields = checkCommonFields(body, false, details);
  const url = await checkUrl(body.url, policy, details);
  if (details.length > 0) invalid(details);
  const { row, secret } = await insertEndpoint(sql, orgId, fields, { kind: 'http', url: url!, config: null }, policy);
  return { ...endpointView(row), secret };
}

export async function listEndpointRows(sql: Sql, orgId: string, family: EndpointFamily): Promise<EndpointRow[]> {
  return sql<EndpointRow[]>`
    select * from webhook_endpoints where org_id = ${orgId} and (kind = 'http') = ${family.http} order by created_at, id`;
}

export async function listEndpoints(sql: Sql, orgId: string): Promise<EndpointView[]> {
  return (await listEndpointRows(sql, orgId, WEBHOOKS)).map(endpointView);
}

export async function findEndpoint(sql: Sql, orgId: string, id: string, family: EndpointFamily): Promise<EndpointRow> {
  if (!isUuid(id)) throw notFound(family.noun);
  const [row] = await sql<EndpointRow[]>`
    select * from webhook_endpoints where id = ${id} and org_id = ${orgId} and (kind = 'http') = ${family.http}`;
  if (!row) throw notFound(family.noun);
  return row;
}

export async function getEndpoint(sql: Sql, orgId: string, id: string): Promise<EndpointView> {
  return endpointView(await findEndpoint(sql, orgId, id, WEBHOOKS));
}

/** Applies a checked PATCH to an endpoint of `family`; `target` replaces where deliveries go. */
export async function patchEndpoint(
  sql: Sql,
  orgId: string,
  id: string,
  family: EndpointFamily,
  fields: CommonFields,
  target?: { url: string; config: EndpointRow['config'] },
): Promise<EndpointRow> {
  if (!isUuid(id)) throw notFound(family.noun);
  const { eventTypes, filter, description, enabled, controls } = fields;
  // Only used when this PATCH re-enables the endpoint (read first: see lastEventSeq).
  const restartSeq = enabled === true ? await lastEventSeq(sql, orgId) : null;
  const row = await sql.begin(async (tx) => {
    const [updated] = await tx<EndpointRow[]>`
      update webhook_endpoints set
        url = coalesce(${target?.url ?? null}, url),
        config = case when ${target !== undefined} then ${target?.config ? tx.json(target.config as never) : null}::jsonb else config end,
        event_types = coalesce(${eventTypes ?? null}::text[], event_types),
        filter = case when ${filter !== undefined} then ${filter ? tx.json(filter as never) : null}::jsonb else filter end,
        description = case when ${description !== undefined} then ${description ?? null} else description end,
        enabled = coalesce(${enabled ?? null}::boolean, enabled),
        disabled_reason = case when ${enabled === true} then null
                               when ${enabled === false} and enabled then 'Disabled by a PATCH request.'
                               else disabled_reason end,
        -- Re-enabling starts from now: events that arrived while disabled are not sent (like Svix).
        failing_since = case when ${enabled === true} and not enabled then null else failing_since end,
        deliver_from = case when ${enabled === true} and not enabled then ${deliverFromNow()}::timestamptz else deliver_from end,
        cursor_seq = case when ${enabled === true} and not enabled then ${restartSeq}::bigint else cursor_seq end,
        cursor_id = case when ${enabled === true} and not enabled then '00000000-0000-0000-0000-000000000000'::uuid else cursor_id end,
        rate_limit_per_sec = case when ${controls.rateLimitPerSec !== undefined} then ${controls.rateLimitPerSec ?? null}::int else rate_limit_per_sec end,
        ordering = coalesce(${controls.ordering ?? null}, ordering),
        max_in_flight = case when ${controls.maxInFlight !== undefined} then ${controls.maxInFlight ?? null}::int else max_in_flight end,
        updated_at = now()
      where id = ${id} and org_id = ${orgId} and (kind = 'http') = ${family.http}
      returning *`;
    if (updated) await announceChange(tx, orgId);
    return updated;
  });
  if (!row) throw notFound(family.noun);
  return row;
}

export async function updateEndpoint(
  sql: Sql,
  orgId: string,
  id: string,
  input: unknown,
  policy: UrlPolicy,
): Promise<EndpointView> {
  const body = requireObject(input);
  const details: FieldError[] = [];
  checkFields(body, ['url', 'enabled', ...COMMON_FIELDS], details);
  const fields = checkCommonFields(body, true, details);
  if (!isUuid(id)) throw notFound('Webhook');
  const url = body.url === undefined ? undefined : await checkUrl(body.url, policy, details);
  if (details.length > 0) invalid(details);
  const target = url === undefined ? undefined : { url, config: null };
  return endpointView(await patchEndpoint(sql, orgId, id, WEBHOOKS, fields, target));
}

export async function deleteEndpoint(sql: Sql, orgId: string, id: string, family = WEBHOOKS): Promise<void> {
  if (!isUuid(id)) throw notFound(family.noun);
  const count = await sql.begin(async (tx) => {
    const result = await tx`
      delete from webhook_endpoints where id = ${id} and org_id = ${orgId} and (kind = 'http') = ${family.http}`;
    if (result.count > 0) await announceChange(tx, orgId);
    return result.count;
  });
  if (count === 0) throw notFound(family.noun);
}

/**
 * A new secret; the old one keeps signing (a second signature) for 24 hours.
 *
 * API.md §5: every delivery that starts after the answer carries the new signature. The NOTIFY
 * makes delivery processes reload at once, but it is asynchronous: one could still sign with
 * its cached keys between the commit and reading the notification. What makes it certain is a
 * bound on that cache (src/delivery/signing-keys.ts): a delivery process signs only with keys
 * read by a query sent less than SIGNING_KEYS_VALID_MS earlier. So the answer waits that long
 * after the commit: any delivery starting after it signs with keys from a query sent after the
 * commit, which saw the new secret. Only durations on each machine's own monotonic clock are
 * compared, never the clocks of two machines.
 */
export async function rotateSecret(
  sql: Sql,
  orgId: string,
  id: string,
): Promise<EndpointWithSecret & { previous_secret_expires_at: string }> {
  const { row, secret, previousSecretExpiresAt } = await rotateEndpointSecret(sql, orgId, id, WEBHOOKS);
  return { ...endpointView(row), secret, previous_secret_expires_at: previousSecretExpiresAt };
}

export async function rotateEndpointSecret(
  sql: Sql,
  orgId: string,
  id: string,
  family: EndpointFamily,
): Promise<{ row: EndpointRow; secret: string; previousSecretExpiresAt: string }> {
  if (!isUuid(id)) throw notFound(family.noun);
  const secret = generateSecret();
  const row = await sql.begin(async (tx) => {
    const [updated] = await tx<EndpointRow[]>`
    update webhook_endpoints set
      previous_secret = secret,
      previous_secret_expires_at = now() + make_interval(hours => ${ROTATION_OVERLAP_HOURS}),
      secret = ${sealSecret(secret, endpointSecretContext(orgId, id))},
      updated_at = now()
    where id = ${id} and org_id = ${orgId} and (kind = 'http') = ${family.http}
    returning *`;
    if (updated) await announceChange(tx, orgId);
    return updated;
  });
  if (!row) throw notFound(family.noun);
  await outlastCachedKeys(performance.now());
  return { row, secret, previousSecretExpiresAt: isoMs(row.previous_secret_expires_at!.getTime()) };
}

/** Returns once SIGNING_KEYS_VALID_MS have passed since `committedAt` (performance.now(), after the commit). */
async function outlastCachedKeys(committedAt: number): Promise<void> {
  // A loop, not one timer: a timer may fire a little early against performance.now().
  for (let left = SIGNING_KEYS_VALID_MS; left > 0; left = committedAt + SIGNING_KEYS_VALID_MS - performance.now()) {
    await new Promise((resolve) => setTimeout(resolve, Math.ceil(left) + 1));
  }
}

export interface DeliveryPage {
  deliveries: Array<{
    id: string;
    event_id: string;
    status: string;
    attempts: Array<{
      at: string;
      response_status: number | null;
      latency_ms: number;
      error: string | null;
      next_attempt_at: string | null;
    }>;
    next_attempt_at: string | null;
    created_at: string;
  }>;
  next_cursor: string | null;
}

/** Newest first. `cursor` is opaque (the last delivery id of the previous page). */
export async function listDeliveries(
  sql: Sql,
  orgId: string,
  id: string,
  query: string,
  family = WEBHOOKS,
): Promise<DeliveryPage> {
  const params = new URLSearchParams(query);
  const details: FieldError[] = [];
  const status = params.get('status');
  if (status !== null && !(DELIVERY_STATUSES as readonly string[]).includes(status)) {
    details.push({ field: 'status', message: `must be one of ${DELIVERY_STATUSES.join(', ')}` });
  }
  const limitRaw = params.get('limit');
  const limit = limitRaw === null ? 50 : Number(limitRaw);
  if (!Number.isInteger(limit) || limit < 1 || limit > 250)
    details.push({ field: 'limit', message: 'must be an integer from 1 to 250' });
  const cursorRaw = params.get('cursor');
  let after: string | null = null;
  if (cursorRaw !== null && cursorRaw !== '') {
    after = Buffer.from(cursorRaw, 'base64url').toString('utf8');
    if (!isUuid(after)) details.push({ field: 'cursor', message: 'is not a cursor this API returned' });
  }
  const eventId = params.get('event_id');
  if (eventId !== null && !isUuid(eventId)) details.push({ field: 'event_id', message: 'must be an event id' });
  if (details.length > 0) invalid(details);
  await findEndpoint(sql, orgId, id, family);

  const rows = await sql`
    select id, event_id, status, next_attempt_at, attempts, created_at from webhook_deliveries
    where org_id = ${orgId} and endpoint_id = ${id}
      ${status !== null ? sql`and status = ${status}` : sql``}
      ${after !== null ? sql`and id < ${after}` : sql``}
      ${eventId !== null ? sql`and event_id = ${eventId}` : sql``}
    order by id desc
    limit ${limit + 1}`;
  const page = rows.slice(0, limit);
  return {
    deliveries: page.map((row) => ({
      id: row.id,
      event_id: row.event_id,
      status: row.status,
      attempts: row.attempts,
      next_attempt_at: row.next_attempt_at ? isoMs(row.next_attempt_at.getTime()) : null,
      created_at: isoMs(row.created_at.getTime()),
    })),
    next_cursor: rows.length > limit ? Buffer.from(page[page.length - 1]!.id as string).toString('base64url') : null,
  };
}

/**
 * Queues failed and dead deliveries created at or after `since` for another full run of the
 * retry schedule, starting now. Sent once the endpoint is enabled.
 */
export async function recoverDeliveries(
  sql: Sql,
  orgId: string,
  id: string,
  input: unknown,
  family = WEBHOOKS,
): Promise<{ queued: number }> {
  const body = requireObject(input);
  const details: FieldError[] = [];
  checkFields(body, ['since'], details);
  const since = body.since;
  let sinceMs = NaN;
  if (typeof since === 'string' && RFC3339_RE.test(since)) sinceMs = Date.parse(since);
  if (Number.isNaN(sinceMs)) details.push({ field: 'since', message: 'must be an RFC 3339 time with a time zone' });
  if (details.length > 0) invalid(details);
  await findEndpoint(sql, orgId, id, family);
  const queued = await sql.begin(async (tx) => {
    const result = await tx`
      update webhook_deliveries set status = 'pending', retry_index = 0, next_attempt_at = now(), updated_at = now()
      where org_id = ${orgId} and endpoint_id = ${id} and status in ('failed', 'dead') and created_at >= ${new Date(sinceMs)}`;
    // The delivery processes look for due retries at once rather than at their next poll.
    if (result.count > 0) await announceChange(tx, orgId);
    return result.count;
  });
  return { queued };
}
