import { isEventTypeFilter, MAX_EVENT_TYPES } from '../delivery/event-types.js';
import { ApiError, type FieldError } from '../errors.js';
import { checkFilter } from '../filter/filter.js';
import { isPlainObject } from '../json.js';

/** Request bodies of the consumer-group routes (API.md §4b), checked before anything runs. */

export const GROUP_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * `.` and `..` match the name rules but cannot be a path segment: URL parsers (browsers, fetch,
 * most HTTP clients) resolve `/v1/consumer-groups/..` to `/v1/`, even written `%2E%2E`, so such a
 * group could be created but never read, changed or deleted by a normal client. Refused when a
 * name is chosen (groups here, event types in src/event-types/service.ts).
 */
export function isDotSegment(name: string): boolean {
  return name === '.' || name === '..';
}
export const DOT_SEGMENT_MESSAGE = 'cannot be "." or "..": a URL path cannot name it';
export const MAX_VISIBILITY_TIMEOUT_S = 43_200;
export const MAX_MAX_DELIVERIES = 1_000;
export const DEFAULT_VISIBILITY_TIMEOUT_S = 30;
export const DEFAULT_MAX_DELIVERIES = 10;
export const DEFAULT_RECEIVE_MAX = 100;
export const MAX_RECEIVE = 1_000;
export const MAX_WAIT_S = 20;
export const MAX_GROUP_IDS = 1_000;
export const MAX_DELAY_S = 43_200;

export type GroupStart = 'earliest' | 'latest';

export interface GroupSettings {
  event_types: string[];
  /** The filter as sent (validated), or null. */
  filter: Record<string, unknown> | null;
  visibility_timeout_s: number;
  max_deliveries: number;
}

export interface NewGroup extends GroupSettings {
  name: string;
  start: GroupStart;
}

export interface ReceiveParams {
  max: number;
  visibilityTimeoutS: number | null;
  waitS: number;
}

/** Where a seek goes: a named end, or the first event received at or after a time (ms). */
export type SeekTarget = { kind: 'earliest' } | { kind: 'latest' } | { kind: 'time'; ms: number };

function objectBody(body: unknown, what: string): Record<string, unknown> {
  if (!isPlainObject(body))
    throw new ApiError('validation_failed', `The ${what} body must be a JSON object.`, [
      { field: 'body', message: 'must be a JSON object' },
    ]);
  return body;
}

function unknownFields(body: Record<string, unknown>, known: readonly string[], details: FieldError[]): void {
  for (const key of Object.keys(body)) if (!known.includes(key)) details.push({ field: key, message: 'unknown field' });
}

function integerIn(
  body: Record<string, unknown>,
  field: string,
  min: number,
  max: number,
  details: FieldError[],
): number | undefined {
  const value = body[field];
  if (value === undefined) return undefined;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    details.push({ field, message: `must be an integer from ${min} to ${max}` });
    return undefined;
  }
  return value;
}

function eventTypes(value: unknown, details: FieldError[]): string[] {
  if (!Array.isArray(value) || value.length > MAX_EVENT_TYPES || !value.every(isEventTypeFilter)) {
    details.push({
      field: 'event_types',
      message: `must be a list of up to ${MAX_EVENT_TYPES} event types or prefixes ending in * (user.*)`,
    });
    return [];
  }
  return [...new Set(value as string[])];
}

function fail(what: string, details: FieldError[]): never {
  throw new ApiError('validation_failed', `The ${what} request is invalid.`, details);
}

export function parseCreateGroup(raw: unknown): NewGroup {
  const body = objectBody(raw, 'consumer group');
  const details: FieldError[] = [];
  unknownFields(body, ['name', 'start', 'event_types', 'filter', 'visibility_timeout_s', 'max_deliveries'], details);
  const name = body.name;
  if (typeof name !== 'string' || !GROUP_NAME_RE.test(name))
    details.push({ field: 'name', message: 'must be 1-64 characters of A-Z a-z 0-9 . _ -' });
  else if (isDotSegment(name)) details.push({ field: 'name', message: DOT_SEGMENT_MESSAGE });
  const start = body.start ?? 'latest';
  if (start !== 'latest' && start !== 'earliest')
    details.push({ field: 'start', message: 'must be "latest" or "earliest"' });
  const types = body.event_types === undefined ? [] : eventTypes(body.event_types, details);
  const filter = body.filter === undefined ? null : checkFilter(body.filter, details);
  const visibility =
    integerIn(body, 'visibility_timeout_s', 1, MAX_VISIBILITY_TIMEOUT_S, details) ?? DEFAULT_VISIBILITY_TIMEOUT_S;
  const maxDeliveries = integerIn(body, 'max_deliveries', 1, MAX_MAX_DELIVERIES, details) ?? DEFAULT_MAX_DELIVERIES;
  if (details.length > 0) fail('consumer group', details);
  return {
    name: name as string,
    start: start as GroupStart,
    event_types: types,
    filter,
    visibility_timeout_s: visibility,
    max_deliveries: maxDeliveries,
  };
}

