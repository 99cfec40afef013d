import type { Config } from '../config.js';
import type { Sql } from '../db/connect.js';
import { json } from '../http/respond.js';
import type { RouteSpec } from '../http/router.js';
import {
  CREATE_WEBHOOK_DOC,
  DELETE_WEBHOOK_DOC,
  GET_WEBHOOK_DOC,
  LIST_DELIVERIES_DOC,
  LIST_WEBHOOKS_DOC,
  RECOVER_DOC,
  ROTATE_SECRET_DOC,
  UPDATE_WEBHOOK_DOC,
  WEBHOOK_STATS_DOC,
} from './schemas.js';
import { endpointStats } from './stats.js';
import {
  createEndpoint,
  deleteEndpoint,
  getEndpoint,
  listDeliveries,
  listEndpoints,
  recoverDeliveries,
  rotateSecret,
  updateEndpoint,
  type EndpointPolicy,
} from './service.js';

const WEBHOOK_BODY_LIMIT = 64 * 1024;

/**
 * Runs an endpoint change, then wakes this node's delivery processes over IPC (and others over
 * Redis). The change's own NOTIFY (service.ts) already reaches every process; this is the quicker
 * path. Shared by webhooks and destinations (src/destinations/routes.ts).
 */
export function changeThenWake(endpointsChanged: (orgId: string) => void) {
  return async <T>(orgId: string, change: Promise<T>): Promise<T> => {
    const result = await change;
    endpointsChanged(orgId);
    return result;
  };
}

/** Webhook endpoint management (API.md §5), all under the webhooks:manage scope. */
export function webhookRoutes(
  sql: Sql,
  config: Pick<Config, 'webhookAllowHttp' | 'webhookAllowPrivate' | 'webhookMaxEndpointsPerOrg'>,
  endpointsChanged: (orgId: string) => void = () => {},
): RouteSpec[] {
  const policy: EndpointPolicy = {
    allowHttp: config.webhookAllowHttp,
    allowPrivate: config.webhookAllowPrivate,
    maxEndpointsPerOrg: config.webhookMaxEndpointsPerOrg,
  };
  const changing = changeThenWake(endpointsChanged);
  const scope = 'webhooks:manage' as const;
  return [
    {
      method: 'post',
      path: '/v1/webhooks',
      auth: 'key',
      scope,
      bodyLimit: WEBHOOK_BODY_LIMIT,
      doc: CREATE_WEBHOOK_DOC,
      handle: async (ctx, body) =>
        json(201, await changing(ctx.principal!.orgId, createEndpoint(sql, ctx.principal!.orgId, body, policy))),
    },
    {
      method: 'get',
      path: '/v1/webhooks',
      auth: 'key',
      scope,
      doc: LIST_WEBHOOKS_DOC,
      handle: async (ctx) => json(200, { webhooks: await listEndpoints(sql, ctx.principal!.orgId) }),
    },
    {
      method: 'get',
      path: '/v1/webhooks/:id',
      auth: 'key',
      scope,
      doc: GET_WEBHOOK_DOC,
      handle: async (ctx) => json(200, await getEndpoint(sql, ctx.principal!.orgId, ctx.params[0]!)),
    },
    {
      method: 'patch',
      path: '/v1/webhooks/:id',
      auth: 'key',
      scope,
      bodyLimit: WEBHOOK_BODY_LIMIT,
      doc: UPDATE_WEBHOOK_DOC,
      handle: async (ctx, body) =>
        json(
          200,
          await changing(ctx.principal!.orgId, updateEndpoint(sql, ctx.principal!.orgId, ctx.params[0]!, body, policy)),
        ),
    },
    {
      method: 'del',
      path: '/v1/webhooks/:id',
      auth: 'key',
      scope,
      doc: DELETE_WEBHOOK_DOC,
      handle: async (ctx) => {
        await changing(ctx.principal!.orgId, deleteEndpoint(sql, ctx.principal!.orgId, ctx.params[0]!));
        return { status: 204, body: null };
      },
    },
    {
      method: 'post',
      path: '/v1/webhooks/:id/rotate-secret',
      auth: 'key',
      scope,
      bodyLimit: WEBHOOK_BODY_LIMIT,
      bodyOptional: true,
      doc: ROTATE_SECRET_DOC,
      handle: async (ctx) =>
        json(200, await changing(ctx.principal!.orgId, rotateSecret(sql, ctx.principal!.orgId, ctx.params[0]!))),
    },
    {
      method: 'get',
      path: '/v1/webhooks/:id/deliveries',
      auth: 'key',
      scope,
      doc: LIST_DELIVERIES_DOC,
      handle: async (ctx) => json(200, await listDeliveries(sql, ctx.principal!.orgId, ctx.params[0]!, ctx.query)),
    },
    {
      method: 'get',
      path: '/v1/webhooks/:id/stats',
      auth: 'key',
      scope,
      doc: WEBHOOK_STATS_DOC,
      handle: async (ctx) => json(200, await endpointStats(sql, ctx.principal!.orgId, ctx.params[0]!, ctx.query)),
    },
    {
      method: 'post',
      path: '/v1/webhooks/:id/recover',
      auth: 'key',
      scope,
      bodyLimit: WEBHOOK_BODY_LIMIT,
      doc: RECOVER_DOC,
      handle: async (ctx, body) =>
        json(
          202,
          await changing(ctx.principal!.orgId, recoverDeliveries(sql, ctx.principal!.orgId, ctx.params[0]!, body)),
        ),
    },
  ];
}
