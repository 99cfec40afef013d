import type { Queryable, Sql } from '../db/connect.js';
import { ApiError, notFound, type FieldError } from '../errors.js';
import { isoMs, uuidv7 } from '../ids.js';
import { DOT_SEGMENT_MESSAGE, isDotSegment } from '../groups/params.js';
import { TYPE_RE } from '../ingest/validate.js';
import { isPlainObject } from '../json.js';
import { schemaProblems } from './schema-check.js';

/**
 * Event types (API.md §3b): registering, replacing, reading and deleting an org's schemas. Every
 * change raises the org's event_types_revision and sends EVENT_TYPES_CHANGED_CHANNEL in its own
 * transaction, so every HTTP process (registry.ts) learns it within the 2 s the contract allows.
 */

/** Postgres channel: an org's event types or require_event_types changed (payload: the org id). */
export const EVENT_TYPES_CHANGED_CHANNEL = 'event_types_changed';
export const MAX_TYPE_DESCRIPTION = 1000;
// Per-org lock of the count check (any fixed number, apart from the webhooks' one).
const EVENT_TYPE_CAP_LOCK = 0x45565431;

export interface EventTypePolicy {
  maxPerOrg: number;
  /** Compiles a schema that passed schemaProblems, off the event loop and with a deadline (schema-pool.ts). */
  compileProblems(schemaJson: string): Promise<FieldError[]>;
}

/** An `event_types` row as COLUMNS reads it. */
interface EventTypeRow {
  type: string;
  /** The schema as stored (json), as text. */
  schema: string;
  description: string | null;
  deprecated: boolean;
  version: number;
  created_at: Date;
  updated_at: Date;
}

/** An event type as the API shows it: the schema spliced in as stored, not re-serialised. */
function viewJson(row: EventTypeRow): string {
  return (
    '{"type":' +
    JSON.stringify(row.type) +
    ',"schema":' +
    row.schema +
    ',"description":' +
    JSON.stringify(row.description) +
    ',"deprecated":' +
    row.deprecated +
    ',"version":' +
    row.version +
    ',"created_at":"' +
    isoMs(row.created_at.getTime()) +
    '","updated_at":"' +
    isoMs(row.updated_at.getTime()) +
    '"}'
  );
}

const COLUMNS = 'type, schema::text as schema, description, deprecated, version, created_at, updated_at';

function invalid(details: FieldError[]): never {
  throw new ApiError('validation_failed', 'The event type is invalid.', details);
}

/** The {type} of the path: the event type rules (API.md §3). */
function checkTypeName(type: string): void {
  if (!TYPE_RE.test(type)) invalid([{ field: 'type', message: 'must be 1-128 characters of A-Z a-z 0-9 . _ : -' }]);
  if (isDotSegment(type)) invalid([{ field: 'type', message: DOT_SEGMENT_MESSAGE }]);
}

interface TypeInput {
  schemaJson: string;
  description: string | null;
  deprecated: boolean;
}

async function readInput(input: unknown, policy: EventTypePolicy): Promise<TypeInput> {
  if (!isPlainObject(input)) invalid([{ field: 'body', message: 'must be a JSON object' }]);
  const details: FieldError[] = [];
  for (const key of Object.keys(input))
    if (!['schema', 'description', 'deprecated'].includes(key)) details.push({ field: key, message: 'unknown field' });
  const description = input.description ?? null;
  if (
    description !== null &&
    (typeof description !== 'string' ||
      description.length > MAX_TYPE_DESCRIPTION ||
      description.includes('\u0000') ||
      !description.isWellFormed())
  ) {
    details.push({
      field: 'description',
      message: `must be a string of at most ${MAX_TYPE_DESCRIPTION} characters, or null`,
    });
  }
  const deprecated = input.deprecated ?? false;
  if (typeof deprecated !== 'boolean') details.push({ field: 'deprecated', message: 'must be true or false' });
  if (input.schema === undefined) details.push({ field: 'schema', message: 'is required' });
  else details.push(...schemaProblems(input.schema));
  if (details.length > 0) invalid(details);
  const schemaJson = JSON.stringify(input.schema);
  const problems = await policy.compileProblems(schemaJson);
  if (problems.length > 0) invalid(problems);
  return { schemaJson, description: description as string | null, deprecated: deprecated as boolean };
}

