/** One error type for every answer that is not a 2xx, with the API's code (API.md §1). */
export class TriggersApiError extends Error {
  override readonly name = 'TriggersApiError';

  constructor(
    readonly status: number,
    /** `validation_failed`, `rate_limited`, … or `http_<status>` when the body was not the API's error JSON. */
    readonly code: string,
    message: string,
    readonly requestId: string | null,
    readonly details: ReadonlyArray<{ field?: string; message?: string }>,
    /** From `Retry-After` (429 and 503 carry one), else null. */
    readonly retryAfterSeconds: number | null,
  ) {
    super(message);
  }

  /** 429 and 503 mean nothing was stored and the same request may be sent again later. */
  get retryable(): boolean {
    return this.status === 429 || this.status === 503;
  }

  static fromResponse(response: Response, body: unknown): TriggersApiError {
    const error = (
      body as { error?: { code?: unknown; message?: unknown; details?: unknown; request_id?: unknown } } | null
    )?.error;
    const code = typeof error?.code === 'string' ? error.code : `http_${response.status}`;
    const message =
      typeof error?.message === 'string' ? error.message : `HTTP ${response.status} ${response.statusText}`.trim();
    const requestId = typeof error?.request_id === 'string' ? error.request_id : response.headers.get('x-request-id');
    const details = Array.isArray(error?.details) ? error.details : [];
    return new TriggersApiError(
      response.status,
      code,
      message,
      requestId,
      details,
      parseRetryAfter(response.headers.get('retry-after')),
    );
  }
}

/**
 * The data of an openapi-fetch result, or a thrown TriggersApiError:
 * `const page = orThrow(await client.GET('/v1/inbox'))`.
 */
export function orThrow<D>(result: { data?: D; error?: unknown; response: Response }): D {
  if (result.response.ok) return result.data as D;
  throw TriggersApiError.fromResponse(result.response, result.error);
}

/** `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3). */
function parseRetryAfter(value: string | null): number | null {
  if (value === null || value.trim() === '') return null;
  if (/^\d+$/.test(value.trim())) return Number(value.trim());
  const at = Date.parse(value);
  return Number.isNaN(at) ? null : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}
