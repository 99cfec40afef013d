import os from 'node:os';
import path from 'node:path';
import { DatabaseUrlError, parseDatabaseUrl } from './db/database-url.js';
import { DEFAULT_EMBEDDED_PG_HOME } from './db/embedded-home.js';
import { SECRETS_KEY_BYTES, type SecretsKeys } from './secrets/sealed.js';

/** Set by the primary for its workers, not by an operator: '1' when the database is a Citus coordinator. */
export const ENV_ON_CITUS = 'TRIGGERS_ON_CITUS';

/**
 * Configuration is read from the environment once, at start, and validated here so the
 * request path can trust it. A bad value stops the process with a message naming the variable.
 */
export interface Config {
  port: number;
  host: string;
  workers: number;
  databaseUrl: string | null;
  dataDir: string;
  /**
   * Where the embedded Postgres goes when started as root and the `postgres` user cannot reach
   * the checkout (src/db/embedded-home.ts); absolute.
   */
  embeddedPgHome: string;
  redisUrl: string | null;
  /** Nodes sharing REDIS_URL: while Redis is down, each node allows 1/NODE_COUNT of an org's limit. */
  nodeCount: number;
  adminToken: string | null;
  metricsToken: string | null;
  logLevel: string;
  retentionDays: number;
  dedupWindowHours: number;
  /** How often the primary runs the retention job (src/ops/retention.ts); hourly unless tests shorten it. */
  retentionIntervalMs: number;
  /** Events waiting for a flush, per HTTP worker, before new ones are refused with 503. */
  maxQueuedEvents: number;
  /** Largest number of events one COPY carries. */
  maxBatchRows: number;
  /** Flushes (transactions) one HTTP worker may run at once. */
  flushConcurrency: number;
  flushTimeoutMs: number;
  /**
   * Which client writes the batcher's COPYs without dedup claims: `wire` (our own connections,
   * one socket write per flush; src/db/copy-pool.ts) or `postgres` (the `postgres` client, for
   * diagnosis and as a fallback; src/db/client-copy.ts).
   */
  ingestCopyClient: IngestCopyClient;
  /** Argon2 verifications that may wait for a pool thread before new ones are refused. */
  authQueueLimit: number;
  authCacheSize: number;
  /** Long-poll receives (consumer groups) that may wait at once in one HTTP process, per org and in all. */
  groupWaitPerOrg: number;
  groupWaitTotal: number;
  shutdownTimeoutMs: number;
  webhookAllowHttp: boolean;
  webhookAllowPrivate: boolean;
  webhookTimeoutMs: number;
  webhookRetryScheduleMs: number[];
  webhookDisableAfterHours: number;
  /** Ceiling of an endpoint's adaptive concurrency when it sets no max_in_flight. */
  webhookEndpointConcurrency: number;
  /** Webhook endpoints (enabled or not) one org may have; one more is a 409. */
  webhookMaxEndpointsPerOrg: number;
  /**
   * DESTINATION_ALLOWED_HOSTS: the broker hosts destinations may use (API.md §5b), each `host` (any
   * port) or `host:port`, lower-case. Empty: no broker destinations.
   */
  destinationAllowedHosts: string[];
  /** Event types (schemas) one org may register; one more is a 409 (docs/EVENT-TYPES.md). */
  eventTypesMaxPerOrg: number;
  /** Compiled schemas one HTTP process keeps (an LRU; src/event-types/registry.ts). */
  eventTypeCacheSize: number;
  /** Delivery processes per node (webhook senders); endpoints are shared out among them. */
  deliveryWorkers: number;
  /** How often every endpoint stream reads without a wake-up (the backstop for a lost one). */
  deliveryPollMs: number;
  /** Sends in flight from one delivery process, shared fairly between orgs (src/delivery/slot-shares.ts). */
  deliveryMaxInFlight: number;
  /** Bytes of event bodies one delivery process holds at most (read ahead, in flight, retries). */
  deliveryBufferBytes: number;
  /** The same for one endpoint's stream. */
  webhookEndpointBufferBytes: number;
  defaultRateLimitPerSec: number;
  defaultBurst: number;
  /**
   * A worker role "cannot stay up" when this many of its workers died before becoming ready
   * within crashLoopWindowMs: the primary then stops and exits 1 (src/crash-policy.ts).
   * 0: never give up.
   */
  crashLoopLimit: number;
  crashLoopWindowMs: number;
  /**
   * In a worker: the database is a Citus coordinator (src/db/citus.ts), as the primary found it at
   * start and handed down in ENV_ON_CITUS. False in the primary, which asks the database itself.
   */
  onCitus: boolean;
  /**
   * SECRETS_KEY and SECRETS_KEY_PREVIOUS: secrets at rest are sealed under the current key and
   * opened under any (src/secrets/sealed.ts, docs/SECRETS.md).
   */
  secretsKeys: SecretsKeys;
}

