import {
  BASE_SCHEMAS,
  ERROR_DESCRIPTIONS,
  HEADERS,
  RATE_LIMIT_HEADERS,
  REQUEST_ID_PARAMETER,
  SECURITY_SCHEMES,
  TAGS,
  errorResponseSchema,
  type HeaderName,
} from './components.js';
import type { DocumentedRoute, ErrorStatus, ParameterDoc, ResponseDoc } from './operation.js';
import { NamedSchema, type JsonSchema } from './schema.js';

type Json = { [key: string]: unknown };

const HTTP_METHOD = { get: 'get', post: 'post', put: 'put', patch: 'patch', del: 'delete' } as const;

/** Statuses after which a key route's answer always has the RateLimit-* headers (its key is verified by then). */
const AFTER_AUTH = new Set([400, 403, 404, 409, 422, 429]);
/** Statuses that may come before or after the key is verified: RateLimit-* documented, not required. */
const MAYBE_AFTER_AUTH = new Set([413, 415, 500, 503]);

export interface DocumentOptions {
  version: string;
}

/**
 * Builds the OpenAPI 3.1 document from the route tables. Runs once at start (and in
 * scripts/openapi.ts); a route that does not document what its fields imply (a path parameter,
 * its request body) stops the server there, so the document cannot fall behind the routes.
 */
export function buildOpenApiDocument(routes: readonly DocumentedRoute[], options: DocumentOptions): Json {
  const schemas: Json = {};
  const seen = new Map<string, NamedSchema>();

  /** Copies a schema, turning every NamedSchema into a $ref and registering it once. */
  const resolve = (schema: unknown): unknown => {
    if (schema instanceof NamedSchema) {
      const known = seen.get(schema.name);
      if (known !== undefined && known !== schema)
        throw new Error(`OpenAPI: two different schemas are named ${schema.name}`);
      if (known === undefined) {
        seen.set(schema.name, schema);
        schemas[schema.name] = resolve(schema.schema);
      }
      return { $ref: `#/components/schemas/${schema.name}` };
    }
    if (Array.isArray(schema)) return schema.map(resolve);
    if (typeof schema === 'object' && schema !== null) {
      const copy: Json = {};
      for (const [key, value] of Object.entries(schema)) copy[key] = resolve(value);
      return copy;
    }
    return schema;
  };

  const paths: Record<string, Json> = {};
  const operationIds = new Set<string>();
  for (const route of routes) {
    const path = route.path.replace(/:(\w+)/g, '{$1}');
    const method = HTTP_METHOD[route.method];
    const label = `${method.toUpperCase()} ${path}`;
    if (operationIds.has(route.doc.operationId))
      throw new Error(`OpenAPI: operationId ${route.doc.operationId} is used twice`);
    operationIds.add(route.doc.operationId);
    const item = (paths[path] ??= {});
    if (item[method] !== undefined) throw new Error(`OpenAPI: ${label} is declared twice`);
    item[method] = operation(route, label, resolve);
  }

  for (const schema of BASE_SCHEMAS) resolve(schema);
  const sortedSchemas: Json = {};
  for (const name of Object.keys(schemas).sort()) sortedSchemas[name] = schemas[name];

  // A $ref cannot carry `required` beside it: each header is there once as always present, and
  // the RateLimit-* ones once more as possibly present (answers that may precede authentication).
  const headers: Json = {};
  for (const [name, header] of Object.entries(HEADERS)) {
    headers[name] = { description: header.description, required: true, schema: header.schema };
  }
  for (const name of RATE_LIMIT_HEADERS) {
    headers[`${name}.optional`] = {
      description: `${HEADERS[name].description} Present once the API key is verified.`,
      required: false,
      schema: HEADERS[name].schema,
    };
  }

  return {
    openapi: '3.1.0',
    jsonSchemaDialect: 'https://json-schema.org/draft/2020-12/schema',
    info: {
      title: 'Triggers API',
      version: options.version,
      summary: 'Event ingestion, inbox polling and signed webhooks.',
      description: [
        'JSON in and out (UTF-8). Every answer carries `X-Request-Id` and `X-Response-Time`; answers to a verified API key carry `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`.',
        'Errors are always `{"error": {"code", "message", "details"?, "request_id"}}`. An unknown path is `404 not_found`; a known path with another method is `405 method_not_allowed` with `Allow`.',
        "IDs are UUIDv7; times are RFC 3339 UTC with milliseconds. Served at `GET /openapi.json`, built from the server's route tables.",
      ].join('\n\n'),
      license: { name: 'MIT', identifier: 'MIT' },
    },
    servers: [{ url: 'http://localhost:8080', description: 'A local server on the default PORT' }],
    tags: TAGS,
    paths,
    components: {
      schemas: sortedSchemas,
      headers,
      parameters: { RequestId: REQUEST_ID_PARAMETER },
      securitySchemes: SECURITY_SCHEMES,
    },
  };
}

