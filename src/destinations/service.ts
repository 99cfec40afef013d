import type { Sql } from '../db/connect.js';
import type { FieldError } from '../errors.js';
import { isoMs } from '../ids.js';
import {
  COMMON_FIELDS,
  checkCommonFields,
  checkFields,
  DESTINATIONS,
  findEndpoint,
  insertEndpoint,
  invalid,
  listEndpointRows,
  patchEndpoint,
  requireObject,
  rotateEndpointSecret,
  type EndpointRow,
} from '../webhooks/service.js';
import {
  checkConfig,
  DESTINATION_TYPES,
  hostNotAllowed,
  isDestinationType,
  mergeConfig,
  openConfig,
  sealContext,
  storeConfig,
  targetLabel,
} from './config.js';
import type { Destination, DestinationType } from './types.js';

/**
 * Broker destinations of one org (API.md §5b): the webhook endpoint's life (event types, filter,
 * delivery controls, enable/disable, rotate, deliveries, recover) with a `type` and a `config`
 * instead of a URL. Rows live in webhook_endpoints (sql/013_destinations.sql).
 */

export interface DestinationPolicy {
  /** DESTINATION_ALLOWED_HOSTS: empty = no broker destinations at all. */
  allowedHosts: readonly string[];
  maxEndpointsPerOrg: number;
}

export interface DestinationView {
  id: string;
  type: DestinationType;
  /** Credentials masked: never returned once stored. */
  config: Record<string, unknown>;
  description: string | null;
  event_types: string[];
  filter: Record<string, unknown> | null;
  enabled: boolean;
  disabled_reason: string | null;
  rate_limit_per_sec: number | null;
  ordering: 'none' | 'fifo' | 'key';
  max_in_flight: number | null;
  created_at: string;
  updated_at: string;
}

export const destinationView = (row: EndpointRow): DestinationView => ({
  id: row.id,
  type: row.kind as DestinationType,
  config: row.config?.masked ?? {},
  description: row.description,
  event_types: row.event_types,
  filter: row.filter,
  enabled: row.enabled,
  disabled_reason: row.disabled_reason,
  rate_limit_per_sec: row.rate_limit_per_sec,
  ordering: row.ordering,
  max_in_flight: row.max_in_flight,
  created_at: isoMs(row.created_at.getTime()),
  updated_at: isoMs(row.updated_at.getTime()),
});

/** A checked config whose hosts are all in DESTINATION_ALLOWED_HOSTS, or undefined with the reasons in `details`. */
function allowedDestination(
  type: DestinationType,
  config: unknown,
  policy: DestinationPolicy,
  details: FieldError[],
): Destination | undefined {
  const destination = checkConfig(type, config, details);
  if (destination === undefined) return undefined;
  const refused = hostNotAllowed(destination, policy.allowedHosts);
  if (refused !== null) {
    details.push({
      field: 'config',
      message:
        policy.allowedHosts.length === 0
          ? 'broker destinations are off on this server: its operator lists the hosts they may use in DESTINATION_ALLOWED_HOSTS'
          : `${refused} is not in DESTINATION_ALLOWED_HOSTS`,
    });
    return undefined;
  }
  return destination;
}

export async function createDestination(
  sql: Sql,
  orgId: string,
  input: unknown,
  policy: DestinationPolicy,
): Promise<DestinationView & { secret: string }> {
  const body = requireObject(input);
  const details: FieldError[] = [];
  checkFields(body, ['type', 'config', ...COMMON_FIELDS], details);
  const fields = checkCommonFields(body, false, details);
  let destination: Destination | undefined;
  if (!isDestinationType(body.type))
    details.push({ field: 'type', message: `must be one of ${DESTINATION_TYPES.map((t) => `"${t}"`).join(', ')}` });
  else destination = allowedDestination(body.type, body.config, policy, details);
  if (details.length > 0) invalid(details);
  const { row, secret } = await insertEndpoint(
    sql,
    orgId,
    fields,
    {
      kind: destination!.type,
      url: targetLabel(destination!),
      config: (endpointId) => storeConfig(destination!, sealContext(orgId, endpointId)),
    },
    { maxEndpointsPerOrg: policy.maxEndpointsPerOrg, allowHttp: false, allowPrivate: false },
  );
  return { ...destinationView(row), secret };
}

export async function listDestinations(sql: Sql, orgId: string): Promise<DestinationView[]> {
  return (await listEndpointRows(sql, orgId, DESTINATIONS)).map(destinationView);
}

export async function getDestination(sql: Sql, orgId: string, id: string): Promise<DestinationView> {
  return destinationView(await findEndpoint(sql, orgId, id, DESTINATIONS));
}

/**
 * `config` in a PATCH names only the fields that change (credentials need not be sent again:
 * they are never shown); `type` cannot change. The merged config is checked as a whole.
 */
export async function updateDestination(
  sql: Sql,
  orgId: string,
  id: string,
  input: unknown,
  policy: DestinationPolicy,
): Promise<DestinationView> {
  const body = requireObject(input);
  const details: FieldError[] = [];
  checkFields(body, ['type', 'config', 'enabled', ...COMMON_FIELDS], details);
  const fields = checkCommonFields(body, true, details);
  const row = await findEndpoint(sql, orgId, id, DESTINATIONS);
  if (body.type !== undefined && body.type !== row.kind)
    details.push({ field: 'type', message: 'cannot change: create a new destination instead' });
  let target: { url: string; config: EndpointRow['config'] } | undefined;
  if (body.config !== undefined) {
    const context = sealContext(orgId, id);
    const stored = openConfig(row.config!, context);
    const destination = allowedDestination(stored.type, mergeConfig(stored, body.config), policy, details);
    if (destination !== undefined)
      target = { url: targetLabel(destination), config: storeConfig(destination, context) };
  }
  if (details.length > 0) invalid(details);
  return destinationView(await patchEndpoint(sql, orgId, id, DESTINATIONS, fields, target));
}

export async function rotateDestinationSecret(
  sql: Sql,
  orgId: string,
  id: string,
): Promise<DestinationView & { secret: string; previous_secret_expires_at: string }> {
  const { row, secret, previousSecretExpiresAt } = await rotateEndpointSecret(sql, orgId, id, DESTINATIONS);
  return { ...destinationView(row), secret, previous_secret_expires_at: previousSecretExpiresAt };
}
