import { ApiError, type FieldError } from '../errors.js';

/** An event that passed validation: every field is safe to hand to COPY as it is. */
export interface ValidEvent {
  type: string;
  /** The payload serialised once, here; it is what COPY writes. */
  payloadJson: string;
  dedupId: string | null;
  /** RFC 3339 UTC with milliseconds, or null. */
  occurredAt: string | null;
  /** 1-256 characters, or null (API.md §3). */
  orderingKey: string | null;
  /** The version of the type's schema it was checked against (src/event-types/registry.ts), or null. */
  schemaVersion: number | null;
}

export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** Deeper payloads are refused: Postgres' jsonb parser recurses, and no real event needs more. */
export const MAX_PAYLOAD_DEPTH = 100;
export const TYPE_RE = /^[A-Za-z0-9._:-]{1,128}$/;
const RFC3339_RE = /^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$/;
const FIELDS = new Set(['type', 'payload', 'dedup_id', 'occurred_at', 'ordering_key']);

export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * Checks what JSON.parse accepts but Postgres' jsonb does not, so a flush never fails on one bad
 * row: nesting deeper than MAX_PAYLOAD_DEPTH and numbers out of range (JSON.parse turns 1e400
 * into Infinity). Iterative and visiting only containers on its stack, so a hostile 100 000-level
 * document cannot overflow the stack and a flat payload costs one pass. Strings are checked on the
 * serialised text instead (see serialisedProblem). Returns a message, or null when fine.
 */
export function structureProblem(root: unknown): string | null {
  const stack: object[] = [root as object];
  const depths: number[] = [1];
  while (stack.length > 0) {
    const container = stack.pop()!;
    const depth = depths.pop()!;
    if (depth > MAX_PAYLOAD_DEPTH) return `is nested deeper than ${MAX_PAYLOAD_DEPTH} levels`;
    const values = Array.isArray(container) ? container : Object.values(container);
    for (let i = 0; i < values.length; i++) {
      const value = values[i];
      if (typeof value === 'object') {
        if (value !== null) {
          stack.push(value);
          depths.push(depth + 1);
        }
      } else if (typeof value === 'number' && !Number.isFinite(value)) {
        return 'contains a number out of range';
      }
    }
  }
  return null;
}

// JSON.stringify escapes U+0000 as \u0000 and a lone surrogate as \udXXX (paired surrogates are
// written as characters), so these escapes in the output are the only way such strings show.
const SUSPICIOUS_ESCAPE = /\\u0000|\\ud[89a-f]/i;

/** NUL characters or lone surrogates in any string or key, found on the serialised payload. */
function serialisedProblem(json: string): string | null {
  if (json.indexOf('\\u') === -1 || !SUSPICIOUS_ESCAPE.test(json)) return null;
  // The escape may be a literal backslash followed by "u0000" inside a string: look properly.
  return containsUnstorableString(JSON.parse(json)) ? 'contains a NUL character or invalid Unicode' : null;
}

function containsUnstorableString(root: unknown): boolean {
  const stack: unknown[] = [root];
  while (stack.length > 0) {
    const value = stack.pop();
    if (typeof value === 'string') {
      if (!isStorableString(value)) return true;
    } else if (Array.isArray(value)) {
      for (const item of value) stack.push(item);
    } else if (typeof value === 'object' && value !== null) {
      for (const key in value) {
        if (!isStorableString(key)) return true;
        stack.push((value as Record<string, unknown>)[key]);
      }
    }
  }
  return false;
}

function isStorableString(value: string): boolean {
  return value.indexOf('\u0000') === -1 && value.isWellFormed();
}

/**
 * What a timestamptz column takes, as this API keeps it (API.md §3): 0001-01-01T00:00:00.000Z to
 * 9999-12-31T23:59:59.999Z, once converted to UTC. Date.parse reads years 0000 and 9999 with an
 * offset that crosses into year 0 or 10000, and toISOString writes them ("0000-…", "+010000-…"):
 * Postgres refuses those in a text COPY and the dedup statement, which once failed every event of
 * the flush, other orgs' included; a binary COPY would have stored them.
 */
export const MIN_TIMESTAMP_MS = -62_135_596_800_000;
export const MAX_TIMESTAMP_MS = 253_402_300_799_999;
const DAYS_IN_MONTH = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];