export class ConfigError extends Error {}

export const INGEST_COPY_CLIENTS = ['wire', 'postgres'] as const;
export type IngestCopyClient = (typeof INGEST_COPY_CLIENTS)[number];

function ingestCopyClient(env: NodeJS.ProcessEnv): IngestCopyClient {
  const raw = (env.INGEST_COPY_CLIENT || 'wire').toLowerCase();
  if (!(INGEST_COPY_CLIENTS as readonly string[]).includes(raw)) {
    throw new ConfigError(
      `INGEST_COPY_CLIENT must be one of ${INGEST_COPY_CLIENTS.join(', ')}, got "${env.INGEST_COPY_CLIENT}"`,
    );
  }
  return raw as IngestCopyClient;
}

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

function logLevel(env: NodeJS.ProcessEnv): string {
  const level = (env.LOG_LEVEL || 'info').toLowerCase();
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new ConfigError(`LOG_LEVEL must be one of ${LOG_LEVELS.join(', ')}, got "${env.LOG_LEVEL}"`);
  }
  return level;
}

function int(env: NodeJS.ProcessEnv, name: string, fallback: number, min: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new ConfigError(`${name} must be an integer from ${min} to ${max}, got "${raw}"`);
  }
  return value;
}

function bool(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = (env[name] ?? '').toLowerCase();
  if (raw === '' || raw === 'false' || raw === '0' || raw === 'no') return false;
  if (raw === 'true' || raw === '1' || raw === 'yes') return true;
  throw new ConfigError(`${name} must be true or false, got "${env[name]}"`);
}

// Relative would mean relative to the checkout, the very place the postgres user cannot reach.
function absolutePath(env: NodeJS.ProcessEnv, name: string, fallback: string): string {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!path.isAbsolute(raw)) throw new ConfigError(`${name} must be an absolute path, got "${raw}"`);
  return path.resolve(raw);
}

function optional(env: NodeJS.ProcessEnv, name: string): string | null {
  const raw = env[name];
  return raw === undefined || raw === '' ? null : raw;
}

// Read here so a URL we cannot honour (sslmode=bogus, an unreadable sslrootcert, …) stops the
// start with one line; every connection parses it the same way later (src/db/database-url.ts).
// Without DATABASE_URL, the PG* variables still apply to the embedded Postgres's socket URL.
function databaseUrl(env: NodeJS.ProcessEnv): string | null {
  const raw = optional(env, 'DATABASE_URL');
  try {
    parseDatabaseUrl(raw ?? 'postgres://postgres@localhost/triggers?host=%2Fembedded-postgres-socket-dir', env);
  } catch (error) {
    if (error instanceof DatabaseUrlError)
      throw new ConfigError(
        `${raw === null ? 'PG* environment (for the embedded Postgres)' : 'DATABASE_URL'}: ${error.message}`,
      );
    throw error;
  }
  return raw;
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "5s,5m,30m,2h" into milliseconds. */
export function parseSchedule(raw: string, name = 'WEBHOOK_RETRY_SCHEDULE'): number[] {
  const steps = raw
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean);
  if (steps.length === 0) throw new ConfigError(`${name} must list at least one duration`);
  return steps.map((step) => {
    const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(step);
    if (!match) throw new ConfigError(`${name}: "${step}" is not a duration like 5s, 30m or 2h`);
    return Math.round(Number(match[1]) * DURATION_UNITS[match[2]!]!);
  });
}

