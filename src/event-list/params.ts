import { isEventTypeFilter } from '../delivery/event-types.js';
import { ApiError, type FieldError } from '../errors.js';
import { checkQueryNames, queryLimit } from '../http/query.js';
import { smallestUuidv7At } from '../ids.js';
import { normaliseTimestamp } from '../ingest/validate.js';
import { decodeListCursor } from './cursor.js';

export const DEFAULT_LIST_LIMIT = 50;
export const MAX_LIST_LIMIT = 100;
/** The window when `since` is not given: the last 24 hours (before `until` when that is given). */
export const DEFAULT_WINDOW_MS = 24 * 60 * 60 * 1000;

const DAY_MS = 24 * 60 * 60 * 1000;
/** Above every event id: a page without cursor or `until` starts from the newest event. */
export const ABOVE_EVERY_ID = 'ffffffff-ffff-ffff-ffff-ffffffffffff';

/** Which types a page holds: all, one exact type, or every type starting with a prefix. */
export type ListTypeFilter = { kind: 'all' } | { kind: 'exact'; type: string } | { kind: 'prefix'; prefix: string };

export interface EventListParams {
  limit: number;
  filter: ListTypeFilter;
  /** received_at >= sinceMs (inclusive), as resolved: given, from the cursor, or the default window. */
  sinceMs: number;
  /** received_at < untilMs (exclusive), or null for no upper bound. */
  untilMs: number | null;
  /** Events with ids strictly below this one: the cursor's position, or the end of the window. */
  beforeId: string;
  /** The smallest id the window can hold (ids at or above it are received at sinceMs or later). */
  sinceId: string;
}

const KNOWN = new Set(['type', 'since', 'until', 'limit', 'cursor']);
const TIME_MESSAGE = 'must be an RFC 3339 timestamp with a time zone, e.g. 2026-01-31T12:00:00Z';

/**
 * Parses GET /v1/events's query string; every bad or unknown parameter is reported at once.
 * `now` and `retentionDays` bound the window: nothing older than the retention is kept, so a
 * `since` before it is moved up to it (fewer partitions to look at, same answer).
 */
export function parseEventListParams(query: string, now: number, retentionDays: number): EventListParams {
  const search = new URLSearchParams(query);
  const details: FieldError[] = [];
  checkQueryNames(search, KNOWN, details);
  const limit = queryLimit(search, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT, details);

  let filter: ListTypeFilter = { kind: 'all' };
  const rawType = search.get('type');
  if (rawType !== null) {
    if (!isEventTypeFilter(rawType))
      details.push({
        field: 'type',
        message: 'must be an event type (1-128 of A-Z a-z 0-9 . _ : -) or a prefix ending in *, e.g. user.*',
      });
    else if (rawType === '*') filter = { kind: 'all' };
    else if (rawType.endsWith('*')) filter = { kind: 'prefix', prefix: rawType.slice(0, -1) };
    else filter = { kind: 'exact', type: rawType };
  }

  const since = timeParam(search, 'since', details);
  const until = timeParam(search, 'until', details);
  if (since !== null && until !== null && since >= until)
    details.push({ field: 'until', message: 'must be later than since' });

  const rawCursor = search.get('cursor');
  const cursor = rawCursor === null ? null : decodeListCursor(rawCursor);
  if (rawCursor !== null && cursor === null)
    details.push({ field: 'cursor', message: 'is not a cursor this API issued' });

  if (details.length > 0) throw new ApiError('validation_failed', 'Invalid query parameters.', details);

  const oldestKept = now - (retentionDays + 1) * DAY_MS;
  const sinceMs = Math.max(since ?? cursor?.sinceMs ?? (until ?? now) - DEFAULT_WINDOW_MS, oldestKept);
  // Ids are compared as strings: lowercase hex of the same layout sorts as the uuids do.
  // An `until` before the retention leaves an empty window (empty() below); no id is made for it.
  let beforeId = until === null ? ABOVE_EVERY_ID : smallestUuidv7At(Math.max(until, sinceMs));
  if (cursor !== null && cursor.beforeId < beforeId) beforeId = cursor.beforeId;
  return { limit, filter, sinceMs, untilMs: until, beforeId, sinceId: smallestUuidv7At(sinceMs) };
}

/** A timestamp parameter in milliseconds, null when absent (or bad, which goes into details). */
function timeParam(search: URLSearchParams, name: string, details: FieldError[]): number | null {
  const raw = search.get(name);
  if (raw === null) return null;
  const normalised = normaliseTimestamp(raw);
  if (normalised === null) {
    details.push({ field: name, message: TIME_MESSAGE });
    return null;
  }
  return Date.parse(normalised);
}

/** The window holds nothing (an `until` at or before the oldest event kept): no query needed. */
export function isEmptyWindow(params: EventListParams): boolean {
  return params.untilMs !== null && params.untilMs <= params.sinceMs;
}
