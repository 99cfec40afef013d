import { createHash, timingSafeEqual } from 'node:crypto';
import { SCOPE_BITS, type Scope } from '../auth/keys.js';
import type { ApiKeyVerifier, Principal } from '../auth/verifier.js';
import { ApiError, unauthorized, unavailable } from '../errors.js';
import type { RouteDoc } from '../openapi/operation.js';
import { parseJson, readBody } from './body.js';
import { createContext, isJsonContentType, presentedApiKey, type RequestContext } from './context.js';
import { sendError, sendFailure, sendReply, type Reply } from './respond.js';
import type { RequestTracker } from './tracker.js';
import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.js';

export type Method = 'get' | 'post' | 'put' | 'patch' | 'del';
const METHOD_NAMES: Record<Method, string> = { get: 'GET', post: 'POST', put: 'PUT', patch: 'PATCH', del: 'DELETE' };

/**
 * A route, declared once at start. Everything the request path needs (scope bit, limits, label)
 * is resolved into the registered closure, so per request there is nothing left to look up.
 */
export interface RouteSpec {
  method: Method;
  /** uWS pattern, e.g. "/v1/events/:id". */
  path: string;
  auth: 'key' | 'admin' | 'public';
  scope?: Scope;
  /** Present for routes that take a JSON body: the most bytes accepted. */
  bodyLimit?: number;
  /** A JSON body is optional (an empty body is passed as undefined). */
  bodyOptional?: boolean;
  /** Its part of the OpenAPI document (GET /openapi.json): parameters, body and answers. */
  doc: RouteDoc;
  handle(ctx: RequestContext, body: unknown): Reply | Promise<Reply>;
}

export interface RouterDeps {
  verifier: ApiKeyVerifier;
  adminToken: string | null;
  /** Counts requests in progress, so a drain knows when it is done. */
  tracker: RequestTracker;
  /** Called once a key's principal is known (rate-limit headers); may wait the first time an org is seen. */
  afterAuth?(ctx: RequestContext): void | Promise<void>;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}

