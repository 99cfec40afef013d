import { isStorageUnavailable } from '../db/unavailable.js';
import { ApiError, errorObject, unavailable, type UnavailableCause } from '../errors.js';
import { log } from '../log.js';
import { responseSentChannel, unavailableSentChannel, type ResponseSent, type UnavailableSent } from './channels.js';
import type { RequestContext } from './context.js';

const STATUS_LINES: Record<number, string> = {
  200: '200 OK',
  201: '201 Created',
  202: '202 Accepted',
  204: '204 No Content',
  400: '400 Bad Request',
  401: '401 Unauthorized',
  403: '403 Forbidden',
  404: '404 Not Found',
  405: '405 Method Not Allowed',
  409: '409 Conflict',
  413: '413 Payload Too Large',
  415: '415 Unsupported Media Type',
  422: '422 Unprocessable Entity',
  429: '429 Too Many Requests',
  500: '500 Internal Server Error',
  503: '503 Service Unavailable',
};

export interface Reply {
  status: number;
  /** A JSON document already serialised, or null for an empty body. */
  body: string | null;
  headers?: Record<string, string>;
  /** Why, when status is 503. */
  unavailableCause?: UnavailableCause;
}

export const json = (status: number, value: unknown, headers?: Record<string, string>): Reply => ({
  status,
  body: JSON.stringify(value),
  headers,
});

/**
 * Writes a response once. Safe to call after the client went away (it then does nothing but
 * count). `closeConnection` is for answers sent before the request body was read (413 while
 * streaming): the rest of the body is not worth receiving.
 */
export function send(
  ctx: RequestContext,
  status: number,
  body: string | null,
  headers?: Record<string, string>,
  closeConnection = false,
): void {
  if (ctx.done) return;
  ctx.done = true;
  const seconds = (performance.now() - ctx.startedAt) / 1000;
  if (responseSentChannel.hasSubscribers)
    responseSentChannel.publish({ route: ctx.route, status, seconds } satisfies ResponseSent);
  if (ctx.aborted) return;
  ctx.res.cork(() => {
    const res = ctx.res;
    res.writeStatus(STATUS_LINES[status] ?? String(status));
    // uWS writes a header as `name: value\r\n` and checks neither, so the headers every answer
    // carries go out in one call, joined by CRLF: a call per header measured +0.8 µs of CPU per
    // request (bench/bare-headers.ts). Every value here is ours: a request id that matched
    // REQUEST_ID_RE or a UUID, a time, rate-limit integers.
    let head = ctx.requestId + '\r\nX-Response-Time: ' + (seconds * 1000).toFixed(2) + 'ms';
    if (ctx.extraHeaders) for (const [name, value] of ctx.extraHeaders) head += '\r\n' + name + ': ' + value;
    res.writeHeader('X-Request-Id', head);
    if (headers) for (const name in headers) res.writeHeader(name, headers[name]!);
    if (body === null) {
      res.end(undefined, closeConnection);
    } else {
      // A reply may carry its own type (GET /metrics answers Prometheus text).
      if (headers === undefined || headers['Content-Type'] === undefined)
        res.writeHeader('Content-Type', 'application/json');
      res.end(body, closeConnection);
    }
  });
}

export function sendReply(ctx: RequestContext, reply: Reply): void {
  if (reply.status === 503) publishUnavailable(ctx, reply.unavailableCause);
  send(ctx, reply.status, reply.body, reply.headers);
}

export function sendError(ctx: RequestContext, error: ApiError, closeConnection = false): void {
  if (error.status === 503) publishUnavailable(ctx, error.unavailableCause);
  const body = errorObject(error.code, error.message, error.details) as Record<string, unknown>;
  body.request_id = ctx.requestId;
  send(ctx, error.status, JSON.stringify({ error: body }), error.headers, closeConnection);
}

function publishUnavailable(ctx: RequestContext, cause: UnavailableCause | undefined): void {
  if (!ctx.done && unavailableSentChannel.hasSubscribers)
    unavailableSentChannel.publish({ cause: cause ?? 'other' } satisfies UnavailableSent);
}

/** Anything thrown that is not an ApiError is a bug: log it with the request id, answer 500. */
export function sendFailure(ctx: RequestContext, error: unknown): void {
  if (error instanceof ApiError) {
    sendError(ctx, error);
    return;
  }
  // Postgres down or restarting (e.g. the key look-up of an uncached API key, GET /v1/events/:id):
  // the documented 503 with Retry-After, not a 500. See src/db/unavailable.ts and docs/RELIABILITY.md.
  if (isStorageUnavailable(error)) {
    log.warn({ err: (error as Error).message, request_id: ctx.requestId, route: ctx.route }, 'storage unavailable');
    sendError(ctx, unavailable('Storage is unavailable; retry shortly.', 1, 'storage'));
    return;
  }
  log.error({ err: error, request_id: ctx.requestId, route: ctx.route }, 'request failed');
  sendError(ctx, new ApiError('internal_error', 'Internal server error.'));
}
