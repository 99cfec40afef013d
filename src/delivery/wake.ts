import os from 'node:os';
import type { Redis } from 'ioredis';
import type { Sql } from '../db/connect.js';
import { sendToPrimary } from '../ipc.js';
import { log } from '../log.js';
import { newRedis } from '../redis-client.js';
import { ENDPOINTS_CHANGED_CHANNEL } from './endpoint-orgs.js';

/**
 * Wake-ups for the delivery processes, so a webhook goes out milliseconds after its event
 * committed instead of at the next poll. An HTTP worker sends one after each flush (the orgs whose
 * events it stored, if they have an enabled endpoint: endpoint-orgs.ts) and after any change to an
 * org's endpoints. Within a node it travels over the cluster IPC channel through the primary; with
 * REDIS_URL it is also published on Redis for the delivery processes of other nodes. A lost wake-up only costs latency: every stream also reads
 * on a slow poll (DELIVERY_POLL_MS).
 */
export interface DeliveryWakeMessage {
  type: 'delivery_wake';
  /** Orgs with newly committed events. */
  orgs: string[];
  /** Some org's endpoints were created, changed, deleted or recovered. */
  endpoints: boolean;
  /** The sending node (hostname and primary pid): a node ignores its own wake-ups on Redis. */
  node: string;
}

const REDIS_CHANNEL = 'triggers:delivery-wake';
// Wake-ups from one HTTP worker are at most this often; the orgs in between travel together.
// Under load a flush commits every few hundred microseconds: this keeps IPC (each message costs
// tens of microseconds in the worker, the primary and every delivery process) to 200 messages/s
// per HTTP worker. Under light load the first wake-up after a quiet spell goes out at once.
const COALESCE_MS = 5;
// More orgs than this in one wake-up: wake every stream instead of listing them.
const MAX_LISTED_ORGS = 200;

export function isDeliveryWake(message: unknown): message is DeliveryWakeMessage {
  return (message as { type?: unknown } | null)?.type === 'delivery_wake';
}

/** hostname:primary pid, the same in every worker of one node. */
function nodeName(): string {
  return `${os.hostname()}:${process.ppid}`;
}

/** The HTTP worker's side: coalesces wake-ups and sends them to the primary (and Redis). */
export class DeliveryWakePublisher {
  private orgs = new Set<string>();
  private endpoints = false;
  private timer: NodeJS.Timeout | null = null;
  private lastSent = 0;
  private readonly redis: Redis | null;
  private readonly node = nodeName();

  constructor(redisUrl: string | null) {
    this.redis = redisUrl
      ? newRedis(redisUrl, { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false })
      : null;
    this.redis?.on('error', () => {}); // the rate limiter already reports Redis outages
  }

  /** Events of the org committed (or may have committed unseen: EndpointOrgs' onGained). */
  eventsCommitted(orgId: string): void {
    this.orgs.add(orgId);
    this.schedule();
  }

  endpointsChanged(orgId: string): void {
    this.orgs.add(orgId);
    this.endpoints = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer !== null) return;
    const wait = this.lastSent + COALESCE_MS - performance.now();
    if (wait <= 0) this.send();
    else
      this.timer = setTimeout(() => {
        this.timer = null;
        this.send();
      }, wait);
  }

  private send(): void {
    this.lastSent = performance.now();
    const message: DeliveryWakeMessage = {
      type: 'delivery_wake',
      orgs: this.orgs.size > MAX_LISTED_ORGS ? ['*'] : [...this.orgs],
      endpoints: this.endpoints,
      node: this.node,
    };
    this.orgs = new Set();
    this.endpoints = false;
    sendToPrimary(message); // a draining worker's primary may be gone: never an 'error' event
    if (this.redis?.status === 'ready') this.redis.publish(REDIS_CHANNEL, JSON.stringify(message)).catch(() => {});
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.redis?.disconnect();
  }
}

/** The delivery process's side: wake-ups from the primary and, with REDIS_URL, from other nodes. */
export function listenForWakes(redisUrl: string | null, onWake: (message: DeliveryWakeMessage) => void): () => void {
  const onMessage = (message: unknown) => {
    if (isDeliveryWake(message)) onWake(message);
  };
  process.on('message', onMessage);
  let subscriber: Redis | null = null;
  if (redisUrl) {
    const self = nodeName();
    subscriber = newRedis(redisUrl, { maxRetriesPerRequest: null });
    let warned = false;
    subscriber.on('error', (error) => {
      if (!warned)
        log.warn({ err: error.message }, 'delivery wake-ups from other nodes unavailable (Redis); polling covers them');
      warned = true;
    });
    subscriber.on('ready', () => {
      warned = false;
    });
    subscriber.subscribe(REDIS_CHANNEL).catch(() => {});
    subscriber.on('message', (_channel: string, text: string) => {
      try {
        const message = JSON.parse(text) as DeliveryWakeMessage;
        if (isDeliveryWake(message) && message.node !== self) onWake(message);
      } catch {
        // not ours
      }
    });
  }
  return () => {
    process.off('message', onMessage);
    subscriber?.disconnect();
  };
}

/**
 * The delivery process's side of endpoint changes: the NOTIFY each change sends in its own
 * transaction (src/webhooks/service.ts; the progress writer's automatic disabling too). It comes
 * from Postgres, so it reaches the delivery processes of every node, with or without Redis, and
 * is never sent for a change that rolled back. (`postgres` listens again after a reconnect; a
 * notification missed meanwhile is covered by the heartbeat's sync, and for keys, deletes and
 * disables by the bound of src/delivery/signing-keys.ts.)
 */
export async function listenForEndpointChanges(
  sql: Sql,
  onChange: (orgId: string) => void,
): Promise<() => Promise<void>> {
  const listener = await sql.listen(ENDPOINTS_CHANGED_CHANNEL, onChange);
  return () => listener.unlisten().catch(() => {});
}
