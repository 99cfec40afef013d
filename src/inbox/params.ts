import { ApiError, type FieldError } from '../errors.js';
import { checkQueryNames, queryLimit } from '../http/query.js';
import { isPlainObject } from '../json.js';
import { ASC_START, DESC_START, decodeCursor, type InboxOrder, type InboxPosition } from './cursor.js';
import type { TypeFilter } from './queries.js';

export const DEFAULT_LIMIT = 100;
export const MAX_LIMIT = 1000;
export const MAX_ACK_IDS = 1000;

export interface InboxParams {
  limit: number;
  order: InboxOrder;
  /** Rows strictly after this position; the start of the order when no cursor was given. */
  from: InboxPosition;
  filter: TypeFilter;
}

const KNOWN = new Set(['limit', 'cursor', 'type', 'order']);
const TYPE_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * Parses GET /v1/inbox's query string. Every bad or unknown parameter is reported at once in
 * `details` (a misspelt `limt` would otherwise be silently ignored).
 */
export function parseInboxParams(query: string): InboxParams {
  const search = new URLSearchParams(query);
  const details: FieldError[] = [];
  checkQueryNames(search, KNOWN, details);
  const limit = queryLimit(search, DEFAULT_LIMIT, MAX_LIMIT, details);

  let order: InboxOrder = 'asc';
  const rawOrder = search.get('order');
  if (rawOrder !== null) {
    if (rawOrder === 'asc' || rawOrder === 'desc') order = rawOrder;
    else details.push({ field: 'order', message: 'must be asc or desc' });
  }

  let filter: TypeFilter = { kind: 'all' };
  const rawType = search.get('type');
  if (rawType !== null) {
    if (rawType === '*') filter = { kind: 'all' };
    else if (rawType.endsWith('*') && TYPE_RE.test(rawType.slice(0, -1)))
      filter = { kind: 'prefix', prefix: rawType.slice(0, -1) };
    else if (TYPE_RE.test(rawType)) filter = { kind: 'exact', type: rawType };
    else
      details.push({
        field: 'type',
        message: 'must be an event type (1-128 of A-Z a-z 0-9 . _ : -) or a prefix ending in *, e.g. user.*',
      });
  }

  let from: InboxPosition = order === 'asc' ? ASC_START : DESC_START;
  const rawCursor = search.get('cursor');
  if (rawCursor !== null) {
    const decoded = decodeCursor(rawCursor, order);
    if (decoded === 'malformed') details.push({ field: 'cursor', message: 'is not a cursor this API issued' });
    else if (decoded === 'order')
      details.push({
        field: 'cursor',
        message: `was issued for order=${order === 'asc' ? 'desc' : 'asc'}; pass the same order`,
      });
    else from = decoded;
  }

  if (details.length > 0) throw new ApiError('validation_failed', 'Invalid query parameters.', details);
  return { limit, order, from, filter };
}

/** `{"ids": [...]}` with 1 to 1000 strings; duplicates are folded. */
export function parseAckBody(body: unknown): string[] {
  if (!isPlainObject(body)) {
    throw new ApiError('validation_failed', 'The body must be {"ids": [...]}.', [
      { field: 'body', message: 'must be a JSON object' },
    ]);
  }
  const details: FieldError[] = Object.keys(body)
    .filter((key) => key !== 'ids')
    .map((field) => ({ field, message: 'unknown field' }));
  const ids = body.ids;
  if (!Array.isArray(ids)) {
    details.push({ field: 'ids', message: 'must be an array of event ids' });
  } else if (ids.length === 0 || ids.length > MAX_ACK_IDS) {
    details.push({ field: 'ids', message: `must hold 1 to ${MAX_ACK_IDS} event ids` });
  } else {
    ids.forEach((id, index) => {
      if (typeof id !== 'string' || id.length === 0 || id.length > 64)
        details.push({ field: `ids[${index}]`, message: 'must be an event id string' });
    });
  }
  if (details.length > 0) throw new ApiError('validation_failed', 'The ack request is invalid.', details);
  return [...new Set(ids as string[])];
}
