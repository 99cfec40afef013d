/**
 * Checks on values that came out of JSON.parse (request bodies, query parameters decoded as JSON),
 * shared by every room that validates input: ingest, inbox, consumer groups, webhooks, admin.
 */

/** A JSON object: not null, not an array. */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