/** A PATCH: only the fields given change. */
export function parsePatchGroup(raw: unknown): Partial<GroupSettings> {
  const body = objectBody(raw, 'consumer group');
  const details: FieldError[] = [];
  unknownFields(body, ['event_types', 'filter', 'visibility_timeout_s', 'max_deliveries'], details);
  const patch: Partial<GroupSettings> = {};
  if (body.event_types !== undefined) patch.event_types = eventTypes(body.event_types, details);
  if (body.filter !== undefined) patch.filter = checkFilter(body.filter, details);
  const visibility = integerIn(body, 'visibility_timeout_s', 1, MAX_VISIBILITY_TIMEOUT_S, details);
  if (visibility !== undefined) patch.visibility_timeout_s = visibility;
  const maxDeliveries = integerIn(body, 'max_deliveries', 1, MAX_MAX_DELIVERIES, details);
  if (maxDeliveries !== undefined) patch.max_deliveries = maxDeliveries;
  if (details.length > 0) fail('consumer group', details);
  return patch;
}

export function parseReceive(raw: unknown): ReceiveParams {
  const body = raw === undefined ? {} : objectBody(raw, 'receive');
  const details: FieldError[] = [];
  unknownFields(body, ['max', 'visibility_timeout_s', 'wait_s'], details);
  const max = integerIn(body, 'max', 1, MAX_RECEIVE, details) ?? DEFAULT_RECEIVE_MAX;
  const visibility = integerIn(body, 'visibility_timeout_s', 1, MAX_VISIBILITY_TIMEOUT_S, details) ?? null;
  const wait = integerIn(body, 'wait_s', 0, MAX_WAIT_S, details) ?? 0;
  if (details.length > 0) fail('receive', details);
  return { max, visibilityTimeoutS: visibility, waitS: wait };
}

function idsOf(body: Record<string, unknown>, details: FieldError[], required: boolean): string[] | null {
  const ids = body.ids;
  if (ids === undefined && !required) return null;
  if (!Array.isArray(ids) || ids.length === 0 || ids.length > MAX_GROUP_IDS) {
    details.push({ field: 'ids', message: `must hold 1 to ${MAX_GROUP_IDS} event ids` });
    return [];
  }
  ids.forEach((id, index) => {
    if (typeof id !== 'string' || id.length === 0 || id.length > 64)
      details.push({ field: `ids[${index}]`, message: 'must be an event id string' });
  });
  return [...new Set(ids as string[])];
}

export function parseGroupAck(raw: unknown): string[] {
  const body = objectBody(raw, 'ack');
  const details: FieldError[] = [];
  unknownFields(body, ['ids'], details);
  const ids = idsOf(body, details, true)!;
  if (details.length > 0) fail('ack', details);
  return ids;
}

export function parseNack(raw: unknown): { ids: string[]; delayS: number } {
  const body = objectBody(raw, 'nack');
  const details: FieldError[] = [];
  unknownFields(body, ['ids', 'delay_s'], details);
  const ids = idsOf(body, details, true)!;
  const delayS = integerIn(body, 'delay_s', 0, MAX_DELAY_S, details) ?? 0;
  if (details.length > 0) fail('nack', details);
  return { ids, delayS };
}

export function parseExtend(raw: unknown): { ids: string[]; visibilityTimeoutS: number } {
  const body = objectBody(raw, 'extend');
  const details: FieldError[] = [];
  unknownFields(body, ['ids', 'visibility_timeout_s'], details);
  const ids = idsOf(body, details, true)!;
  const visibility = integerIn(body, 'visibility_timeout_s', 1, MAX_VISIBILITY_TIMEOUT_S, details);
  if (body.visibility_timeout_s === undefined) details.push({ field: 'visibility_timeout_s', message: 'is required' });
  if (details.length > 0) fail('extend', details);
  return { ids, visibilityTimeoutS: visibility! };
}

/** `{"ids"?: [...]}`: null redrives every dead event. */
export function parseRedrive(raw: unknown): string[] | null {
  const body = raw === undefined ? {} : objectBody(raw, 'redrive');
  const details: FieldError[] = [];
  unknownFields(body, ['ids'], details);
  const ids = idsOf(body, details, false);
  if (details.length > 0) fail('redrive', details);
  return ids;
}

const RFC3339_RE = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/i;

export function parseSeek(raw: unknown): SeekTarget {
  const body = objectBody(raw, 'seek');
  const details: FieldError[] = [];
  unknownFields(body, ['to'], details);
  const to = body.to;
  let target: SeekTarget | null = null;
  if (to === 'earliest' || to === 'latest') target = { kind: to };
  else if (typeof to === 'string' && RFC3339_RE.test(to) && Number.isFinite(Date.parse(to)))
    target = { kind: 'time', ms: Date.parse(to) };
  else details.push({ field: 'to', message: 'must be "earliest", "latest" or an RFC 3339 time with a time zone' });
  if (details.length > 0) fail('seek', details);
  return target!;
}

/** The dead list's cursor: the last seq shown, base64url. */
export function parseDeadCursor(query: string): string {
  const search = new URLSearchParams(query);
  const details: FieldError[] = [];
  for (const name of search.keys())
    if (name !== 'cursor') details.push({ field: name, message: 'unknown query parameter' });
  const cursor = search.get('cursor');
  let seq = '0';
  if (cursor !== null) {
    const decoded = /^[A-Za-z0-9_-]{1,32}$/.test(cursor) ? Buffer.from(cursor, 'base64url').toString('latin1') : '';
    if (/^\d{1,19}$/.test(decoded) && BigInt(decoded) < 1n << 63n) seq = decoded;
    else details.push({ field: 'cursor', message: 'is not a cursor this API issued' });
  }
  if (details.length > 0) throw new ApiError('validation_failed', 'Invalid query parameters.', details);
  return seq;
}

export function encodeDeadCursor(seq: string): string {
  return Buffer.from(seq, 'latin1').toString('base64url');
}