function operation(route: DocumentedRoute, label: string, resolve: (schema: unknown) => unknown): Json {
  const doc = route.doc;
  const parameters: unknown[] = [];
  const pathNames = [...route.path.matchAll(/:(\w+)/g)].map((match) => match[1]!);
  for (const name of pathNames) {
    const parameter = doc.pathParameters?.[name];
    if (!parameter) throw new Error(`OpenAPI: ${label} does not document its path parameter ${name}`);
    parameters.push(parameterObject(name, 'path', { ...parameter, required: true }, resolve));
  }
  for (const name of Object.keys(doc.pathParameters ?? {})) {
    if (!pathNames.includes(name))
      throw new Error(`OpenAPI: ${label} documents a path parameter ${name} it does not have`);
  }
  for (const [name, parameter] of Object.entries(doc.query ?? {}))
    parameters.push(parameterObject(name, 'query', parameter, resolve));
  for (const [name, parameter] of Object.entries(doc.headers ?? {}))
    parameters.push(parameterObject(name, 'header', parameter, resolve));
  parameters.push({ $ref: '#/components/parameters/RequestId' });

  const result: Json = {
    operationId: doc.operationId,
    summary: doc.summary,
    ...(doc.description ? { description: doc.description } : {}),
    tags: [doc.tag],
    security: doc.security ?? security(route),
    parameters,
  };

  if ((route.bodyLimit === undefined) !== (doc.requestBody === undefined)) {
    throw new Error(
      `OpenAPI: ${label} ${route.bodyLimit === undefined ? 'documents a body it does not read' : 'reads a body it does not document'}`,
    );
  }
  if (route.bodyLimit !== undefined && doc.requestBody) {
    const limit = `At most ${sizeInWords(route.bodyLimit)}; larger is 413.`;
    result.requestBody = {
      required: !route.bodyOptional,
      description: doc.requestBody.description ? `${doc.requestBody.description} ${limit}` : limit,
      content: { 'application/json': { schema: resolve(doc.requestBody.schema) } },
    };
  }

  const statuses = new Set<number>(Object.keys(doc.responses).map(Number));
  if (![...statuses].some((status) => status >= 200 && status < 300))
    throw new Error(`OpenAPI: ${label} documents no success`);
  const errors = new Set<ErrorStatus | 500>([405, 500, 503]);
  if (route.auth !== 'public') errors.add(401);
  if (route.scope) errors.add(403);
  if (route.auth === 'admin') errors.add(404);
  if (route.bodyLimit !== undefined) for (const status of [400, 413, 415] as const) errors.add(status);
  for (const status of Object.keys(doc.errors ?? {})) errors.add(Number(status) as ErrorStatus);
  for (const status of errors) statuses.add(status);

  const responses: Json = {};
  for (const status of [...statuses].sort((a, b) => a - b)) {
    const declared = doc.responses[status];
    const answer: ResponseDoc = declared ?? {
      description: doc.errors?.[status as ErrorStatus] ?? ERROR_DESCRIPTIONS[status as ErrorStatus | 500],
      schema: errorResponseSchema(status as ErrorStatus | 500),
    };
    responses[String(status)] = responseObject(route, status, answer, resolve);
  }
  result.responses = responses;
  return result;
}

function sizeInWords(bytes: number): string {
  const mib = bytes / (1024 * 1024);
  return Number.isInteger(mib) ? `${mib} MiB` : `${bytes / 1024} KiB`;
}

function parameterObject(
  name: string,
  where: 'path' | 'query' | 'header',
  parameter: ParameterDoc,
  resolve: (schema: unknown) => unknown,
): Json {
  return {
    name,
    in: where,
    required: parameter.required ?? false,
    description: parameter.description,
    schema: resolve(parameter.schema),
  };
}

function security(route: DocumentedRoute): Array<Record<string, string[]>> {
  if (route.auth === 'admin') return [{ AdminToken: [] }];
  if (route.auth === 'public') return [];
  const scopes = route.scope ? [route.scope] : [];
  return [{ ApiKey: scopes }, { ApiKeyHeader: scopes }];
}

function responseObject(
  route: DocumentedRoute,
  status: number,
  answer: ResponseDoc,
  resolve: (schema: unknown) => unknown,
): Json {
  const headers: Partial<Record<HeaderName, boolean>> = { 'X-Request-Id': true, 'X-Response-Time': true };
  if (route.auth === 'key' && (status < 300 || AFTER_AUTH.has(status) || MAYBE_AFTER_AUTH.has(status))) {
    for (const name of RATE_LIMIT_HEADERS) headers[name] = !MAYBE_AFTER_AUTH.has(status);
  }
  if (status === 429 || status === 503) headers['Retry-After'] = true;
  if (status === 405) headers.Allow = true;

  const headerObjects: Json = {};
  for (const [name, required] of Object.entries(headers)) {
    headerObjects[name] = { $ref: `#/components/headers/${required ? name : `${name}.optional`}` };
  }
  const response: Json = { description: answer.description, headers: headerObjects };
  if (answer.schema !== undefined)
    response.content = { [answer.mediaType ?? 'application/json']: { schema: resolve(answer.schema as JsonSchema) } };
  return response;
}
