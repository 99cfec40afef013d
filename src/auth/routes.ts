import type { Sql } from '../db/connect.js';
import { ApiError } from '../errors.js';
import type { RouteSpec } from '../http/router.js';
import type { RouteDoc } from '../openapi/operation.js';
import { named, nullable, uuid } from '../openapi/schema.js';
import { ALL_SCOPES, SCOPE_BITS } from './keys.js';

const CallingKeySchema = named('CallingKey', {
  type: 'object',
  required: ['id', 'kid', 'env', 'name', 'scopes', 'org'],
  properties: {
    id: uuid(),
    kid: { type: 'string', pattern: '^[a-z0-9]+$' },
    env: { type: 'string', enum: ['live', 'test'] },
    name: nullable({ type: 'string' }),
    scopes: { type: 'array', items: { type: 'string', enum: [...ALL_SCOPES] } },
    org: {
      type: 'object',
      required: ['id', 'name'],
      properties: { id: uuid(), name: { type: 'string' } },
    },
  },
  examples: [
    {
      id: '01939a4e-7c1a-7b2e-9f00-3c2d1e0f4a5b',
      kid: 'k7f3a9c2e1',
      env: 'live',
      name: 'console',
      scopes: ['events:read', 'webhooks:manage'],
      org: { id: '01939a4e-6b00-7c11-8a22-1b2c3d4e5f60', name: 'acme' },
    },
  ],
});

const GET_KEY_DOC: RouteDoc = {
  operationId: 'getCallingKey',
  summary: 'The API key making the request',
  description:
    'Which key this is, its scopes and its org: how a client (the console at sign-in) learns what the key may do before it tries. Any working key may call it; no scope is needed.',
  tag: 'Authentication',
  responses: { 200: { description: 'The calling key.', schema: CallingKeySchema } },
};

interface KeyRow {
  id: string;
  kid: string;
  env: string;
  name: string | null;
  org_id: string;
  org_name: string;
}

/** GET /v1/key (API.md §2): the calling key as its holder may see it; never its hash. */
export function keyRoutes(sql: Sql): RouteSpec[] {
  return [
    {
      method: 'get',
      path: '/v1/key',
      auth: 'key',
      doc: GET_KEY_DOC,
      async handle(ctx) {
        const principal = ctx.principal!;
        const rows = await sql<KeyRow[]>`
          select k.id, k.kid, k.env, k.name, o.id as org_id, o.name as org_name
          from api_keys k join orgs o on o.id = k.org_id
          where k.id = ${principal.keyId} and k.revoked_at is null`;
        const row = rows[0];
        // Revoked after this process verified it: the cache forgets it within 2 s (API.md §2).
        if (row === undefined) throw new ApiError('unauthorized', 'Missing or invalid API key.');
        const scopes = ALL_SCOPES.filter((scope) => (principal.scopes & SCOPE_BITS[scope]) !== 0);
        const key = {
          id: row.id,
          kid: row.kid,
          env: row.env,
          name: row.name,
          scopes,
          org: { id: row.org_id, name: row.org_name },
        };
        return { status: 200, body: JSON.stringify(key) };
      },
    },
  ];
}
