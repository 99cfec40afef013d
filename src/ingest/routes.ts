import type { Sql } from '../db/connect.js';
import { ApiError, notFound, type FieldError } from '../errors.js';
import type { EventTypeRegistry } from '../event-types/registry.js';
import type { RouteSpec } from '../http/router.js';
import { isEventId, isoMs, uuidv7Time } from '../ids.js';
import type { EventBatcher, IngestOutcome } from './batcher.js';
import {
  batchItemRejectedChannel,
  rateLimitChargedChannel,
  type BatchItemRejected,
  type RateLimitCharged,
} from './channels.js';
import { GET_EVENT_DOC, INGEST_BATCH_DOC, INGEST_EVENT_DOC } from './schemas.js';
import { isPlainObject, validateEvent, type ValidEvent } from './validate.js';

const SINGLE_BODY_LIMIT = 512 * 1024;
const BATCH_BODY_LIMIT = 8 * 1024 * 1024;
const MAX_BATCH_EVENTS = 1000;

export interface IngestDeps {
  sql: Sql;
  batcher: EventBatcher;
  /** Spends `cost` tokens of the org's rate limit, or throws 429. */
  chargeRateLimit(ctx: import('../http/context.js').RequestContext, cost: number): void;
  /** The event types of orgs that have some: payloads are checked against their schemas before the 202. */
  eventTypes: EventTypeRegistry;
}

const SCHEMA_MISMATCH = 'The event does not match the schema of its type.';

/** The answer to an event its type's schema refused (or that has no schema where the org requires one). */
function schemaRefusal(failures: FieldError[]): ApiError {
  return new ApiError(
    'validation_failed',
    failures[0]!.field === 'type' ? 'The event type has no registered schema.' : SCHEMA_MISMATCH,
    failures,
  );
}

function outcomeJson(outcome: IngestOutcome): string {
  return '{"id":"' + outcome.id + '","status":"' + outcome.status + '","received_at":"' + outcome.receivedAt + '"}';
}

type ItemResult =
  | { index: number; status: 'accepted' | 'duplicate'; id: string }
  | { index: number; status: 'rejected'; error: { code: string; message: string; details?: unknown } };

export function ingestRoutes(deps: IngestDeps): RouteSpec[] {
  const { sql, batcher, eventTypes } = deps;
  const chargeRateLimit = timedCharge(deps.chargeRateLimit);
  return [
    {
      method: 'post',
      path: '/v1/events',
      auth: 'key',
      scope: 'events:write',
      bodyLimit: SINGLE_BODY_LIMIT,
      doc: INGEST_EVENT_DOC,
      async handle(ctx, body) {
        const event = validateEvent(body, ctx.idempotencyKey);
        const orgId = ctx.principal!.orgId;
        chargeRateLimit(ctx, 1);
        // Most orgs have no event types: one Map look-up. The check is charged for (a token spent
        // above), so an org cannot spend the process's CPU on refused events beyond its limit.
        const types = eventTypes.of(orgId);
        if (types !== undefined) {
          let failures = eventTypes.check(types, event, (body as { payload: unknown }).payload);
          if (failures instanceof Promise) failures = await failures;
          if (failures !== null) throw schemaRefusal(failures);
        }
        const [outcome] = await batcher.enqueue(orgId, [event], Date.now());
        if (outcome instanceof ApiError) throw outcome;
        return { status: outcome.status === 'accepted' ? 202 : 200, body: outcomeJson(outcome) };
      },
    },
    {
      method: 'post',
      path: '/v1/events/batch',
      auth: 'key',
      scope: 'events:write',
      bodyLimit: BATCH_BODY_LIMIT,
      doc: INGEST_BATCH_DOC,
      async handle(ctx, body) {
        const items = batchItems(body);
        const results: ItemResult[] = new Array(items.length);
        const valid: ValidEvent[] = [];
        const validIndex: number[] = [];
        items.forEach((item, index) => {
          try {
            valid.push(validateEvent(item, ''));
            validIndex.push(index);
          } catch (error) {
            if (!(error instanceof ApiError)) throw error;
            if (batchItemRejectedChannel.hasSubscribers)
              batchItemRejectedChannel.publish({ code: error.code } satisfies BatchItemRejected);
            results[index] = { index, status: 'rejected', error: rejection(error) };
          }
        });
        const orgId = ctx.principal!.orgId;
        if (valid.length > 0) chargeRateLimit(ctx, valid.length);
        const types = eventTypes.of(orgId);
        if (types !== undefined && valid.length > 0) {
          const checks = valid.map((event, i) =>
            eventTypes.check(types, event, (items[validIndex[i]!] as { payload: unknown }).payload),
          );
          const failures = checks.some((check) => check instanceof Promise)
            ? await Promise.all(checks)
            : (checks as Array<FieldError[] | null>);
          let kept = 0;
          for (let i = 0; i < valid.length; i++) {
            const failed = failures[i];
            const index = validIndex[i]!;
            if (failed === null || failed === undefined) {
              valid[kept] = valid[i]!;
              validIndex[kept++] = index;
              continue;
            }
            const error = schemaRefusal(failed);
            if (batchItemRejectedChannel.hasSubscribers)
              batchItemRejectedChannel.publish({ code: error.code } satisfies BatchItemRejected);
            results[index] = { index, status: 'rejected', error: rejection(error) };
          }
          valid.length = kept;
          validIndex.length = kept;
        }
        const settled = valid.length > 0 ? await batcher.enqueue(orgId, valid, Date.now()) : [];
        let accepted = 0;
        let duplicates = 0;
        let unavailable: ApiError | null = null;
        settled.forEach((result, i) => {
          const index = validIndex[i]!;
          if (result instanceof ApiError) {
            unavailable = result;
            results[index] = { index, status: 'rejected', error: rejection(result) };
          } else {
            results[index] = { index, status: result.status, id: result.id };
            if (result.status === 'accepted') accepted++;
            else duplicates++;
          }
        });
        // Nothing stored because storage failed: say so as a whole, with Retry-After.
        if (unavailable !== null && accepted === 0 && duplicates === 0) throw unavailable;
        const rejected = items.length - accepted - duplicates;
        return { status: 200, body: JSON.stringify({ accepted, duplicates, rejected, results }) };
      },
    },
    {
      method: 'get',
      path: '/v1/events/:id',
      auth: 'key',
      scope: 'events:read',
      doc: GET_EVENT_DOC,
      async handle(ctx) {
        const id = ctx.params[0]!;
        if (!isEventId(id)) throw notFound('Event');
        const [row] = await sql`
          select id, type, payload::text as payload, dedup_id, occurred_at, received_at, acked_at, schema_version, ordering_key
          from events
          where org_id = ${ctx.principal!.orgId} and id = ${id} and received_at = ${new Date(uuidv7Time(id))}`;
        if (!row) throw notFound('Event');
        return { status: 200, body: eventJson(row, true) };
      },
    },
  ];
}

