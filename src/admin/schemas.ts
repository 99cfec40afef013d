import { ALL_SCOPES } from '../auth/keys.js';
import type { ParameterDoc, RouteDoc } from '../openapi/operation.js';
import { named, nullable, timestamp, uuid } from '../openapi/schema.js';
import { MAX_LIMIT } from './service.js';

/** The admin API (API.md §7) as the OpenAPI document shows it. */

const name = { type: 'string', minLength: 1, maxLength: 200, description: '1-200 characters, not only spaces.' };
const limit = (description: string) => ({ type: 'integer', minimum: 1, maximum: MAX_LIMIT, description });
const scope = { type: 'string', enum: [...ALL_SCOPES] };

const requireEventTypes = {
  type: 'boolean',
  default: false,
  description:
    'When true, an event whose type has no registered schema is 422 (`field: "type"`); applies on every process and node within 2 s.',
};

export const OrgCreateSchema = named('OrgCreate', {
  type: 'object',
  required: ['name'],
  additionalProperties: false,
  properties: {
    name,
    rate_limit_per_sec: limit(
      "Events per second (token refill rate). Default: the server's DEFAULT_RATE_LIMIT_PER_SEC.",
    ),
    burst: limit("Bucket size. Default: twice the given rate_limit_per_sec, else the server's default."),
    require_event_types: requireEventTypes,
  },
  examples: [{ name: 'acme', rate_limit_per_sec: 500, burst: 1000 }],
});

export const OrgUpdateSchema = named('OrgUpdate', {
  type: 'object',
  additionalProperties: false,
  description: 'Only the fields given change; new limits apply everywhere within 2 s.',
  properties: {
    name,
    rate_limit_per_sec: limit('Events per second.'),
    burst: limit('Bucket size.'),
    require_event_types: requireEventTypes,
  },
});

export const OrgSchema = named('Org', {
  type: 'object',
  required: ['id', 'name', 'rate_limit_per_sec', 'burst', 'require_event_types', 'created_at'],
  properties: {
    id: uuid(),
    name: { type: 'string' },
    rate_limit_per_sec: { type: 'integer', minimum: 1 },
    burst: { type: 'integer', minimum: 1 },
    require_event_types: { type: 'boolean' },
    created_at: timestamp(),
  },
});

export const ApiKeyCreateSchema = named('ApiKeyCreate', {
  type: 'object',
  additionalProperties: false,
  description: 'The body may be empty.',
  properties: {
    name,
    scopes: { type: 'array', items: scope, description: 'Missing or empty: all four scopes.' },
    env: { type: 'string', enum: ['live', 'test'], default: 'live' },
  },
  examples: [{ name: 'ingest worker', scopes: ['events:write'], env: 'live' }],
});

const keyProperties = {
  id: uuid(),
  org_id: uuid(),
  kid: { type: 'string', pattern: '^[a-z0-9]+$', description: 'The public key id, part of the key.' },
  name: nullable({ type: 'string' }),
  env: { type: 'string', enum: ['live', 'test'] },
  scopes: { type: 'array', items: scope },
  created_at: timestamp(),
  revoked_at: nullable({ ...timestamp('When it was revoked; null while it works.') }),
};

export const ApiKeySchema = named('ApiKey', {
  type: 'object',
  required: Object.keys(keyProperties),
  properties: keyProperties,
});

export const ApiKeyWithSecretSchema = named('ApiKeyWithSecret', {
  type: 'object',
  required: [...Object.keys(keyProperties), 'key'],
  properties: {
    ...keyProperties,
    key: {
      type: 'string',
      pattern: '^zt_(live|test)_[a-z0-9]+_[A-Za-z0-9_-]+$',
      description: 'The full key, `zt_<env>_<kid>_<secret>`: shown here once, never stored.',
    },
  },
});

export const ApiKeyListSchema = named('ApiKeyList', {
  type: 'object',
  required: ['keys'],
  properties: {
    keys: { type: 'array', items: ApiKeySchema, description: 'Oldest first, revoked ones included; never the secret.' },
  },
});

const orgId: Record<string, ParameterDoc> = {
  id: { description: 'An org id (malformed or unknown: 404).', schema: uuid() },
};
const disabledOrMissing = (what: string) =>
  `\`not_found\`: no such ${what}, or the admin API is disabled (ADMIN_TOKEN unset).`;
const invalid = '`validation_failed`: bad or unknown fields; `details` names each.';

export const CREATE_ORG_DOC: RouteDoc = {
  operationId: 'createOrg',
  summary: 'Create an org',
  tag: 'Admin',
  requestBody: { schema: OrgCreateSchema },
  responses: { 201: { description: 'Created.', schema: OrgSchema } },
  errors: { 404: '`not_found`: the admin API is disabled (ADMIN_TOKEN unset).', 422: invalid },
};

export const GET_ORG_DOC: RouteDoc = {
  operationId: 'getOrg',
  summary: 'Get an org',
  tag: 'Admin',
  pathParameters: orgId,
  responses: { 200: { description: 'The org.', schema: OrgSchema } },
  errors: { 404: disabledOrMissing('org') },
};

export const UPDATE_ORG_DOC: RouteDoc = {
  operationId: 'updateOrg',
  summary: "Change an org's name or rate limit",
  tag: 'Admin',
  pathParameters: orgId,
  requestBody: { schema: OrgUpdateSchema },
  responses: { 200: { description: 'The org as changed.', schema: OrgSchema } },
  errors: { 404: disabledOrMissing('org'), 422: invalid },
};

export const CREATE_KEY_DOC: RouteDoc = {
  operationId: 'createApiKey',
  summary: 'Create an API key for an org',
  tag: 'Admin',
  pathParameters: orgId,
  requestBody: { schema: ApiKeyCreateSchema },
  responses: { 201: { description: 'Created; `key` is shown this once.', schema: ApiKeyWithSecretSchema } },
  errors: { 404: disabledOrMissing('org'), 422: invalid },
};

export const LIST_KEYS_DOC: RouteDoc = {
  operationId: 'listApiKeys',
  summary: "List an org's API keys",
  tag: 'Admin',
  pathParameters: orgId,
  responses: { 200: { description: "The org's keys.", schema: ApiKeyListSchema } },
  errors: { 404: disabledOrMissing('org') },
};

export const REVOKE_KEY_DOC: RouteDoc = {
  operationId: 'revokeApiKey',
  summary: 'Revoke an API key',
  description:
    'Idempotent (a revoked key keeps its first revocation time). The key stops working on every process and node within 2 s.',
  tag: 'Admin',
  pathParameters: { id: { description: 'An API key id (malformed or unknown: 404).', schema: uuid() } },
  responses: { 200: { description: 'The key, revoked.', schema: ApiKeySchema } },
  errors: { 404: disabledOrMissing('API key') },
};
