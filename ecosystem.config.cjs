// pm2 process file: `npm run build && pm2 start ecosystem.config.cjs` (see docs/PM2.md).
//
// One pm2 app in fork mode: the app's own primary forks the HTTP workers and the delivery processes,
// restarts crashed ones, aggregates /metrics and drains on SIGTERM. pm2's cluster mode would
// bypass that primary (and prom-client's cluster aggregation does not work under it).
//
// Values below are defaults; anything set in the shell that runs `pm2 start` wins, e.g.
//   PORT=9090 DATABASE_URL=postgres://… ADMIN_TOKEN=… pm2 start ecosystem.config.cjs
// (after a change, `pm2 reload ecosystem.config.cjs --update-env`).
const passThrough = [
  'HOST', 'WORKERS', 'DATABASE_URL', 'DATA_DIR', 'EMBEDDED_PG_HOME', 'REDIS_URL', 'ADMIN_TOKEN', 'METRICS_TOKEN', 'LOG_LEVEL',
  'RETENTION_DAYS', 'DEDUP_WINDOW_HOURS', 'SHUTDOWN_TIMEOUT_MS',
  'WEBHOOK_ALLOW_HTTP', 'WEBHOOK_ALLOW_PRIVATE', 'WEBHOOK_TIMEOUT_MS', 'WEBHOOK_RETRY_SCHEDULE', 'WEBHOOK_DISABLE_AFTER_HOURS',
  'WEBHOOK_ENDPOINT_CONCURRENCY', 'WEBHOOK_MAX_ENDPOINTS_PER_ORG', 'DELIVERY_WORKERS', 'DELIVERY_POLL_MS', 'NODE_COUNT',
  'CRASH_LOOP_LIMIT', 'CRASH_LOOP_WINDOW_S',
];
const env = { NODE_ENV: 'production', PORT: process.env.PORT || '8080' };
for (const name of passThrough) if (process.env[name] !== undefined) env[name] = process.env[name];

module.exports = {
  apps: [{
    name: process.env.PM2_APP_NAME || 'triggers-api',
    script: 'dist/src/main.js',
    cwd: __dirname,
    exec_mode: 'fork',
    instances: 1,
    env,
    // The primary drains on SIGTERM: workers stop accepting, finish in-flight requests and
    // flushes (SHUTDOWN_TIMEOUT_MS, 9 s by default), then it exits 0. pm2 must wait longer than
    // that before its SIGKILL, or accepted work could be cut off.
    kill_signal: 'SIGTERM',
    kill_timeout: 12000,
    // Signal only the primary: it stops its workers (and an embedded Postgres) in order. With
    // pm2's tree kill, Postgres would get the signal at the same time as the workers draining into it.
    treekill: false,
    // Embedded Postgres can take a while on first start; a crash loop backs off instead of spinning.
    min_uptime: 10000,
    exp_backoff_restart_delay: 200,
    merge_logs: true,
  }],
};
