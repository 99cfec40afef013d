import type { OutgoingMessage, SendOutcome } from '../delivery/transport.js';

/**
 * A destination beyond HTTP (API.md §5b) and the Publisher that carries messages to it: the
 * contract every broker module implements (rabbitmq.ts, nats.ts, redis-stream.ts) and the rest of
 * the project names. The factory is publisher.ts.
 */

export type DestinationType = 'rabbitmq' | 'nats' | 'redis_stream';

export interface RabbitMqConfig {
  url: string;
  exchange: string;
  routing_key?: string;
}

export interface NatsConfig {
  servers: string[];
  subject: string;
  /** The text of a NATS `.creds` file (user JWT and NKey seed). */
  credentials?: string;
}

export interface RedisStreamConfig {
  url: string;
  stream: string;
  maxlen?: number;
}

export type Destination =
  | { type: 'rabbitmq'; config: RabbitMqConfig }
  | { type: 'nats'; config: NatsConfig }
  | { type: 'redis_stream'; config: RedisStreamConfig };

export interface PublisherOptions {
  /** WEBHOOK_TIMEOUT_MS: bounds every publish, the wait for a connection included. */
  timeoutMs: number;
}

export interface Publisher {
  /** Never rejects; settles within options.timeoutMs (a timeout is a failed outcome). */
  publish(message: OutgoingMessage): Promise<SendOutcome>;
  /** Closes the connection; publishes still in flight settle at once as failed ('closed'). */
  close(): Promise<void>;
}
