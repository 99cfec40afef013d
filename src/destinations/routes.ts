import type { Config } from '../config.js';
import type { Sql } from '../db/connect.js';
import { json } from '../http/respond.js';
import type { RouteSpec } from '../http/router.js';
import { changeThenWake } from '../webhooks/routes.js';
import { deleteEndpoint, DESTINATIONS, listDeliveries, recoverDeliveries } from '../webhooks/service.js';
import {
  CREATE_DESTINATION_DOC,
  DELETE_DESTINATION_DOC,
  DESTINATION_STATS_DOC,
  GET_DESTINATION_DOC,
  LIST_DESTINATION_DELIVERIES_DOC,
  LIST_DESTINATIONS_DOC,
  RECOVER_DESTINATION_DOC,
  ROTATE_DESTINATION_SECRET_DOC,
  UPDATE_DESTINATION_DOC,
} from './schemas.js';
import {
  createDestination,
  getDestination,
  listDestinations,
  rotateDestinationSecret,
  updateDestination,
  type DestinationPolicy,
} from './service.js';
import { endpointStats } from '../webhooks/stats.js';

const DESTINATION_BODY_LIMIT = 64 * 1024;

/** Broker destination management (API.md §5b), under the webhooks:manage scope like webhooks. */
export function destinationRoutes(
  sql: Sql,
  config: Pick<Config, 'destinationAllowedHosts' | 'webhookMaxEndpointsPerOrg'>,
  endpointsChanged: (orgId: string) => void = () => {},
): RouteSpec[] {
  const policy: DestinationPolicy = {
    allowedHosts: config.destinationAllowedHosts,
    maxEndpointsPerOrg: config.webhookMaxEndpointsPerOrg,
  };
  const changing = changeThenWake(endpointsChanged);
  const scope = 'webhooks:manage' as const;
  return [
    {
      method: 'post',
      path: '/v1/destinations',
      auth: 'key',
      scope,
      bodyLimit: DESTINATION_BODY_LIMIT,
      doc: CREATE_DESTINATION_DOC,
      handle: async (ctx, body) =>
        json(201, await changing(ctx.principal!.orgId, createDestination(sql, ctx.principal!.orgId, body, policy))),
    },
    {
      method: 'get',
      path: '/v1/destinations',
      auth: 'key',
      scope,
      doc: LIST_DESTINATIONS_DOC,
      handle: async (ctx) => json(200, { destinations: await listDestinations(sql, ctx.principal!.orgId) }),
    },
    {
      method: 'get',
      path: '/v1/destinations/:id',
      auth: 'key',
      scope,
      doc: GET_DESTINATION_DOC,
      handle: async (ctx) => json(200, await getDestination(sql, ctx.principal!.orgId, ctx.params[0]!)),
    },
    {
      method: 'patch',
      path: '/v1/destinations/:id',
      auth: 'key',
      scope,
      bodyLimit: DESTINATION_BODY_LIMIT,
      doc: UPDATE_DESTINATION_DOC,
      handle: async (ctx, body) =>
        json(
          200,
          await changing(
            ctx.principal!.orgId,
            updateDestination(sql, ctx.principal!.orgId, ctx.params[0]!, body, policy),
          ),
        ),
    },
    {
      method: 'del',
      path: '/v1/destinations/:id',
      auth: 'key',
      scope,
      doc: DELETE_DESTINATION_DOC,
      handle: async (ctx) => {
        await changing(ctx.principal!.orgId, deleteEndpoint(sql, ctx.principal!.orgId, ctx.params[0]!, DESTINATIONS));
        return { status: 204, body: null };
      },
    },
    {
      method: 'post',
      path: '/v1/destinations/:id/rotate-secret',
      auth: 'key',
      scope,
      bodyLimit: DESTINATION_BODY_LIMIT,
      bodyOptional: true,
      doc: ROTATE_DESTINATION_SECRET_DOC,
      handle: async (ctx) =>
        json(
          200,
          await changing(ctx.principal!.orgId, rotateDestinationSecret(sql, ctx.principal!.orgId, ctx.params[0]!)),
        ),
    },
    {
      method: 'get',
      path: '/v1/destinations/:id/deliveries',
      auth: 'key',
      scope,
      doc: LIST_DESTINATION_DELIVERIES_DOC,
      handle: async (ctx) =>
        json(200, await listDeliveries(sql, ctx.principal!.orgId, ctx.params[0]!, ctx.query, DESTINATIONS)),
    },
    {
      method: 'get',
      path: '/v1/destinations/:id/stats',
      auth: 'key',
      scope,
      doc: DESTINATION_STATS_DOC,
      handle: async (ctx) =>
        json(200, await endpointStats(sql, ctx.principal!.orgId, ctx.params[0]!, ctx.query, DESTINATIONS)),
    },
    {
      method: 'post',
      path: '/v1/destinations/:id/recover',
      auth: 'key',
      scope,
      bodyLimit: DESTINATION_BODY_LIMIT,
      doc: RECOVER_DESTINATION_DOC,
      handle: async (ctx, body) =>
        json(
          202,
          await changing(
            ctx.principal!.orgId,
            recoverDeliveries(sql, ctx.principal!.orgId, ctx.params[0]!, body, DESTINATIONS),
          ),
        ),
    },
  ];
}
