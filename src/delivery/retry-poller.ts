import type { Sql } from '../db/connect.js';
import { log } from '../log.js';
import { readEventsById } from './event-reader.js';
import type { EndpointStream, RetryItem } from './stream.js';

const RETRY_POLL_MS = 1_000;
const RETRY_BATCH = 1_000;

/** The room a poll may fill with event bodies: taken before it reads, given back after. */
export interface BodyBudget {
  take(): number;
  give(bytes: number): void;
}

/**
 * Finds the due retries and recovered deliveries of the endpoints this process streams
 * (webhook_deliveries_due) and hands them to their streams: every second, at the exact time of
 * a retry this process scheduled itself, and soon after a recover.
 */
export class RetryPoller {
  private timer: NodeJS.Timeout | null = null;
  private polling = false;
  private nextAt = Infinity;
  private stopped = false;

  constructor(
    private readonly sql: Sql,
    private readonly streams: () => Iterable<EndpointStream>,
    private readonly budget: BodyBudget,
  ) {}

  /** Poll at `atMs` (or earlier, if a poll is already due sooner). */
  schedule(atMs: number): void {
    if (this.stopped || atMs >= this.nextAt) return;
    this.nextAt = atMs;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.poll(), Math.max(0, atMs - Date.now()));
  }

  /** Due retries and recovered deliveries of the endpoints held here, handed to their streams. */
  private async poll(): Promise<void> {
    this.timer = null;
    this.nextAt = Infinity;
    if (this.polling || this.stopped) {
      this.schedule(Date.now() + RETRY_POLL_MS);
      return;
    }
    this.polling = true;
    let room = 0;
    try {
      const streams = [...this.streams()].filter(
        (stream) => !stream.stoppedForGood && stream.waitingRetries < RETRY_BATCH && stream.wantsRetries(),
      );
      const byId = new Map(streams.map((stream) => [stream.endpointId, stream]));
      if (streams.length > 0) {
        const rows = await this.sql`
          select org_id, endpoint_id, id, event_id, event_received_at, retry_index
          from webhook_deliveries
          where org_id = any(${[...new Set(streams.map((s) => s.orgId))]}::uuid[])
            and endpoint_id = any(${streams.map((s) => s.endpointId)}::uuid[])
            and status in ('pending', 'failed') and next_attempt_at <= now()
          order by next_attempt_at
          limit ${RETRY_BATCH}`;
        const due = rows.filter((row) => {
          const stream = byId.get(row.endpoint_id as string);
          return stream !== undefined && !stream.isBusyWith(row.id as string);
        });
        room = this.budget.take();
        const { bodies, types, deferred } = await readEventsById(
          this.sql,
          due.map((row) => ({
            orgId: row.org_id as string,
            eventId: row.event_id as string,
            receivedAt: row.event_received_at as Date,
          })),
          room,
        );
        const byStream = new Map<EndpointStream, RetryItem[]>();
        let handed = 0;
        for (const row of due) {
          const stream = byId.get(row.endpoint_id as string);
          // Over the byte budget: still due, read at a later poll.
          if (!stream || deferred.has(row.event_id as string)) continue;
          const items = byStream.get(stream) ?? [];
          items.push({
            deliveryId: row.id as string,
            eventId: row.event_id as string,
            eventType: types.get(row.event_id as string) ?? '',
            eventReceivedAtMs: (row.event_received_at as Date).getTime(),
            retryIndex: row.retry_index as number,
            body: bodies.get(row.event_id as string) ?? null,
          });
          byStream.set(stream, items);
          handed++;
        }
        // In event order, so a fifo endpoint retries its oldest failure first.
        for (const [stream, items] of byStream)
          stream.addRetries(items.sort((a, b) => (a.deliveryId < b.deliveryId ? -1 : 1)));
        // A full batch that was mostly handed out: more may be due, poll again at once. Rows their
        // streams are still busy with come back at every poll, first in the order: with a full
        // batch of them (a thousand hanging endpoints' failed deliveries waiting for their probes)
        // a 10 ms re-poll would query the same 1 000 rows a hundred times a second.
        if (rows.length === RETRY_BATCH && deferred.size === 0 && handed * 2 >= rows.length)
          this.schedule(Date.now() + 10);
      }
    } catch (error) {
      if (!this.stopped) log.error({ err: error }, 'polling due webhook retries failed');
    } finally {
      if (room > 0) this.budget.give(room);
      this.polling = false;
      this.schedule(Date.now() + RETRY_POLL_MS);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
