/**
 * A group named `.` or `..` (the API allows them: `[A-Za-z0-9._-]{1,64}`), or an event type of
 * that name, cannot be put in a URL path: every WHATWG URL parser, the browser's fetch included,
 * reads `/v1/consumer-groups/..` (even spelled `%2E%2E`) as `/v1/`, so a call meant for the group
 * would go to another route. The console refuses to send those instead.
 */
export function unaddressable(name: string): boolean {
  return name === '.' || name === '..';
}

export function unaddressableNote(what: string, name: string): string {
  return `The ${what} "${name}" cannot be reached from a browser: a URL path reads "${name}" as a folder step, so every request for it would go to another route. Use a client that sends the path as is (curl --path-as-is).`;
}