/** The change's own announcement: the org's revision rises and every process hears of it. */
async function announce(tx: Queryable, orgId: string): Promise<void> {
  await tx`update orgs set event_types_revision = event_types_revision + 1 where id = ${orgId}`;
  await tx`select pg_notify(${EVENT_TYPES_CHANGED_CHANNEL}, ${orgId})`;
}

/** PUT: 201 with the new type, or 200 with the replaced one (its version risen only if something changed). */
export async function putEventType(
  sql: Sql,
  orgId: string,
  type: string,
  input: unknown,
  policy: EventTypePolicy,
): Promise<{ created: boolean; json: string }> {
  checkTypeName(type);
  const wanted = await readInput(input, policy);
  return sql.begin(async (tx) => {
    const [existing] = await tx<
      EventTypeRow[]
    >`select ${tx.unsafe(COLUMNS)} from event_types where org_id = ${orgId} and type = ${type} for update`;
    if (!existing) {
      await tx`select pg_advisory_xact_lock(${EVENT_TYPE_CAP_LOCK}::int, hashtext(${orgId}))`;
      const [count] = await tx`select count(*)::int as n from event_types where org_id = ${orgId}`;
      if ((count!.n as number) >= policy.maxPerOrg) {
        throw new ApiError(
          'conflict',
          `This org already has ${count!.n} event types, the most allowed (${policy.maxPerOrg}); delete one before registering another.`,
        );
      }
      // A concurrent PUT of the same new type waited on the lock and now finds it: it replaces it.
      const [inserted] = await tx<EventTypeRow[]>`
        insert into event_types (org_id, type, id, schema, description, deprecated, version)
        values (${orgId}, ${type}, ${uuidv7(Date.now())}, ${wanted.schemaJson}::text::json, ${wanted.description}, ${wanted.deprecated}, 1)
        on conflict (org_id, type) do nothing
        returning ${tx.unsafe(COLUMNS)}`;
      if (inserted) {
        await announce(tx, orgId);
        return { created: true, json: viewJson(inserted) };
      }
      return { created: false, json: viewJson(await replace(tx, orgId, type, wanted)) };
    }
    if (
      existing.schema === wanted.schemaJson &&
      existing.description === wanted.description &&
      existing.deprecated === wanted.deprecated
    ) {
      return { created: false, json: viewJson(existing) };
    }
    return { created: false, json: viewJson(await replace(tx, orgId, type, wanted)) };
  });
}

async function replace(tx: Queryable, orgId: string, type: string, wanted: TypeInput): Promise<EventTypeRow> {
  const [updated] = await tx<EventTypeRow[]>`
    update event_types set schema = ${wanted.schemaJson}::text::json, description = ${wanted.description}, deprecated = ${wanted.deprecated},
      version = version + 1, updated_at = now()
    where org_id = ${orgId} and type = ${type}
    returning ${tx.unsafe(COLUMNS)}`;
  await announce(tx, orgId);
  return updated!;
}

export async function getEventType(sql: Sql, orgId: string, type: string): Promise<string> {
  if (!TYPE_RE.test(type)) throw notFound('Event type');
  const [row] = await sql<
    EventTypeRow[]
  >`select ${sql.unsafe(COLUMNS)} from event_types where org_id = ${orgId} and type = ${type}`;
  if (!row) throw notFound('Event type');
  return viewJson(row);
}

export async function listEventTypes(sql: Sql, orgId: string): Promise<string> {
  const rows = await sql<
    EventTypeRow[]
  >`select ${sql.unsafe(COLUMNS)} from event_types where org_id = ${orgId} order by type`;
  return '{"event_types":[' + rows.map(viewJson).join(',') + ']}';
}

export async function deleteEventType(sql: Sql, orgId: string, type: string): Promise<void> {
  if (!TYPE_RE.test(type)) throw notFound('Event type');
  const deleted = await sql.begin(async (tx) => {
    const [row] = await tx`delete from event_types where org_id = ${orgId} and type = ${type} returning type`;
    if (row) await announce(tx, orgId);
    return row !== undefined;
  });
  if (!deleted) throw notFound('Event type');
}
