import type { Config } from '../config.js';
import type { Sql } from '../db/connect.js';
import type { CheckResult } from '../ops/status.js';
import { FailoverStore } from './failover-store.js';
import { BucketTable } from './bucket-table.js';
import { IpcLeaseClient } from './ipc-store.js';
import { RateLimiter } from './limiter.js';
import { OrgLimitSource } from './org-limits.js';
import { RedisLeaseStore } from './redis-store.js';

// At start, wait this long for Redis; after that, serve on local limits until it connects.
const REDIS_START_WAIT_MS = 3_000;

export interface HttpWorkerRateLimits {
  limiter: RateLimiter;
  /** The /status check: 'disabled' without REDIS_URL. */
  redisCheck(): Promise<CheckResult>;
  stop(): Promise<void>;
}

/**
 * Builds an HTTP worker's rate limiter: Redis-backed with REDIS_URL, else leasing from the
 * primary; a process that has no primary (the app driven in-process) keeps the buckets itself.
 */
export async function startRateLimits(config: Config, sql: Sql): Promise<HttpWorkerRateLimits> {
  const nodeLocal = process.send ? new IpcLeaseClient() : new BucketTable();
  const redis = config.redisUrl ? new RedisLeaseStore(config.redisUrl) : null;
  if (redis) await redis.waitUntilReady(REDIS_START_WAIT_MS);
  const store = redis ? new FailoverStore(redis, nodeLocal, config.nodeCount) : nodeLocal;
  const fallback = { rate: config.defaultRateLimitPerSec, burst: config.defaultBurst };
  let limiter: RateLimiter;
  const limits = new OrgLimitSource(
    sql,
    fallback,
    () => limiter.knownOrgs(),
    (orgId, limit) => limiter.applyLimit(orgId, limit),
  );
  limiter = new RateLimiter({ store, loadLimit: (orgId) => limits.load(orgId) });
  await limits.start();
  return {
    limiter,
    redisCheck: redis ? () => redis.check() : async () => 'disabled',
    async stop() {
      await limiter.stop();
      await limits.stop();
      await redis?.stop();
      if (nodeLocal instanceof BucketTable) nodeLocal.stop();
    },
  };
}
