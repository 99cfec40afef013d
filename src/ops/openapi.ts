import type { RouteSpec } from '../http/router.js';
import { buildOpenApiDocument } from '../openapi/document.js';
import type { RouteDoc } from '../openapi/operation.js';

const OPENAPI_DOC: RouteDoc = {
  operationId: 'getOpenApi',
  summary: 'This OpenAPI 3.1 document',
  description: "Built from the server's route tables at start; the same as docs/openapi.json in the repository.",
  tag: 'Operations',
  responses: {
    200: {
      description: 'The document.',
      schema: {
        type: 'object',
        required: ['openapi', 'info', 'paths', 'components'],
        properties: {
          openapi: { type: 'string', pattern: '^3\\.1\\.' },
          jsonSchemaDialect: { type: 'string' },
          info: { type: 'object', additionalProperties: true },
          servers: { type: 'array' },
          tags: { type: 'array' },
          paths: { type: 'object', additionalProperties: true },
          components: { type: 'object', additionalProperties: true },
        },
      },
    },
  },
};

/** The document as served and as committed (docs/openapi.json): two-space indented, with a final newline. */
export function openApiJson(routes: readonly RouteSpec[], version: string): string {
  return JSON.stringify(buildOpenApiDocument(routes, { version }), null, 2) + '\n';
}

/**
 * GET /openapi.json (no auth). The document describes `routes` and this route itself; it is
 * built and serialised here, once, and served as that string.
 */
export function openApiRoutes(routes: readonly RouteSpec[], version: string): RouteSpec[] {
  const reply = { status: 200, body: '' };
  const route: RouteSpec = {
    method: 'get',
    path: '/openapi.json',
    auth: 'public',
    doc: OPENAPI_DOC,
    handle: () => reply,
  };
  reply.body = openApiJson([...routes, route], version);
  return [route];
}
