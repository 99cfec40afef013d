/**
 * An endpoint's `event_types`: exact types (`user.signup`) or prefixes ending in `*` (`user.*`,
 * or `*` alone for everything). Empty means every type.
 */
export const FILTER_RE = /^(?:[A-Za-z0-9._:-]{1,128}|[A-Za-z0-9._:-]{0,127}\*)$/;
export const MAX_EVENT_TYPES = 100;

export function isEventTypeFilter(value: unknown): value is string {
  return typeof value === 'string' && FILTER_RE.test(value);
}

export type EventTypeMatcher = (type: string) => boolean;

const matchAll: EventTypeMatcher = () => true;

/** Built once per endpoint scan; the per-event test is a Set look-up and a few startsWith. */
export function eventTypeMatcher(filters: readonly string[]): EventTypeMatcher {
  if (filters.length === 0) return matchAll;
  const exact = new Set<string>();
  const prefixes: string[] = [];
  for (const filter of filters) {
    if (filter === '*') return matchAll;
    if (filter.endsWith('*')) prefixes.push(filter.slice(0, -1));
    else exact.add(filter);
  }
  return (type) => {
    if (exact.has(type)) return true;
    for (const prefix of prefixes) if (type.startsWith(prefix)) return true;
    return false;
  };
}
