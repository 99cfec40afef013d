import { randomUUID } from 'node:crypto';
import type { Principal } from '../auth/verifier.js';
import type { HttpRequest, HttpResponse } from './uws.js';

/**
 * Everything a handler may know about a request. uWS's HttpRequest dies when its callback
 * returns, so every header we might need is read here, synchronously, once.
 */
export interface RequestContext {
  res: HttpResponse;
  /** Route label for metrics and logs, e.g. "POST /v1/events". */
  route: string;
  requestId: string;
  startedAt: number;
  aborted: boolean;
  done: boolean;
  authorization: string;
  apiKeyHeader: string;
  contentType: string;
  contentLength: string;
  idempotencyKey: string;
  query: string;
  params: string[];
  principal: Principal | null;
  /** The verification of an uncached key, started before the body is read; null otherwise. */
  verification: Promise<Principal | null> | null;
  /** The socket is paused until the key is verified (src/http/router.ts). */
  bodyPaused: boolean;
  /** Counted as in flight by the RequestTracker and not yet ended. */
  counted: boolean;
  /** The handler has the request (its body is in): from here on it ends the count itself. */
  handling: boolean;
  /** Headers added to whatever response is sent (rate-limit headers, for example). */
  extraHeaders: Array<[string, string]> | null;
}

const REQUEST_ID_RE = /^[A-Za-z0-9._:-]{1,128}$/;

/**
 * decodeURIComponent throws on a malformed escape (`/v1/events/%ff`). createContext runs outside
 * any try, in a uWS callback, so that throw killed the worker: one request took a process down
 * (found by test/fuzz.test.ts). A malformed parameter is kept raw; it then matches no resource (404).
 */
function decodeParameter(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}

/**
 * `onAborted` (built once per route) runs when the client goes away before the answer, e.g.
 * mid-body: then no body callback will ever come.
 */
export function createContext(
  res: HttpResponse,
  req: HttpRequest,
  route: string,
  paramCount: number,
  onAborted?: (ctx: RequestContext) => void,
): RequestContext {
  const incomingId = req.getHeader('x-request-id');
  const params: string[] = [];
  for (let i = 0; i < paramCount; i++) params.push(decodeParameter(req.getParameter(i)));
  const ctx: RequestContext = {
    res,
    route,
    requestId: incomingId !== '' && REQUEST_ID_RE.test(incomingId) ? incomingId : randomUUID(),
    startedAt: performance.now(),
    aborted: false,
    done: false,
    authorization: req.getHeader('authorization'),
    apiKeyHeader: req.getHeader('x-api-key'),
    contentType: req.getHeader('content-type'),
    contentLength: req.getHeader('content-length'),
    idempotencyKey: req.getHeader('idempotency-key'),
    query: req.getQuery() ?? '',
    params,
    principal: null,
    verification: null,
    bodyPaused: false,
    counted: false,
    handling: false,
    extraHeaders: null,
  };
  // uWS: an async response without onAborted terminates the process; attach before any await.
  res.onAborted(() => {
    ctx.aborted = true;
    onAborted?.(ctx);
  });
  return ctx;
}

/** The API key from `Authorization: Bearer …` or `X-API-Key`, or '' when neither is present. */
export function presentedApiKey(ctx: RequestContext): string {
  const auth = ctx.authorization;
  if (auth.length > 7 && auth.charCodeAt(6) === 32 && auth.slice(0, 6).toLowerCase() === 'bearer') {
    return auth.slice(7).trim();
  }
  return ctx.apiKeyHeader.trim();
}

/** True for `application/json`, with or without parameters such as charset. */
export function isJsonContentType(contentType: string): boolean {
  const semicolon = contentType.indexOf(';');
  const mediaType = (semicolon === -1 ? contentType : contentType.slice(0, semicolon)).trim().toLowerCase();
  return mediaType === 'application/json';
}
