import type { OutgoingMessage, SendOutcome } from '../delivery/transport.js';
import { createNatsPublisher } from './nats.js';
import { createRabbitMqPublisher } from './rabbitmq.js';
import { createRedisStreamPublisher } from './redis-stream.js';

/**
 * A destination beyond HTTP (API.md §5b) and the Publisher that carries messages to it: one
 * broker connection per Publisher, opened on the first publish, reopened with backoff after it
 * drops. Each broker's wire lives in its own module; this one names the contract they share.
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

/**
 * A Publisher for one destination. The config arrives validated (URLs parse, names non-empty) with
 * credentials in clear; no error text a Publisher returns contains them.
 */
export function createPublisher(destination: Destination, options: PublisherOptions): Publisher {
  switch (destination.type) {
    case 'rabbitmq':
      return createRabbitMqPublisher(destination.config, options);
    case 'nats':
      return createNatsPublisher(destination.config, options);
    case 'redis_stream':
      return createRedisStreamPublisher(destination.config, options);
  }
}
