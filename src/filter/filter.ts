import { ApiError, type FieldError } from '../errors.js';
import { isoMs } from '../ids.js';

/**
 * The filter language of API.md §5 (`filter`), written once for every feature that selects events
 * by their content: consumer groups now, webhook endpoints next. `parseFilter` checks a filter
 * sent by a client and compiles it, once, into a matcher; the per-event test is then plain
 * closures, no re-reading of the filter document.
 *
 * A filter is an object. Each key is `$and` / `$or` (a non-empty list of filters) or a dotted
 * path into the event (`type`, `payload.amount`, `payload.items.0`); its value is a literal
 * (equality) or an object of operators. All keys of a filter, and all operators of one path, must
 * hold. Comparisons apply only between values of the same JSON type (a number never matches a
 * string). A missing path matches only `$exists: false` and `$ne`.
 */

export type EventMatcher = (event: Readonly<Record<string, unknown>>) => boolean;

export interface CompiledFilter {
  match: EventMatcher;
  /** Some path reads `payload`: the caller must parse it before matching (otherwise it need not). */
  readsPayload: boolean;
}

/** Serialized, a filter is at most this many bytes. */
export const MAX_FILTER_BYTES = 8 * 1024;
/** `$and` / `$or` nest at most this deep (the filter itself is level 1); so does a literal value. */
export const MAX_FILTER_DEPTH = 10;
/** The first segment of a path: the event's fields. */
export const EVENT_FIELDS = new Set(['id', 'type', 'payload', 'dedup_id', 'occurred_at', 'received_at']);

const COMPARISONS = new Set(['$gt', '$gte', '$lt', '$lte']);
const OPERATORS = new Set(['$eq', '$ne', '$gt', '$gte', '$lt', '$lte', '$in', '$nin', '$exists', '$prefix']);

