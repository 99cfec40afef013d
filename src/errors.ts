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

export interface FieldError {
  field: string;
  message: string;
}

export class ApiError extends Error {
  readonly status: number;
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
export const unavailable = (message: string, retryAfterSeconds = 1) =>
  new ApiError('unavailable', message, undefined, { 'Retry-After': String(retryAfterSeconds) });