/** "host" or "host:port" entries, comma-separated; an IPv6 host in brackets ("[::1]:5672"). */
function allowedHosts(env: NodeJS.ProcessEnv, name: string): string[] {
  const entries = (env[name] ?? '')
    .split(',')
    .map((entry) => entry.trim().toLowerCase())
    .filter(Boolean);
  for (const entry of entries) {
    if (!/^(\[[0-9a-f:.]+\]|[a-z0-9._-]+)(:\d{1,5})?$/.test(entry))
      throw new ConfigError(`${name}: "${entry}" is not a host or host:port`);
  }
  return entries;
}

const MIB = 1024 * 1024;

// An endpoint's budget above the process's would never bind; one below a payload's size limit
// (256 KiB) still lets each read take one event.
function deliveryBuffers(env: NodeJS.ProcessEnv): { deliveryBufferBytes: number; webhookEndpointBufferBytes: number } {
  const deliveryBufferBytes = int(env, 'DELIVERY_BUFFER_BYTES', 64 * MIB, MIB, 64 * 1024 * MIB);
  const webhookEndpointBufferBytes = int(
    env,
    'WEBHOOK_ENDPOINT_BUFFER_BYTES',
    Math.min(8 * MIB, deliveryBufferBytes),
    64 * 1024,
    64 * 1024 * MIB,
  );
  if (webhookEndpointBufferBytes > deliveryBufferBytes) {
    throw new ConfigError(
      `WEBHOOK_ENDPOINT_BUFFER_BYTES must not exceed DELIVERY_BUFFER_BYTES (${deliveryBufferBytes}), got "${env.WEBHOOK_ENDPOINT_BUFFER_BYTES}"`,
    );
  }
  return { deliveryBufferBytes, webhookEndpointBufferBytes };
}

// A key is 32 bytes: base64 (`openssl rand -base64 32`, base64url accepted) or 64 hex digits.
// Messages say what is wrong with it and never echo it: it is the one secret that opens the rest.
function secretsKey(raw: string, name: string): Buffer {
  const value = raw.trim();
  let key: Buffer | null = null;
  if (/^[0-9a-fA-F]{64}$/.test(value)) key = Buffer.from(value, 'hex');
  else if (/^[A-Za-z0-9+/]{43}=?$/.test(value)) key = Buffer.from(value, 'base64');
  else if (/^[A-Za-z0-9_-]{43}=?$/.test(value)) key = Buffer.from(value, 'base64url');
  if (key === null || key.length !== SECRETS_KEY_BYTES) {
    throw new ConfigError(
      `${name} must be ${SECRETS_KEY_BYTES} random bytes as base64 (openssl rand -base64 32) or 64 hex digits; the value given (${value.length} characters) is neither`,
    );
  }
  return key;
}

function secretsKeys(env: NodeJS.ProcessEnv): SecretsKeys {
  const current = optional(env, 'SECRETS_KEY');
  const previous = (env.SECRETS_KEY_PREVIOUS ?? '')
    .split(',')
    .map((part) => part.trim())
    .filter(Boolean)
    .map((part, i) => secretsKey(part, `SECRETS_KEY_PREVIOUS (key ${i + 1})`));
  return { current: current === null ? null : secretsKey(current, 'SECRETS_KEY'), previous };
}

