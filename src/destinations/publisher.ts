// Placeholder with the interface of the `brokers` branch (amqplib, nats, ioredis publishers),
// which replaces this file when it is merged.
import { notSent, type OutgoingMessage, type SendOutcome } from '../delivery/transport.js';

export type DestinationType = 'rabbitmq' | 'nats' | 'redis_stream';
export interface RabbitMqConfig {
  url: string;
  exchange: string;
  routing_key?: string;
}
export interface NatsConfig {
  servers: string[];
  subject: string;
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
  timeoutMs: number;
}
export interface Publisher {
  publish(message: OutgoingMessage): Promise<SendOutcome>;
  close(): Promise<void>;
}

export function createPublisher(_destination: Destination, _options: PublisherOptions): Publisher {
  return {
    publish: () => Promise.resolve(notSent('not built yet')),
    close: () => Promise.resolve(),
  };
}