/**
 * An event row as the API shows it; the payload is spliced in as stored, not re-serialised.
 * `schema_version` and `ordering_key` appear when the row has them (and the query selected them).
 */
export function eventJson(row: Record<string, any>, withAck: boolean): string {
  return (
    '{"id":"' +
    row.id +
    '","type":' +
    JSON.stringify(row.type) +
    ',"payload":' +
    row.payload +
    ',"dedup_id":' +
    JSON.stringify(row.dedup_id) +
    ',"occurred_at":' +
    (row.occurred_at ? '"' + isoMs(row.occurred_at.getTime()) + '"' : 'null') +
    ',"received_at":"' +
    isoMs(row.received_at.getTime()) +
    '"' +
    (row.schema_version != null ? ',"schema_version":' + row.schema_version : '') +
    (row.ordering_key != null ? ',"ordering_key":' + JSON.stringify(row.ordering_key) : '') +
    (withAck ? ',"acked_at":' + (row.acked_at ? '"' + isoMs(row.acked_at.getTime()) + '"' : 'null') : '') +
    '}'
  );
}

/** The charge, timed on rateLimitChargedChannel while someone listens (a charge refused with 429 too). */
function timedCharge(charge: IngestDeps['chargeRateLimit']): IngestDeps['chargeRateLimit'] {
  return (ctx, cost) => {
    if (!rateLimitChargedChannel.hasSubscribers) return charge(ctx, cost);
    const started = performance.now();
    try {
      charge(ctx, cost);
    } finally {
      rateLimitChargedChannel.publish({ seconds: (performance.now() - started) / 1000 } satisfies RateLimitCharged);
    }
  };
}

function batchItems(body: unknown): unknown[] {
  if (!isPlainObject(body)) {
    throw new ApiError('validation_failed', 'The body must be {"events": [...]}.', [
      { field: 'body', message: 'must be a JSON object' },
    ]);
  }
  const details = Object.keys(body)
    .filter((key) => key !== 'events')
    .map((field) => ({ field, message: 'unknown field' }));
  const events = body.events;
  if (!Array.isArray(events)) details.push({ field: 'events', message: 'must be an array of events' });
  else if (events.length === 0 || events.length > MAX_BATCH_EVENTS)
    details.push({ field: 'events', message: `must hold 1 to ${MAX_BATCH_EVENTS} events` });
  if (details.length > 0) throw new ApiError('validation_failed', 'The batch envelope is invalid.', details);
  return events as unknown[];
}

function rejection(error: ApiError) {
  return error.details
    ? { code: error.code, message: error.message, details: error.details }
    : { code: error.code, message: error.message };
}
