import type { FieldError } from '../errors.js';

/**
 * The checks every listing route makes of its query string, reporting each problem in `details`
 * so that all of them come back in one 422.
 */

/** Every name not in `known`, and every name given twice (a misspelt `limt` would otherwise be ignored). */
export function checkQueryNames(search: URLSearchParams, known: ReadonlySet<string>, details: FieldError[]): void {
  const seen = new Set<string>();
  for (const name of search.keys()) {
    if (!known.has(name)) details.push({ field: name, message: 'unknown query parameter' });
    else if (seen.has(name)) details.push({ field: name, message: 'given more than once' });
    seen.add(name);
  }
}

/** `limit`: digits only (no more than `max` has), from 1 to `max`; `fallback` when absent. */
export function queryLimit(search: URLSearchParams, fallback: number, max: number, details: FieldError[]): number {
  const raw = search.get('limit');
  if (raw === null) return fallback;
  const limit = raw.length <= String(max).length && /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(limit >= 1 && limit <= max)) details.push({ field: 'limit', message: `must be an integer from 1 to ${max}` });
  return limit;
}
