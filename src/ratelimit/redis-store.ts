import type { Redis } from 'ioredis';
import { log } from '../log.js';
import { newRedis } from '../redis-client.js';
import type { LeaseResult } from './bucket-math.js';
import type { TokenStore } from './store.js';

/**
 * bucket-math.ts's leaseFromBucket as one atomic script, so every worker of every node leases from
 * the same bucket. The clock is Redis's own (TIME), so clock skew between nodes does not matter.
 * The key expires once the bucket would be full again: an idle org costs Redis nothing.
 */
const LEASE_SCRIPT = `
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
elseif now > at then
  tokens = tokens + (now - at) * rate / 1000
  at = now
end
if tokens > burst then tokens = burst end
local granted
if want >= 0 then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
else
  granted = want
  tokens = math.min(burst, tokens - want)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - tokens) * 1000 / rate) + 1000)
return {granted, tostring(tokens)}
`;

const KEY_PREFIX = 'triggers:ratelimit:';
// A lease is a single small script: if Redis takes longer than this it is in trouble; use local
// limits for that lease. Generous, because a busy machine can stall a healthy Redis for a while.
const COMMAND_TIMEOUT_MS = 500;

type LeaseCommand = (key: string, rate: number, burst: number, want: number) => Promise<[number, string]>;

/**
 * Leases from the shared bucket in Redis. Commands fail at once while disconnected (no offline
 * queue), so a Redis outage never holds up a lease: the caller falls back to local limits.
 * ioredis reconnects on its own; `up` says whether leases currently go to Redis.
 */
export class RedisLeaseStore implements TokenStore {
  readonly client: Redis;
  private wasUp = false;
  private warnedDown = false;

  constructor(url: string) {
    this.client = newRedis(url, {
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      enableAutoPipelining: true,
      commandTimeout: COMMAND_TIMEOUT_MS,
      connectTimeout: 2_000,
      retryStrategy: (attempt) => Math.min(attempt * 100, 1_000),
    });
    this.client.defineCommand('triggersLease', { numberOfKeys: 1, lua: LEASE_SCRIPT });
    this.client.on('ready', () => {
      if (this.warnedDown) log.warn('redis is reachable again: rate limits are shared across nodes again');
      this.wasUp = true;
      this.warnedDown = false;
    });
    // Without an 'error' listener ioredis prints every failed reconnect; one warning per outage is enough.
    this.client.on('error', () => this.noteDown());
    this.client.on('close', () => this.noteDown());
  }

  get up(): boolean {
    return this.client.status === 'ready';
  }

  /** Resolves once connected, or after `timeoutMs` (then leases use the fallback until Redis is up). */
  async waitUntilReady(timeoutMs: number): Promise<void> {
    if (this.up) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, timeoutMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.client.once('ready', done);
    });
    if (!this.up) this.noteDown();
  }

  async lease(orgId: string, rate: number, burst: number, want: number): Promise<LeaseResult> {
    const [granted, tokens] = await (this.client as unknown as { triggersLease: LeaseCommand }).triggersLease(
      KEY_PREFIX + orgId,
      rate,
      burst,
      want,
    );
    return { granted: Number(granted), tokens: Number(tokens) };
  }

  /** For /status: 'ok' when Redis answers a PING now. */
  async check(): Promise<'ok' | 'down'> {
    if (!this.up) return 'down';
    try {
      await this.client.ping();
      return 'ok';
    } catch {
      return 'down';
    }
  }

  noteDown(): void {
    if (this.warnedDown) return;
    this.warnedDown = true;
    log.warn(
      { was_connected: this.wasUp },
      'redis is unreachable: rate limits fall back to local per-node limits until it returns (ingestion continues)',
    );
  }

  async stop(): Promise<void> {
    this.client.removeAllListeners();
    this.client.on('error', () => {});
    this.client.disconnect();
  }
}
