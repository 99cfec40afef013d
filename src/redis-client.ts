import { createRequire } from 'node:module';
import type { Redis, RedisOptions } from 'ioredis';

const require = createRequire(import.meta.url);

/**
 * A Redis client, with ioredis loaded on first use: a node without REDIS_URL never loads it
 * (about 0.15 s of CPU in every process at start, measured: a third of a worker's start-up).
 */
export function newRedis(url: string, options: RedisOptions): Redis {
  const { Redis: Client } = require('ioredis') as typeof import('ioredis');
  return new Client(url, options);
}
