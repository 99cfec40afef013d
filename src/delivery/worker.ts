import { randomUUID } from 'node:crypto';
import os from 'node:os';
import type { Config } from '../config.js';
import { ENV_DATABASE_URL } from '../cluster/messages.js';
import { onShutdownRequest } from '../cluster/shutdown-signals.js';
import { openDatabase, type Sql } from '../db/connect.js';
import { log } from '../log.js';
import { Dispatcher } from './dispatcher.js';
import { Fanout } from './fanout.js';
import { WebhookSender } from './sender.js';

// Polling: new events are found within FANOUT_INTERVAL_MS, due retries within CLAIM_INTERVAL_MS.
const FANOUT_INTERVAL_MS = 200;
const CLAIM_INTERVAL_MS = 250;
const HEARTBEAT_MS = 2_000;
// Long enough to ride out a GC pause or a slow heartbeat query; short enough that a SIGKILLed
// worker's leased deliveries go out again within seconds.
const STALE_OWNER_MS = 10_000;
const MAX_IN_FLIGHT = 512;
// After a database error, wait this long before the next try instead of spinning.
const ERROR_BACKOFF_MS = 1_000;
const CLEANUP_INTERVAL_MS = 3_600_000;
const CLEANUP_BATCH = 10_000;

/** A sleep that `wake()` cuts short. */
class Waker {
  private wakeNow: (() => void) | null = null;
  private pending = false;

  sleep(ms: number): Promise<void> {
    if (this.pending) {
      this.pending = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      const self = this;
      function done() {
        clearTimeout(timer);
        self.wakeNow = null;
        resolve();
      }
      this.wakeNow = done;
    });
  }

  wake(): void {
    if (this.wakeNow) this.wakeNow();
    else this.pending = true;
  }
}

/**
 * The delivery worker process (role "delivery", one per node, forked by the primary). Two loops:
 * fan-out (new events → delivery rows) and dispatch (due deliveries → signed POSTs). Everything it
 * knows is in Postgres, so a crash loses nothing: a replacement (or another node's worker) takes
 * over leases once this process's heartbeat goes stale.
 */
export async function runDeliveryWorker(config: Config): Promise<void> {
  const sql = openDatabase(process.env[ENV_DATABASE_URL]!, { max: 10, name: 'triggers-delivery' });
  const workerId = randomUUID();
  await sql`insert into delivery_workers (id, host, pid) values (${workerId}, ${os.hostname()}, ${process.pid})`;

  const sender = new WebhookSender({ timeoutMs: config.webhookTimeoutMs, allowPrivate: config.webhookAllowPrivate });
  const fanout = new Fanout(sql);
  const dispatcher = new Dispatcher(sql, sender, {
    workerId,
    retryScheduleMs: config.webhookRetryScheduleMs,
    timeoutMs: config.webhookTimeoutMs,
    disableAfterHours: config.webhookDisableAfterHours,
    perEndpointConcurrency: config.webhookEndpointConcurrency,
    maxInFlight: MAX_IN_FLIGHT,
    staleOwnerMs: STALE_OWNER_MS,
  });
  const fanoutWaker = new Waker();
  const claimWaker = new Waker();
  dispatcher.onCapacity = () => claimWaker.wake();
  let stopping = false;

  const fanoutLoop = (async () => {
    while (!stopping) {
      let more = false;
      try {
        const result = await fanout.runOnce();
        if (result.created > 0) claimWaker.wake();
        more = result.more;
      } catch (error) {
        if (!stopping) log.error({ err: error }, 'webhook fan-out failed');
        await new Promise((resolve) => setTimeout(resolve, ERROR_BACKOFF_MS));
      }
      if (!more) await fanoutWaker.sleep(FANOUT_INTERVAL_MS);
    }
  })();

  const claimLoop = (async () => {
    while (!stopping) {
      let claimed = 0;
      try {
        claimed = await dispatcher.claimAndSend();
      } catch (error) {
        if (!stopping) log.error({ err: error }, 'claiming webhook deliveries failed');
        await new Promise((resolve) => setTimeout(resolve, ERROR_BACKOFF_MS));
      }
      if (claimed === 0) await claimWaker.sleep(CLAIM_INTERVAL_MS);
    }
  })();

  const heartbeat = setInterval(() => {
    sql`update delivery_workers set heartbeat_at = now() where id = ${workerId}`
      .catch((error) => log.error({ err: error.message }, 'delivery worker heartbeat failed'));
  }, HEARTBEAT_MS);

  const cleanup = setInterval(() => {
    removeExpired(sql, config.retentionDays).catch((error) => log.error({ err: error.message }, 'webhook delivery cleanup failed'));
  }, CLEANUP_INTERVAL_MS);
  cleanup.unref();

  let stoppingPromise: Promise<void> | null = null;
  const drainAndExit = (reason: string) => {
    stoppingPromise ??= (async () => {
      log.info({ reason, sending: dispatcher.sending }, 'delivery worker draining');
      stopping = true;
      fanoutWaker.wake();
      claimWaker.wake();
      clearInterval(heartbeat);
      clearInterval(cleanup);
      // Leave time to hand back leases before the primary's SIGKILL deadline.
      const grace = Math.max(100, config.shutdownTimeoutMs - 2_000);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([fanoutLoop, claimLoop]).then(() => dispatcher.idle()),
        new Promise((resolve) => { timer = setTimeout(resolve, grace); }),
      ]);
      clearTimeout(timer);
      dispatcher.abortAll();
      await Promise.race([dispatcher.idle(), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
      await sql`delete from delivery_workers where id = ${workerId}`.catch(() => {});
      await sender.close().catch(() => {});
      await sql.end({ timeout: 1 });
      process.exit(0);
    })();
  };

  onShutdownRequest(drainAndExit);

  log.info({ workerId, pid: process.pid }, 'delivery worker running');
  process.send?.({ type: 'ready', role: 'delivery' });
}

/** Deliveries older than the event retention point at events that no longer exist. */
async function removeExpired(sql: Sql, retentionDays: number): Promise<void> {
  for (;;) {
    const result = await sql`
      delete from webhook_deliveries where id in (
        select id from webhook_deliveries
        where created_at < now() - make_interval(days => ${retentionDays})
        limit ${CLEANUP_BATCH})`;
    if (result.count < CLEANUP_BATCH) break;
  }
  await sql`delete from delivery_workers where heartbeat_at < now() - interval '1 day'`;
}
