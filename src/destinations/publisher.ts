import { createNatsPublisher } from './nats.js';
import { createRabbitMqPublisher } from './rabbitmq.js';
import { createRedisStreamPublisher } from './redis-stream.js';
import type { Destination, Publisher, PublisherOptions } from './types.js';

export type * from './types.js';

/*
 * One broker connection per Publisher, opened on the first publish, reopened with backoff after
 * it drops. Each broker's wire lives in its own module, the contract they share in types.ts.
 */

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