/** Thrown as 422 with `field` (the request field that holds the filter) and where in it. */
class FilterProblem extends Error {
  constructor(
    readonly where: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * Checks `value` as a filter and compiles it. Bad filters are `422 validation_failed` naming
 * `field` (e.g. "filter"), with the place inside it in the message.
 */
export function parseFilter(value: unknown, field = 'filter'): CompiledFilter {
  try {
    if (!isObject(value)) throw new FilterProblem('', 'must be a JSON object');
    const bytes = Buffer.byteLength(JSON.stringify(value));
    if (bytes > MAX_FILTER_BYTES)
      throw new FilterProblem('', `is ${bytes} bytes serialized; at most ${MAX_FILTER_BYTES}`);
    const state = { readsPayload: false };
    const match = compileFilter(value, '', 1, state);
    return { match, readsPayload: state.readsPayload };
  } catch (error) {
    if (!(error instanceof FilterProblem)) throw error;
    const at = error.where === '' ? '' : ` (at ${error.where})`;
    throw new ApiError('validation_failed', 'The filter is invalid.', [{ field, message: error.message + at }]);
  }
}

/**
 * A filter from a request body, checked: the value itself (null clears it), or null with its
 * problems added to `details` (API.md §5: `field: "filter"`), so they are answered with the
 * request's other bad fields.
 */
export function checkFilter(value: unknown, details: FieldError[]): Record<string, unknown> | null {
  if (value === null) return null;
  try {
    parseFilter(value);
    return value as Record<string, unknown>;
  } catch (error) {
    if (!(error instanceof ApiError)) throw error;
    details.push(...(error.details ?? []));
    return null;
  }
}

const MAX_CACHED = 1_000;
const compiledByText = new Map<string, CompiledFilter>();

/**
 * A stored filter (checked when it was sent), compiled once per distinct filter in this process:
 * every group and endpoint with the same filter shares one matcher.
 */
export function compiledFilter(filter: Record<string, unknown> | null): CompiledFilter | null {
  if (filter === null) return null;
  const key = JSON.stringify(filter);
  let compiled = compiledByText.get(key);
  if (!compiled) {
    if (compiledByText.size >= MAX_CACHED) compiledByText.clear();
    compiled = parseFilter(filter);
    compiledByText.set(key, compiled);
  }
  return compiled;
}

/** The event as a filter sees it (API.md §5: dotted paths into the event); the payload parsed only when a path reads it. */
export function filterView(
  event: {
    id: string;
    type: string;
    payload: string;
    dedupId: string | null;
    occurredAt: string | null;
    receivedAt: string;
  },
  withPayload: boolean,
): Record<string, unknown> {
  return {
    id: event.id,
    type: event.type,
    payload: withPayload ? JSON.parse(event.payload) : undefined,
    dedup_id: event.dedupId,
    occurred_at: event.occurredAt,
    received_at: event.receivedAt,
  };
}

/** An `events` row as the delivery reader and the consumer groups read it (payload as JSON text). */
export interface FilterableRow {
  id: string;
  type: string;
  payload: string;
  dedup_id: string | null;
  occurred_at: Date | null;
}

/** Whether an events row, received at `receivedAtMs`, passes `filter`. */
export function rowMatches(filter: CompiledFilter, row: FilterableRow, receivedAtMs: number): boolean {
  return filter.match(
    filterView(
      {
        id: row.id,
        type: row.type,
        payload: row.payload,
        dedupId: row.dedup_id,
        occurredAt: row.occurred_at ? isoMs(row.occurred_at.getTime()) : null,
        receivedAt: isoMs(receivedAtMs),
      },
      filter.readsPayload,
    ),
  );
}

function compileFilter(
  filter: Record<string, unknown>,
  where: string,
  level: number,
  state: { readsPayload: boolean },
): EventMatcher {
  if (level > MAX_FILTER_DEPTH) throw new FilterProblem(where, `nests more than ${MAX_FILTER_DEPTH} levels`);
  const parts: EventMatcher[] = [];
  for (const key of Object.keys(filter)) {
    const at = where === '' ? key : `${where}.${key}`;
    const operand = filter[key];
    if (key === '$and' || key === '$or') {
      if (!Array.isArray(operand) || operand.length === 0)
        throw new FilterProblem(at, `${key} takes a non-empty list of filters`);
      const subs = operand.map((sub, index) => {
        if (!isObject(sub)) throw new FilterProblem(`${at}[${index}]`, 'must be a filter object');
        return compileFilter(sub, `${at}[${index}]`, level + 1, state);
      });
      parts.push(key === '$and' ? allOf(subs) : anyOf(subs));
    } else if (key.startsWith('$')) {
      throw new FilterProblem(at, `unknown operator ${key} (only $and and $or at this level)`);
    } else {
      const path = parsePath(key, at);
      if (path[0] === 'payload') state.readsPayload = true;
      parts.push(compilePath(path, operand, at));
    }
  }
  return allOf(parts);
}

function parsePath(key: string, at: string): string[] {
  const path = key.split('.');
  if (key.length > 256 || path.some((segment) => segment === ''))
    throw new FilterProblem(at, 'a path is dotted names, e.g. payload.user.country');
  if (!EVENT_FIELDS.has(path[0]!))
    throw new FilterProblem(at, `a path starts with one of the event's fields: ${[...EVENT_FIELDS].join(', ')}`);
  return path;
}

/** A path's value: a literal (equality) or an object of operators, all of which must hold. */
function compilePath(path: string[], operand: unknown, at: string): EventMatcher {
  const read = pathReader(path);
  if (!isOperatorObject(operand, at)) {
    checkLiteral(operand, at);
    const equals = equalTo(operand);
    return (event) => {
      const value = read(event);
      return value !== undefined && equals(value);
    };
  }
  const tests: Array<(value: unknown) => boolean> = [];
  for (const operator of Object.keys(operand)) {
    const arg = operand[operator];
    const opAt = `${at}.${operator}`;
    if (!OPERATORS.has(operator)) throw new FilterProblem(opAt, `unknown operator ${operator}`);
    tests.push(compileOperator(operator, arg, opAt));
  }
  return (event) => {
    const value = read(event);
    for (const test of tests) if (!test(value)) return false;
    return true;
  };
}

/** One operator's test of a value (`undefined` for a missing path). */
function compileOperator(operator: string, arg: unknown, at: string): (value: unknown) => boolean {
  if (operator === '$exists') {
    if (typeof arg !== 'boolean') throw new FilterProblem(at, '$exists takes true or false');
    return arg ? (value) => value !== undefined : (value) => value === undefined;
  }
  if (operator === '$eq' || operator === '$ne') {
    checkLiteral(arg, at);
    const equals = equalTo(arg);
    return operator === '$eq'
      ? (value) => value !== undefined && equals(value)
      : (value) => value === undefined || !equals(value);
  }
  if (operator === '$in' || operator === '$nin') {
    if (!Array.isArray(arg)) throw new FilterProblem(at, `${operator} takes a list of values`);
    checkLiteral(arg, at);
    const within = memberOf(arg);
    return operator === '$in'
      ? (value) => value !== undefined && within(value)
      : (value) => value !== undefined && !within(value);
  }
  if (operator === '$prefix') {
    if (typeof arg !== 'string') throw new FilterProblem(at, '$prefix takes a string');
    return (value) => typeof value === 'string' && value.startsWith(arg);
  }
  if (COMPARISONS.has(operator)) {
    if (typeof arg !== 'number' && typeof arg !== 'string')
      throw new FilterProblem(at, `${operator} takes a number or a string`);
    const kind = typeof arg;
    switch (operator) {
      case '$gt':
        return (value) => typeof value === kind && (value as number) > (arg as number);
      case '$gte':
        return (value) => typeof value === kind && (value as number) >= (arg as number);
      case '$lt':
        return (value) => typeof value === kind && (value as number) < (arg as number);
      default:
        return (value) => typeof value === kind && (value as number) <= (arg as number);
    }
  }
  throw new FilterProblem(at, `unknown operator ${operator}`);
}

/**
 * An object whose keys all start with `$` is operators; one with none is a literal to compare
 * with; a mix is an error (a typo such as `{"$gt": 1, "lt": 5}` would otherwise silently compare).
 */
function isOperatorObject(operand: unknown, at: string): operand is Record<string, unknown> {
  if (!isObject(operand)) return false;
  const keys = Object.keys(operand);
  const dollars = keys.filter((key) => key.startsWith('$')).length;
  if (dollars > 0 && dollars < keys.length)
    throw new FilterProblem(at, 'an object of operators has only $ keys; a literal object has none');
  return dollars > 0;
}

function checkLiteral(value: unknown, at: string, depth = 1): void {
  if (depth > MAX_FILTER_DEPTH) throw new FilterProblem(at, `a value nests more than ${MAX_FILTER_DEPTH} levels`);
  if (Array.isArray(value)) for (const item of value) checkLiteral(item, at, depth + 1);
  else if (isObject(value)) for (const key of Object.keys(value)) checkLiteral(value[key], at, depth + 1);
}

function pathReader(path: string[]): (event: Readonly<Record<string, unknown>>) => unknown {
  if (path.length === 1) {
    const name = path[0]!;
    return (event) => (Object.hasOwn(event, name) ? event[name] : undefined);
  }
  return (event) => {
    let value: unknown = event;
    for (const segment of path) {
      if (Array.isArray(value)) {
        // An array is indexed by a decimal segment (`items.0`); any other segment is missing.
        if (!/^(0|[1-9]\d*)$/.test(segment)) return undefined;
        value = value[Number(segment)];
      } else if (isObject(value)) {
        value = Object.hasOwn(value, segment) ? value[segment] : undefined;
      } else {
        return undefined;
      }
      if (value === undefined) return undefined;
    }
    return value;
  };
}

/** Equality of JSON values: same type, same value (objects key by key, arrays in order). */
function equalTo(expected: unknown): (value: unknown) => boolean {
  if (expected === null || typeof expected !== 'object') return (value) => value === expected;
  return (value) => jsonEqual(value, expected);
}

function memberOf(list: unknown[]): (value: unknown) => boolean {
  const primitives = new Set<unknown>();
  const composites: unknown[] = [];
  for (const item of list) {
    if (item !== null && typeof item === 'object') composites.push(item);
    else primitives.add(item);
  }
  // Set uses SameValueZero: 1 and "1" stay apart, as same-type comparison wants.
  return (value) => {
    if (value === null || typeof value !== 'object') return primitives.has(value);
    for (const item of composites) if (jsonEqual(value, item)) return true;
    return false;
  };
}

export function jsonEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!jsonEqual(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const aKeys = Object.keys(a);
  if (aKeys.length !== Object.keys(b).length) return false;
  for (const key of aKeys) {
    if (!Object.hasOwn(b, key) || !jsonEqual((a as Record<string, unknown>)[key], (b as Record<string, unknown>)[key]))
      return false;
  }
  return true;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

const matchAll: EventMatcher = () => true;

function allOf(parts: EventMatcher[]): EventMatcher {
  if (parts.length === 0) return matchAll;
  if (parts.length === 1) return parts[0]!;
  return (event) => {
    for (const part of parts) if (!part(event)) return false;
    return true;
  };
}

function anyOf(parts: EventMatcher[]): EventMatcher {
  if (parts.length === 1) return parts[0]!;
  return (event) => {
    for (const part of parts) if (part(event)) return true;
    return false;
  };
}
