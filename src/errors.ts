/**
 * One error type for everything a client may see. `code` is a stable string from API.md's table;
 * src/http/respond.ts is the one place that turns it into the documented JSON.
 */
export type ErrorCode =
  | 'invalid_json'
  | 'unauthorized'
  | 'forbidden'
  | 'not_found'
  | 'method_not_allowed'
  | 'conflict'
  | 'payload_too_large'
  | 'unsupported_media_type'
  | 'validation_failed'
  | 'rate_limited'
  | 'unavailable'
  | 'internal_error';

export const STATUS_OF: Record<ErrorCode, number> = {
  invalid_json: 400,
  unauthorized: 401,
  forbidden: 403,
  not_found: 404,
  method_not_allowed: 405,
  conflict: 409,
  payload_too_large: 413,
  unsupported_media_type: 415,
  validation_failed: 422,
  rate_limited: 429,
  unavailable: 503,
  internal_error: 500,
};

/**
 * Why a 503 was answered: the `cause` label of http_unavailable_total (docs/METRICS.md). Each
 * place that refuses with 503 names one, so an operator can tell overload from an outage.
 */
export const UNAVAILABLE_CAUSES = [
  'overloaded', // the HTTP worker's event queue is full (MAX_QUEUED_EVENTS)
  'auth_overloaded', // too many API key verifications waiting for a hash thread (AUTH_QUEUE_LIMIT)
  'storage', // Postgres failed or refused a query or a flush
  'flush_timeout', // a group-commit flush did not finish within FLUSH_TIMEOUT_MS
  'shutting_down', // the process is draining
  'metrics_timeout', // GET /metrics: the primary did not answer in time
  'dependency_down', // GET /status: a required dependency is down
  'other', // a 503 whose maker named no cause (a bug to fix: name it)
] as const;
export type UnavailableCause = (typeof UNAVAILABLE_CAUSES)[number];

export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
  /** For a 503, why (set by `unavailable`). */
  unavailableCause?: UnavailableCause;
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly details?: FieldError[],
    /** Extra response headers, e.g. Retry-After or Allow. */
    readonly headers?: Record<string, string>,
  ) {
    super(message);
    this.status = STATUS_OF[code];
  }
}

/** The error body a client sees, without request_id (added by the responder). */
export function errorObject(code: ErrorCode, message: string, details?: FieldError[]) {
  return details && details.length > 0 ? { code, message, details } : { code, message };
}

export const unauthorized = () => new ApiError('unauthorized', 'Missing or invalid API key.');
export const notFound = (what = 'Resource') => new ApiError('not_found', `${what} not found.`);
export const unavailable = (message: string, retryAfterSeconds = 1, cause: UnavailableCause = 'other') => {
  const error = new ApiError('unavailable', message, undefined, { 'Retry-After': String(retryAfterSeconds) });
  error.unavailableCause = cause;
  return error;
};