/** RFC 3339 with a time zone → the same instant in UTC with milliseconds, or null if invalid. */
export function normaliseTimestamp(value: string): string | null {
  const match = RFC3339_RE.exec(value);
  if (!match) return null;
  const [, year, month, day, hour, minute, second] = match;
  const monthNumber = Number(month);
  const dayNumber = Number(day);
  if (monthNumber < 1 || monthNumber > 12 || dayNumber < 1 || dayNumber > DAYS_IN_MONTH[monthNumber]!) return null;
  // Date.parse rolls 02-30 and a non-leap 02-29 over into March instead of refusing them.
  if (monthNumber === 2 && dayNumber === 29 && !isLeapYear(Number(year))) return null;
  if (Number(hour) > 23 || Number(minute) > 59 || Number(second) > 60) return null;
  const ms = Date.parse(value.replace(/[Tt]/, 'T').replace(/z$/, 'Z'));
  // NaN fails both comparisons: a leap second (:60), which Date.parse refuses, is refused too.
  return ms >= MIN_TIMESTAMP_MS && ms <= MAX_TIMESTAMP_MS ? new Date(ms).toISOString() : null;
}

function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

/**
 * Validates one event object. Returns the event, or throws ApiError: 422 listing every bad field,
 * or 413 when the payload alone is over 256 KiB serialised.
 */
export function validateEvent(input: unknown, headerDedupId: string): ValidEvent {
  if (!isPlainObject(input)) {
    throw new ApiError('validation_failed', 'An event must be a JSON object.', [
      { field: 'body', message: 'must be a JSON object' },
    ]);
  }
  const details: FieldError[] = [];
  for (const key in input) {
    if (!FIELDS.has(key)) details.push({ field: key, message: 'unknown field' });
  }

  const type = input.type;
  if (typeof type !== 'string' || !TYPE_RE.test(type)) {
    details.push({
      field: 'type',
      message: type === undefined ? 'is required' : 'must be 1-128 characters of A-Z a-z 0-9 . _ : -',
    });
  }

  const payload = input.payload;
  let payloadJson = '';
  if (!isPlainObject(payload)) {
    details.push({ field: 'payload', message: payload === undefined ? 'is required' : 'must be a JSON object' });
  } else {
    // Structure first: JSON.stringify recurses, so depth must be bounded before serialising.
    let problem = structureProblem(payload);
    if (!problem) {
      payloadJson = JSON.stringify(payload);
      problem = serialisedProblem(payloadJson);
    }
    if (problem) details.push({ field: 'payload', message: problem });
  }

  let dedupId: string | null = null;
  const rawDedup = input.dedup_id !== undefined ? input.dedup_id : headerDedupId === '' ? undefined : headerDedupId;
  if (rawDedup !== undefined && rawDedup !== null) {
    if (typeof rawDedup !== 'string' || rawDedup.length < 1 || rawDedup.length > 256 || !isStorableString(rawDedup)) {
      details.push({
        field: input.dedup_id !== undefined ? 'dedup_id' : 'Idempotency-Key',
        message: 'must be a string of 1-256 characters',
      });
    } else {
      dedupId = rawDedup;
    }
  }

  let occurredAt: string | null = null;
  if (input.occurred_at !== undefined && input.occurred_at !== null) {
    occurredAt = typeof input.occurred_at === 'string' ? normaliseTimestamp(input.occurred_at) : null;
    if (occurredAt === null)
      details.push({
        field: 'occurred_at',
        message: 'must be an RFC 3339 timestamp with a time zone, in years 0001-9999 once converted to UTC',
      });
  }

  let orderingKey: string | null = null;
  const rawKey = input.ordering_key;
  if (rawKey !== undefined && rawKey !== null) {
    if (typeof rawKey !== 'string' || rawKey.length < 1 || rawKey.length > 256 || !isStorableString(rawKey)) {
      details.push({ field: 'ordering_key', message: 'must be a string of 1-256 characters' });
    } else {
      orderingKey = rawKey;
    }
  }

  if (details.length > 0) throw new ApiError('validation_failed', 'The event has invalid fields.', details);
  if (payloadJson.length > MAX_PAYLOAD_BYTES / 4 && Buffer.byteLength(payloadJson) > MAX_PAYLOAD_BYTES) {
    throw new ApiError('payload_too_large', `payload is over ${MAX_PAYLOAD_BYTES} bytes serialised.`, [
      { field: 'payload', message: `must be at most ${MAX_PAYLOAD_BYTES} bytes serialised` },
    ]);
  }
  return { type: type as string, payloadJson, dedupId, occurredAt, orderingKey, schemaVersion: null };
}