export function registerRoutes(app: TemplatedApp, routes: RouteSpec[], deps: RouterDeps): void {
  const adminDigest = deps.adminToken ? digest(deps.adminToken) : null;

  // The client went away before the answer. Mid-body no body callback will ever come, so the count
  // ends here; once the handler has the request, the handler's own end does it.
  const endAbortedRead = (ctx: RequestContext): void => {
    if (!ctx.handling) deps.tracker.end(ctx);
  };

  // The body of a request with an uncached key is not read while its key is being verified: the
  // socket is paused (uWS hands over at most what arrived with the headers), so a key that turns
  // out unknown, revoked or wrong gets its 401 without its body buffered (API.md §2: an 8 MiB
  // batch under a random kid costs a look-up, not 8 MiB).
  const verifyBeforeBody = (ctx: RequestContext, key: string): void => {
    const verification = deps.verifier.verify(key);
    ctx.verification = verification;
    ctx.res.pause();
    ctx.bodyPaused = true;
    verification.then(
      (principal) => keyVerified(ctx, principal),
      (error: unknown) => keyRefused(ctx, error),
    );
  };
  // Runs before run()'s own await of the same promise (registered first), so the socket is
  // resumed before any answer: a response ended on a paused socket loses its connection.
  const keyVerified = (ctx: RequestContext, principal: Principal | null): void => {
    if (ctx.aborted || ctx.done) return;
    resumeBody(ctx);
    if (principal === null) answerBeforeBody(ctx, unauthorized());
    else ctx.principal = principal;
  };
  // Refused: when the body is still arriving, answer now; the rest of the body drains and is
  // dropped unbuffered (readBody). Once the body is in, run() answers instead.
  const keyRefused = (ctx: RequestContext, error: unknown): void => {
    if (ctx.aborted || ctx.done) return;
    resumeBody(ctx);
    answerBeforeBody(ctx, error);
  };
  const resumeBody = (ctx: RequestContext): void => {
    if (!ctx.bodyPaused) return;
    ctx.bodyPaused = false;
    if (!ctx.aborted) ctx.res.resume();
  };
  const answerBeforeBody = (ctx: RequestContext, error: unknown): void => {
    if (ctx.handling) return;
    deps.tracker.end(ctx);
    sendFailure(ctx, error);
  };
  const methodsByPath = new Map<string, string[]>();

  for (const spec of routes) {
    const label = `${METHOD_NAMES[spec.method]} ${spec.path}`;
    const paramCount = (spec.path.match(/:/g) ?? []).length;
    const scopeBit = spec.scope ? SCOPE_BITS[spec.scope] : 0;
    const methods = methodsByPath.get(spec.path) ?? [];
    methods.push(METHOD_NAMES[spec.method]);
    methodsByPath.set(spec.path, methods);

    // Answers given before the body is read (413, 415, a body that is not UTF-8) carry the
    // RateLimit-* headers too when the key is already cached here: the org's bucket is in memory
    // (or loads for next time). An uncached key is not verified for a request that is refused
    // anyway, so no org is known and no headers go out.
    const rateLimitHeadersIfKnown = (ctx: RequestContext): void => {
      if (spec.auth !== 'key' || ctx.principal === null || !deps.afterAuth) return;
      const waiting = deps.afterAuth(ctx);
      if (waiting) waiting.catch(() => {});
    };

    const isAdmin = (ctx: RequestContext): boolean => {
      if (!adminDigest) return false;
      const auth = ctx.authorization;
      if (!auth.toLowerCase().startsWith('bearer ')) return false;
      return timingSafeEqual(digest(auth.slice(7).trim()), adminDigest);
    };

    // After the body (if any) is in: authenticate if the cache could not, check scope, handle.
    const run = async (ctx: RequestContext, text: string | undefined): Promise<void> => {
      ctx.handling = true;
      try {
        if (spec.auth === 'key' && ctx.principal === null) {
          ctx.principal = await ctx.verification!;
          if (ctx.principal === null) throw unauthorized();
        }
        if (spec.auth === 'key' && deps.afterAuth) {
          const waiting = deps.afterAuth(ctx);
          if (waiting) await waiting;
        }
        if (scopeBit !== 0 && (ctx.principal!.scopes & scopeBit) === 0) {
          throw new ApiError('forbidden', `This API key lacks the ${spec.scope} scope.`);
        }
        let body: unknown;
        if (text !== undefined && !(spec.bodyOptional && text.length === 0)) body = parseJson(text);
        const reply = await spec.handle(ctx, body);
        sendReply(ctx, reply);
      } catch (error) {
        sendFailure(ctx, error);
      } finally {
        deps.tracker.end(ctx);
      }
    };

    app[spec.method](spec.path, (res: HttpResponse, req: HttpRequest) => {
      const ctx = createContext(res, req, label, paramCount, endAbortedRead);
      deps.tracker.begin(ctx);
      try {
        if (deps.tracker.draining) {
          deps.tracker.end(ctx);
          sendError(ctx, unavailable('Server is shutting down.', 1, 'shutting_down'), true);
          return;
        }
        let key = '';
        if (spec.auth === 'key') {
          key = presentedApiKey(ctx);
          if (key === '') throw unauthorized();
          ctx.principal = deps.verifier.cached(key) ?? null;
          // Malformed, or known bad without a query: refused before a byte of the body is read.
          if (ctx.principal === null && deps.verifier.refusesAtOnce(key)) throw unauthorized();
        } else if (spec.auth === 'admin') {
          if (!adminDigest) throw new ApiError('not_found', 'Admin API is disabled: set ADMIN_TOKEN to enable it.');
          if (!isAdmin(ctx)) throw unauthorized();
        }
        if (spec.bodyLimit === undefined) {
          if (spec.auth === 'key' && ctx.principal === null) ctx.verification = deps.verifier.verify(key);
          void run(ctx, undefined);
          return;
        }
        if (!(spec.bodyOptional && ctx.contentType === '') && !isJsonContentType(ctx.contentType)) {
          throw new ApiError('unsupported_media_type', 'Content-Type must be application/json.');
        }
        if (ctx.contentLength !== '' && Number(ctx.contentLength) > spec.bodyLimit) {
          deps.tracker.end(ctx);
          rateLimitHeadersIfKnown(ctx);
          sendError(ctx, new ApiError('payload_too_large', `Request body exceeds ${spec.bodyLimit} bytes.`));
          return;
        }
        readBody(
          ctx,
          spec.bodyLimit,
          (text) => void run(ctx, text),
          (error) => {
            resumeBody(ctx); // 413 within what arrived with the headers, while the key is verified
            deps.tracker.end(ctx);
            rateLimitHeadersIfKnown(ctx);
            sendError(ctx, error);
          },
        );
        if (spec.auth === 'key' && ctx.principal === null) verifyBeforeBody(ctx, key);
      } catch (error) {
        deps.tracker.end(ctx);
        rateLimitHeadersIfKnown(ctx);
        // Answered before the body was read. The connection stays open: closing it with unread
        // bytes makes the kernel send RST, and the client may never see the answer. uWS discards
        // the rest of the body as it arrives, without buffering it.
        sendFailure(ctx, error);
      }
    });
  }

  // A known path with the wrong method: 405 with Allow. uWS prefers method routes over `any`.
  for (const [path, methods] of methodsByPath) {
    const allow = methods.join(', ');
    const paramCount = (path.match(/:/g) ?? []).length;
    app.any(path, (res, req) => {
      const ctx = createContext(res, req, 'method_not_allowed', paramCount);
      sendError(
        ctx,
        new ApiError(
          'method_not_allowed',
          `Method ${req.getCaseSensitiveMethod()} is not allowed here; use ${allow}.`,
          undefined,
          { Allow: allow },
        ),
      );
    });
  }
  app.any('/*', (res, req) => {
    const ctx = createContext(res, req, 'not_found', 0);
    sendError(ctx, new ApiError('not_found', `No route for ${req.getCaseSensitiveMethod()} ${req.getUrl()}.`));
  });
}
