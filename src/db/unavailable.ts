/**
 * Tells a storage outage from a bug. A request whose query failed because Postgres is down,
 * restarting, shutting down, out of connections or too slow must get the documented
 * `503 unavailable` with Retry-After (API.md §1), not a 500: the client should retry, and
 * nothing was stored. Anything else thrown by a query is still a bug and stays a 500.
 */

// Errors the `postgres` client raises itself, and socket errors from connecting or talking.
const CLIENT_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'ENOENT',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
]);

// SQLSTATE classes and codes that mean "not now", never "your data is wrong".
const SQLSTATE_CLASSES = ['08', '53', '57P']; // connection exception, insufficient resources, operator intervention
const SQLSTATE_CODES = new Set(['57014', '55P03', '40001', '40P01']); // canceled/timeout, lock not available, serialization, deadlock

export function isStorageUnavailable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const code = (error as { code?: unknown }).code;
  if (typeof code !== 'string') return false;
  if (CLIENT_CODES.has(code) || SQLSTATE_CODES.has(code)) return true;
  // SQLSTATEs are five characters; only the server's errors (PostgresError) carry them.
  return (
    code.length === 5 &&
    (error as { name?: unknown }).name === 'PostgresError' &&
    SQLSTATE_CLASSES.some((prefix) => code.startsWith(prefix))
  );
}
