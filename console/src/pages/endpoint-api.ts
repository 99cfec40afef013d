import { orThrow } from '../../../client/src/errors.js';
import type { Schemas } from '../../../client/src/types.js';
import type { Session } from '../session.js';

/**
 * Webhooks and destinations share one life (API.md §5, §5b): the routes differ only in their
 * prefix and in the fields that say where to send. The pages speak to this one shape; the typed
 * client needs a literal path per call, hence one adapter per family.
 */
export type Family = 'webhooks' | 'destinations';

export type Webhook = Schemas['Webhook'];
export type Destination = Schemas['Destination'];
export type Endpoint = Webhook | Destination;
export type DestinationType = Destination['type'];
export type Ordering = Endpoint['ordering'];
export type Delivery = Schemas['Delivery'];
export type DeliveryStatus = Delivery['status'];
export type DeliveryPage = Schemas['DeliveryPage'];
export type EndpointStats = Schemas['EndpointStats'];
export type StatsBucket = Schemas['StatsBucket'];

/** What a create or PATCH body holds besides the target (url, or type and config). */
export interface ControlsBody {
  description?: string | null;
  event_types?: string[] | null;
  filter?: Record<string, unknown> | null;
  rate_limit_per_sec?: number | null;
  ordering?: Ordering;
  max_in_flight?: number | null;
}

export interface CreateBody extends ControlsBody {
  url?: string;
  type?: DestinationType;
  config?: Record<string, unknown>;
}

export interface UpdateBody extends ControlsBody {
  url?: string;
  config?: Record<string, unknown>;
  enabled?: boolean;
}

export interface DeliveryQuery {
  status?: DeliveryStatus;
  cursor?: string;
  limit?: number;
}

export interface EndpointApi {
  family: Family;
  list(): Promise<Endpoint[]>;
  get(id: string): Promise<Endpoint>;
  /** The endpoint with its signing secret: the one answer besides rotate that carries it. */
  create(body: CreateBody): Promise<Endpoint & { secret: string }>;
  update(id: string, body: UpdateBody): Promise<Endpoint>;
  remove(id: string): Promise<void>;
  rotate(id: string): Promise<Endpoint & { secret: string }>;
  deliveries(id: string, query: DeliveryQuery): Promise<DeliveryPage>;
  stats(id: string): Promise<EndpointStats>;
  recover(id: string, since: string): Promise<number>;
}

// The schema types `filter` as an object of `never` (it is free-form JSON); the API checks it.
type AnyBody = never;

export function endpointApi(session: Session, family: Family): EndpointApi {
  const client = session.client;
  const path = (id: string) => ({ params: { path: { id } } });
  if (family === 'webhooks')
    return {
      family,
      list: async () => orThrow(await client.GET('/v1/webhooks')).webhooks,
      get: async (id) => orThrow(await client.GET('/v1/webhooks/{id}', path(id))),
      create: async (body) => orThrow(await client.POST('/v1/webhooks', { body: body as AnyBody })),
      update: async (id, body) =>
        orThrow(await client.PATCH('/v1/webhooks/{id}', { ...path(id), body: body as AnyBody })),
      remove: async (id) => {
        orThrow(await client.DELETE('/v1/webhooks/{id}', path(id)));
      },
      rotate: async (id) => orThrow(await client.POST('/v1/webhooks/{id}/rotate-secret', path(id))),
      deliveries: async (id, query) =>
        orThrow(await client.GET('/v1/webhooks/{id}/deliveries', { params: { path: { id }, query } })),
      stats: async (id) =>
        orThrow(await client.GET('/v1/webhooks/{id}/stats', { params: { path: { id }, query: { window: '1h' } } })),
      recover: async (id, since) =>
        orThrow(await client.POST('/v1/webhooks/{id}/recover', { ...path(id), body: { since } })).queued,
    };
  return {
    family,
    list: async () => orThrow(await client.GET('/v1/destinations')).destinations,
    get: async (id) => orThrow(await client.GET('/v1/destinations/{id}', path(id))),
    create: async (body) => orThrow(await client.POST('/v1/destinations', { body: body as AnyBody })),
    update: async (id, body) =>
      orThrow(await client.PATCH('/v1/destinations/{id}', { ...path(id), body: body as AnyBody })),
    remove: async (id) => {
      orThrow(await client.DELETE('/v1/destinations/{id}', path(id)));
    },
    rotate: async (id) => orThrow(await client.POST('/v1/destinations/{id}/rotate-secret', path(id))),
    deliveries: async (id, query) =>
      orThrow(await client.GET('/v1/destinations/{id}/deliveries', { params: { path: { id }, query } })),
    stats: async (id) =>
      orThrow(await client.GET('/v1/destinations/{id}/stats', { params: { path: { id }, query: { window: '1h' } } })),
    recover: async (id, since) =>
      orThrow(await client.POST('/v1/destinations/{id}/recover', { ...path(id), body: { since } })).queued,
  };
}

export function isDestination(endpoint: Endpoint): endpoint is Destination {
  return 'type' in endpoint && 'config' in endpoint;
}

/** Where an endpoint sends, as a person reads it; destination credentials arrive masked (`****`). */
export function targetOf(endpoint: Endpoint): string {
  if (!isDestination(endpoint)) return endpoint.url;
  const config = endpoint.config;
  switch (endpoint.type) {
    case 'rabbitmq':
      return `${String(config.url)} · exchange ${String(config.exchange)}`;
    case 'nats':
      return `${(config.servers as string[] | undefined)?.join(', ') ?? ''} · subject ${String(config.subject)}`;
    case 'redis_stream':
      return `${String(config.url)} · stream ${String(config.stream)}`;
  }
}

export const FAMILY_TEXT: Record<Family, { title: string; one: string; scopeNote: string }> = {
  webhooks: { title: 'Webhooks', one: 'webhook', scopeNote: 'HTTPS endpoints that receive signed POSTs.' },
  destinations: {
    title: 'Destinations',
    one: 'destination',
    scopeNote: 'RabbitMQ exchanges, NATS JetStream subjects and Redis streams.',
  },
};

export const TYPE_TEXT: Record<DestinationType, string> = {
  rabbitmq: 'RabbitMQ',
  nats: 'NATS JetStream',
  redis_stream: 'Redis stream',
};
