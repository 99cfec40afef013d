import type { Sql } from '../db/connect.js';
import { compiledFilter, type CompiledFilter } from '../filter/filter.js';
import { eventTypeMatcher, type EventTypeMatcher } from './event-types.js';
import type { StreamPosition } from './event-reader.js';
import { openEndpointKeys, type EndpointKeys } from './endpoint-keys.js';
import type { SigningKeys } from './signing-keys.js';
import type { WireTarget } from './transport.js';

/** What an endpoint's owner needs to stream to it, read from webhook_endpoints. */
export interface EndpointSettings extends WireTarget {
  id: string;
  orgId: string;
  enabled: boolean;
  /** A webhook's URL; a broker destination's masked label (its target is in `config`). */
  url: string;
  /**
   * HMAC keys: the current secret's, then the previous one's during a rotation. With a
   * SigningKeys store, the endpoint's one shared array, kept up to date in place (signing-keys.ts).
   * Empty, with the reason, when the stored secret does not open (endpoint-keys.ts).
   */
  keys: EndpointKeys;
  matches: EventTypeMatcher;
  /** The endpoint's payload filter (API.md §5), compiled; null: every event of its types. */
  filter: CompiledFilter | null;
  deliverFromMs: number;
  fifo: boolean;
  /** ordering "key": per ordering_key, one event at a time, in inbox order (stream.ts). */
  byKey: boolean;
  rateLimitPerSec: number | null;
  maxInFlight: number | null;
  failingSinceMs: number | null;
  cursor: StreamPosition;
}

export async function loadEndpointSettings(
  sql: Sql,
  endpointIds: readonly string[],
  signingKeys?: SigningKeys,
): Promise<Map<string, EndpointSettings>> {
  const settings = new Map<string, EndpointSettings>();
  if (endpointIds.length === 0) return settings;
  // deliver_from has microseconds, received_at whole milliseconds (stamped from Date.now()):
  // rounding deliver_from up to the millisecond keeps `received_at >= deliver_from` exact.
  const sentAt = performance.now();
  const rows = await sql`
    select id, org_id, enabled, kind, url, config, secret,
      case when previous_secret_expires_at > now() then previous_secret end as previous_secret,
      event_types, filter, ceil(extract(epoch from deliver_from) * 1000)::float8 as deliver_from_ms,
      ordering, rate_limit_per_sec, max_in_flight,
      (extract(epoch from failing_since) * 1000)::float8 as failing_since_ms,
      cursor_seq::text as cursor_seq, cursor_id::text as cursor_id,
      (extract(epoch from updated_at) * 1000)::float8 as updated_at_ms
    from webhook_endpoints where id = any(${endpointIds as string[]}::uuid[])`;
  for (const row of rows) {
    let keys: EndpointKeys;
    if (signingKeys) {
      keys = signingKeys.observe(
        {
          id: row.id,
          org_id: row.org_id,
          enabled: row.enabled,
          secret: row.secret,
          previous_secret: row.previous_secret,
          updated_at_ms: row.updated_at_ms,
        },
        sentAt,
      );
    } else {
      keys = openEndpointKeys({
        id: row.id,
        org_id: row.org_id,
        secret: row.secret,
        previous_secret: row.previous_secret,
      });
    }
    settings.set(row.id as string, {
      id: row.id as string,
      orgId: row.org_id as string,
      enabled: row.enabled as boolean,
      kind: row.kind as EndpointSettings['kind'],
      url: row.url as string,
      config: row.config as EndpointSettings['config'],
      keys,
      matches: eventTypeMatcher(row.event_types as string[]),
      filter: compiledFilter(row.filter as Record<string, unknown> | null),
      deliverFromMs: row.deliver_from_ms as number,
      fifo: row.ordering === 'fifo',
      byKey: row.ordering === 'key',
      rateLimitPerSec: row.rate_limit_per_sec as number | null,
      maxInFlight: row.max_in_flight as number | null,
      failingSinceMs: row.failing_since_ms as number | null,
      cursor: { seq: row.cursor_seq as string, id: row.cursor_id as string },
    });
  }
  return settings;
}

/** Open (pending or failed) deliveries of an endpoint: a fifo endpoint sends nothing new while any exist. */
export async function countOpenDeliveries(sql: Sql, orgId: string, endpointId: string): Promise<number> {
  const [row] = await sql`
    select count(*)::int as n from webhook_deliveries
    where org_id = ${orgId} and endpoint_id = ${endpointId} and status in ('pending', 'failed')`;
  return row!.n as number;
}

/** An open (pending or failed) delivery of an event with an ordering key: its key is held (ordering "key"). */
export interface OpenKeyedDelivery {
  deliveryId: string;
  key: string;
}

/**
 * The open deliveries of an endpoint whose events have an ordering key. The key is read from the
 * event (joined on its full primary key, colocated by org_id on Citus) rather than stored on the
 * delivery row: the row is written by the progress writer on every attempt of every endpoint,
 * and only a stream of a "key" endpoint, when it starts or resyncs, needs it.
 */
export async function openKeyedDeliveries(sql: Sql, orgId: string, endpointId: string): Promise<OpenKeyedDelivery[]> {
  const rows = await sql`
    select d.id::text as id, e.ordering_key from webhook_deliveries d
    join events e on e.org_id = d.org_id and e.id = d.event_id and e.received_at = d.event_received_at
    where d.org_id = ${orgId} and d.endpoint_id = ${endpointId} and d.status in ('pending', 'failed')
      and e.org_id = ${orgId} and e.ordering_key is not null`;
  return rows.map((row) => ({ deliveryId: row.id as string, key: row.ordering_key as string }));
}
