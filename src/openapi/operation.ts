import type { JsonSchema } from './schema.js';

/**
 * What a route declares about itself for the OpenAPI document (RouteSpec.doc). Only what is
 * particular to the route is written here; what follows from the route's other fields (auth,
 * scope, bodyLimit) is added by the builder: 401/403 and the security requirement, the request
 * body's 400/413/415, 405 with Allow, 503 with Retry-After, and the headers every response carries.
 */
export interface RouteDoc {
  operationId: string;
  summary: string;
  description?: string;
  tag: Tag;
  /** One entry per `:name` in the route's path. */
  pathParameters?: Record<string, ParameterDoc>;
  query?: Record<string, ParameterDoc>;
  /** Request headers the route reads besides authentication (e.g. Idempotency-Key). */
  headers?: Record<string, ParameterDoc>;
  /** The JSON body; required unless the route's bodyOptional is set. Only for routes with a bodyLimit. */
  requestBody?: { schema: JsonSchema; description?: string };
  /** Answers other than the common errors, by status: successes, and errors particular to the route. */
  responses: Record<number, ResponseDoc>;
  /** When the common errors apply, in this route's words (overrides the builder's description). */
  errors?: Partial<Record<ErrorStatus, string>>;
  /** Replaces the security the route's `auth` implies (GET /metrics: optional METRICS_TOKEN). */
  security?: Array<Record<string, string[]>>;
}

export type Tag =
  | 'Authentication'
  | 'Events'
  | 'Event types'
  | 'Inbox'
  | 'Consumer groups'
  | 'Webhooks'
  | 'Destinations'
  | 'Admin'
  | 'Operations';

export type ErrorStatus = 400 | 401 | 403 | 404 | 405 | 409 | 413 | 415 | 422 | 429 | 503;

export interface ParameterDoc {
  description: string;
  schema: JsonSchema;
  required?: boolean;
}

export interface ResponseDoc {
  description: string;
  /** JSON body; omit for an empty body (204). */
  schema?: JsonSchema;
  /** Media type of the body when it is not application/json. */
  mediaType?: string;
}

/** The fields of a route the document is built from (RouteSpec has them all). */
export interface DocumentedRoute {
  method: 'get' | 'post' | 'put' | 'patch' | 'del';
  path: string;
  auth: 'key' | 'admin' | 'public';
  scope?: string;
  bodyLimit?: number;
  bodyOptional?: boolean;
  doc: RouteDoc;
}
