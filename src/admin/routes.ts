import type { Sql } from '../db/connect.js';
import { notFound } from '../errors.js';
import { json, type Reply } from '../http/respond.js';
import type { RouteSpec } from '../http/router.js';
import {
  CREATE_KEY_DOC,
  CREATE_ORG_DOC,
  GET_ORG_DOC,
  LIST_KEYS_DOC,
  REVOKE_KEY_DOC,
  UPDATE_ORG_DOC,
} from './schemas.js';
import { createKey, createOrg, getOrg, listKeys, revokeKey, updateOrg, type OrgDefaults } from './service.js';

const ADMIN_BODY_LIMIT = 64 * 1024;

function found<T>(value: T | null, what: string, status = 200): Reply {
  if (value === null) throw notFound(what);
  return json(status, value);
}

/** The admin API (API.md §7); the router answers 404 for all of it unless ADMIN_TOKEN is set. */
export function adminRoutes(sql: Sql, defaults: OrgDefaults): RouteSpec[] {
  return [
    {
      method: 'post',
      path: '/v1/admin/orgs',
      auth: 'admin',
      bodyLimit: ADMIN_BODY_LIMIT,
      doc: CREATE_ORG_DOC,
      handle: async (_ctx, body) => json(201, await createOrg(sql, body, defaults)),
    },
    {
      method: 'get',
      path: '/v1/admin/orgs/:id',
      auth: 'admin',
      doc: GET_ORG_DOC,
      handle: async (ctx) => found(await getOrg(sql, ctx.params[0]!), 'Org'),
    },
    {
      method: 'patch',
      path: '/v1/admin/orgs/:id',
      auth: 'admin',
      bodyLimit: ADMIN_BODY_LIMIT,
      doc: UPDATE_ORG_DOC,
      handle: async (ctx, body) => found(await updateOrg(sql, ctx.params[0]!, body), 'Org'),
    },
    {
      method: 'post',
      path: '/v1/admin/orgs/:id/keys',
      auth: 'admin',
      bodyLimit: ADMIN_BODY_LIMIT,
      bodyOptional: true,
      doc: CREATE_KEY_DOC,
      handle: async (ctx, body) => found(await createKey(sql, ctx.params[0]!, body), 'Org', 201),
    },
    {
      method: 'get',
      path: '/v1/admin/orgs/:id/keys',
      auth: 'admin',
      doc: LIST_KEYS_DOC,
      handle: async (ctx) => {
        const keys = await listKeys(sql, ctx.params[0]!);
        if (keys === null) throw notFound('Org');
        return json(200, { keys });
      },
    },
    {
      method: 'del',
      path: '/v1/admin/keys/:id',
      auth: 'admin',
      doc: REVOKE_KEY_DOC,
      handle: async (ctx) => found(await revokeKey(sql, ctx.params[0]!), 'API key'),
    },
  ];
}