export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const adminToken = optional(env, 'ADMIN_TOKEN');
  if (adminToken !== null && adminToken.length < 16) {
    throw new ConfigError('ADMIN_TOKEN must be at least 16 characters');
  }
  const database = databaseUrl(env);
  return {
    port: int(env, 'PORT', 8080, 0, 65535),
    host: env.HOST || '0.0.0.0',
    workers: int(env, 'WORKERS', os.availableParallelism(), 1, 256),
    databaseUrl: database,
    dataDir: path.resolve(env.DATA_DIR || './.data'),
    embeddedPgHome: absolutePath(env, 'EMBEDDED_PG_HOME', DEFAULT_EMBEDDED_PG_HOME),
    redisUrl: optional(env, 'REDIS_URL'),
    nodeCount: int(env, 'NODE_COUNT', 1, 1, 1000),
    adminToken,
    metricsToken: optional(env, 'METRICS_TOKEN'),
    logLevel: logLevel(env),
    retentionDays: int(env, 'RETENTION_DAYS', 30, 1, 3650),
    dedupWindowHours: int(env, 'DEDUP_WINDOW_HOURS', 24, 1, 24 * 365),
    retentionIntervalMs: int(env, 'RETENTION_INTERVAL_MS', 3_600_000, 100, 86_400_000),
    maxQueuedEvents: int(env, 'MAX_QUEUED_EVENTS', 50_000, 100, 10_000_000),
    maxBatchRows: int(env, 'MAX_BATCH_ROWS', 5000, 1, 100_000),
    // The embedded Postgres shares the HTTP workers' cores: with one flush in flight per worker
    // instead of two, a durable event cost 6-7% less CPU (Postgres 8-13% less), throughput within
    // ±3% and the same latency at 5 000 req/s (docs/PERFORMANCE.md, "Flush concurrency 1 beside
    // the embedded Postgres"). A database elsewhere keeps two, to overlap flushes with the network
    // round trip (not measured).
    flushConcurrency: int(env, 'FLUSH_CONCURRENCY', database === null ? 1 : 2, 1, 64),
    flushTimeoutMs: int(env, 'FLUSH_TIMEOUT_MS', 10_000, 100, 600_000),
    ingestCopyClient: ingestCopyClient(env),
    authQueueLimit: int(env, 'AUTH_QUEUE_LIMIT', 32, 1, 100_000),
    authCacheSize: int(env, 'AUTH_CACHE_SIZE', 10_000, 10, 10_000_000),
    groupWaitPerOrg: int(env, 'GROUP_WAIT_PER_ORG', 100, 1, 100_000),
    groupWaitTotal: int(env, 'GROUP_WAIT_TOTAL', 10_000, 1, 1_000_000),
    shutdownTimeoutMs: int(env, 'SHUTDOWN_TIMEOUT_MS', 9000, 100, 600_000),
    webhookAllowHttp: bool(env, 'WEBHOOK_ALLOW_HTTP'),
    webhookAllowPrivate: bool(env, 'WEBHOOK_ALLOW_PRIVATE'),
    webhookTimeoutMs: int(env, 'WEBHOOK_TIMEOUT_MS', 10_000, 10, 600_000),
    webhookRetryScheduleMs: parseSchedule(env.WEBHOOK_RETRY_SCHEDULE || '5s,5m,30m,2h,5h,10h,10h'),
    webhookDisableAfterHours: int(env, 'WEBHOOK_DISABLE_AFTER_HOURS', 120, 0, 24 * 365),
    webhookEndpointConcurrency: int(env, 'WEBHOOK_ENDPOINT_CONCURRENCY', 256, 1, 1000),
    webhookMaxEndpointsPerOrg: int(env, 'WEBHOOK_MAX_ENDPOINTS_PER_ORG', 100, 1, 100_000),
    destinationAllowedHosts: allowedHosts(env, 'DESTINATION_ALLOWED_HOSTS'),
    eventTypesMaxPerOrg: int(env, 'EVENT_TYPES_MAX_PER_ORG', 500, 1, 100_000),
    eventTypeCacheSize: int(env, 'EVENT_TYPE_CACHE_SIZE', 2000, 10, 1_000_000),
    deliveryWorkers: int(env, 'DELIVERY_WORKERS', 1, 1, 64),
    deliveryPollMs: int(env, 'DELIVERY_POLL_MS', 1_000, 10, 600_000),
    deliveryMaxInFlight: int(env, 'DELIVERY_MAX_IN_FLIGHT', 1024, 1, 1_000_000),
    ...deliveryBuffers(env),
    defaultRateLimitPerSec: int(env, 'DEFAULT_RATE_LIMIT_PER_SEC', 1000, 1, 10_000_000),
    defaultBurst: int(env, 'DEFAULT_BURST', 2000, 1, 10_000_000),
    crashLoopLimit: int(env, 'CRASH_LOOP_LIMIT', 5, 0, 1000),
    crashLoopWindowMs: int(env, 'CRASH_LOOP_WINDOW_S', 60, 1, 86_400) * 1000,
    onCitus: env[ENV_ON_CITUS] === '1',
    secretsKeys: secretsKeys(env),
  };
}
