import type { Sql } from '../db/connect.js';
import { log } from '../log.js';
import {
  countOpenDeliveries,
  loadEndpointSettings,
  openKeyedDeliveries,
  type EndpointSettings,
} from './endpoint-settings.js';
import { readWatermark } from '../ingest/sequence.js';
import { readEventsAfter } from './event-reader.js';
import type { LeaseKeeper } from './leases.js';
import { ProgressWriter } from './progress-writer.js';
import { ReadQueue } from './read-queue.js';
import { RetryPoller } from './retry-poller.js';
import { SigningKeys } from './signing-keys.js';
import { SlotShares } from './slot-shares.js';
import { EndpointStream, type StreamContext } from './stream.js';
import type { Wires } from './transport.js';

export interface EngineOptions {
  retryScheduleMs: readonly number[];
  disableAfterHours: number;
  /** Ceiling of an endpoint's adaptive window when it sets no max_in_flight. */
  defaultMaxInFlight: number;
  /** Sends in flight from this process over all endpoints (DELIVERY_MAX_IN_FLIGHT), shared between orgs (slot-shares.ts). */
  maxInFlight: number;
  /** Event bodies this process holds, in bytes (DELIVERY_BUFFER_BYTES): read ahead, in flight, retries. */
  bufferBytes: number;
  /** The same for one endpoint (WEBHOOK_ENDPOINT_BUFFER_BYTES). */
  endpointBufferBytes: number;
  /** Every stream reads again this often even without a wake-up (a lost wake-up costs this much latency). */
  pollIntervalMs: number;
}

// Events per read: large enough that a backlog drains in few queries, small enough to keep a
// stream's bookkeeping bounded (LOW_WATER + READ_BATCH events); a read also stops at the
// stream's and the process's byte budget (takeReadRoom).
const READ_BATCH = 500;
// Reads running at once; the pool has a few more connections for the writer and the poll.
const READ_CONCURRENCY = 4;
// Events read and waiting to be sent, over all streams of the process: bounds the bookkeeping when
// many endpoints have a backlog of small events (a stream holds up to LOW_WATER + READ_BATCH);
// the bodies' bytes are bounded by DELIVERY_BUFFER_BYTES. A stream that finds the process full
// reads again at the next poll.
const MAX_QUEUED_EVENTS = 50_000;
// Attempt records waiting for the progress writer may take this share of DELIVERY_BUFFER_BYTES:
// past it no new send starts (a stalled writer would otherwise collect records without end),
// and sends resume once half of it is written.
const PROGRESS_SHARE = 4;
const POLL_STREAMS_PER_TICK = 500;
const READ_ERROR_BACKOFF_MS = 1_000;

/**
 * The delivery process's work: the streams of the endpoints it holds a lease on, the reads that
 * feed them, the poll for due retries (retry-poller.ts), and the one progress writer. Wake-ups (a flush committed
 * events of an org; an org's endpoints changed) come from the HTTP workers through the primary
 * and, across nodes, Redis (src/delivery/wake.ts); a slow poll covers a lost one.
 *
 * The flow, as the states of one event in one endpoint's stream and who moves it on:
 *
 *   (in the org's events, after the cursor)
 *     │ engine: read (a wake-up, the poll, or the queue running low: requestRead → read)
 *     ▼
 *   queued ──────────────── stream.addEvents: type/deliver_from filter; a settled one is skipped
 *     │ stream.pump: window (AdaptiveLimit; 1 while suspect or fifo), pacer, process slot (SlotShares)
 *     ▼
 *   in flight ───────────── wire.send (one request or publish; at shutdown aborted or ignored: not recorded, resent by the next owner)
 *     │ stream: the outcome is an Attempt ('sent' with its SendOutcome, or 'expired' without a request)
 *     ▼
 *   recorded ────────────── writer.add (its row) + writer.setHealth (failing_since; 'sent' failures only)
 *     │ progress writer: one transaction for every record, health change and cursor queued meanwhile
 *     ▼
 *   committed ───────────── record.committed: the slot's delivery id is free again; a retry time is
 *                           handed to the poller; the frontier (cursor) may pass the event
 *
 *   failed ─→ retry row (status failed, next_attempt_at) ─→ due (RetryPoller reads it, with its body)
 *     ─→ stream.addRetries ─→ in flight again (retry_index + 1) … past the schedule: dead.
 *
 * Beside that, per stream: probe mode (5 failures in a row, or 1 before the first 2xx): one send
 * at a time, spaced by probeDelayMs; suspect (no 2xx yet, or the last attempt failed): one send at
 * a time from the org's smaller suspect pool (slot-shares.ts). A commit that disables an endpoint
 * (410, or WEBHOOK_DISABLE_AFTER_HOURS) is told back to this engine through the writer's
 * ProgressPort: the engine stops the stream and syncs, which hands the lease back. Control never
 * flows through a diagnostics channel: those (channels.ts) are for metrics only.
 */
export class DeliveryEngine {
  private readonly streams = new Map<string, EndpointStream>();
  private readonly byOrg = new Map<string, Set<EndpointStream>>();
  private readonly shedding = new Set<string>();
  private readonly writer: ProgressWriter;
  private readonly ctx: StreamContext;
  private readonly readWanted = new ReadQueue<EndpointStream>();
  /** Streams that wanted to read while the process's body budget was full. */
  private readonly memoryWaiting = new Set<EndpointStream>();
  private readonly slots: SlotShares;
  /** Bytes of event bodies held by every stream, and the room reads under way may still fill. */
  private bodyBytes = 0;
  private reservedBytes = 0;
  private unwrittenBytes = 0;
  private reads = 0;
  private queuedSum = 0;
  private queuedAt = -Infinity;
  private syncing: Promise<void> | null = null;
  private syncAgain = false;
  private readonly retries: RetryPoller;
  private pollTimer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** No send signs with keys older than SIGNING_KEYS_VALID_MS: rotate-secret applies at once (API.md §5). */
  private readonly signingKeys: SigningKeys;

  constructor(
    private readonly sql: Sql,
    wires: Wires,
    private readonly leases: LeaseKeeper,
    private readonly options: EngineOptions,
  ) {
    // The writer commits what the streams queue; what its commits decide (an endpoint disabled)
    // comes back here, to the owner of the streams, not to the stream that queued it.
    this.writer = new ProgressWriter(
      sql,
      { disableAfterHours: options.disableAfterHours },
      {
        endpointsDisabled: (endpointIds) => {
          for (const id of endpointIds) this.streams.get(id)?.stop();
          void this.sync();
        },
      },
    );
    this.slots = new SlotShares(options.maxInFlight);
    // A send never starts on settings older than a change committed over a second before
    // (signing-keys.ts): a read that finds one loads them again.
    this.signingKeys = new SigningKeys(sql, () => void this.sync());
    this.retries = new RetryPoller(sql, () => this.streams.values(), {
      take: () => this.takeReadRoom(options.bufferBytes),
      give: (bytes) => {
        this.reservedBytes -= bytes;
      },
    });
    const progressBudget = Math.floor(options.bufferBytes / PROGRESS_SHARE);
    this.ctx = {
      wires,
      writer: this.writer,
      retryScheduleMs: options.retryScheduleMs,
      defaultMaxInFlight: options.defaultMaxInFlight,
      endpointBufferBytes: options.endpointBufferBytes,
      // Keys too old to sign with (a rotation may have committed): the stream waits for one read
      // of them and is pumped again (src/delivery/signing-keys.ts).
      acquireSlot: (stream, suspect) => this.signingKeys.ready(stream) && this.slots.tryAcquire(stream, suspect),
      releaseSlot: (stream, suspect) => this.slots.release(stream, suspect),
      bodyBytes: (delta) => {
        this.bodyBytes += delta;
        if (delta < 0 && this.memoryWaiting.size > 0) this.readWaitingForMemory();
      },
      recordQueued: (bytes) => {
        this.unwrittenBytes += bytes;
        if (this.unwrittenBytes > progressBudget) this.slots.pause();
      },
      recordWritten: (bytes) => {
        this.unwrittenBytes -= bytes;
        if (this.unwrittenBytes * 2 <= progressBudget) this.slots.resume();
      },
      wantsEvents: (stream) => this.requestRead(stream),
      retryAt: (ms) => this.retries.schedule(ms),
    };
  }

  get sending(): number {
    return this.slots.sending;
  }

  /** Bytes of event bodies held now (read ahead, in flight, retries). */
  get bufferedBytes(): number {
    return this.bodyBytes;
  }

  start(): void {
    this.signingKeys.start();
    // The backstop for a lost wake-up. Each tick reads at most POLL_STREAMS_PER_TICK streams, in
    // turn: with thousands of endpoints each is re-read every few ticks instead of costing
    // thousands of queries a second while wake-ups work. A stream that still has events to send
    // is skipped: it reads when they run low (if a wake-up came meanwhile) or at a later tick,
    // and a slow or hanging endpoint with a queue no longer costs a read per tick for nothing
    // (a thousand of them cost 500 queries a second and starved every other org's streams).
    //
    // And a stream whose last read already saw the current watermark is skipped: no event of
    // any org has become readable since, so it has nothing to find. One watermark query a tick
    // instead of a read (two statements) per idle stream: a thousand endpoints with no events
    // cost Postgres 0.2-0.3 of a core and the delivery process 0.1-0.16 (bench:hanging's baseline).
    let turn = 0;
    let polling = false;
    this.pollTimer = setInterval(() => {
      if (polling) return;
      polling = true;
      void readWatermark(this.sql)
        .then(
          (watermark) => {
            const now = BigInt(watermark);
            const streams = [...this.streams.values()];
            let examined = 0;
            let read = 0;
            while (examined < streams.length && read < POLL_STREAMS_PER_TICK) {
              const stream = streams[(turn + examined++) % streams.length]!;
              if (stream.queued > 0 || stream.seenWatermark >= now) continue;
              stream.dirty = true;
              this.requestRead(stream);
              read++;
            }
            turn = streams.length === 0 ? 0 : (turn + examined) % streams.length;
          },
          (error: unknown) => {
            if (!this.stopped) log.warn({ err: error }, 'reading the watermark for the delivery poll failed');
          },
        )
        .finally(() => {
          polling = false;
        });
    }, this.options.pollIntervalMs);
    this.retries.schedule(Date.now());
  }

  /** A flush committed events of these orgs (or of any org: '*'). */
  eventsCommitted(orgIds: readonly string[] | '*'): void {
    const wake = (stream: EndpointStream) => {
      stream.dirty = true;
      this.requestRead(stream);
    };
    if (orgIds === '*') {
      for (const stream of this.streams.values()) wake(stream);
      return;
    }
    for (const orgId of orgIds) {
      const streams = this.byOrg.get(orgId);
      if (streams) for (const stream of streams) wake(stream);
    }
  }

  /**
   * An org's endpoints were created, changed, deleted or recovered: look at leases and settings
   * now. `orgIds`: the orgs whose endpoints changed, when known (else any org's may have).
   */
  endpointsChanged(orgIds?: readonly string[]): void {
    // A recover may have opened deliveries: a keyed stream of those orgs reads its open keys again.
    const streams =
      orgIds === undefined ? this.streams.values() : orgIds.flatMap((orgId) => [...(this.byOrg.get(orgId) ?? [])]);
    for (const stream of streams) if (stream.byKey) stream.keysStale = true;
    void this.sync();
    this.retries.schedule(Date.now() + 50);
  }

  /**
   * Renews and claims leases, then brings the streams in line: new ones for new leases, settings
   * for the others, none for lost, disabled or deleted endpoints, and surplus handed back.
   */
  sync(): Promise<void> {
    if (this.syncing !== null) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      do {
        this.syncAgain = false;
        try {
          await this.syncOnce();
        } catch (error) {
          if (!this.stopped) log.error({ err: error }, 'syncing webhook endpoint leases failed');
        }
      } while (this.syncAgain && !this.stopped);
      this.syncing = null;
    })();
    return this.syncing;
  }

  private async syncOnce(): Promise<void> {
    if (this.stopped) return;
    const { held, share } = await this.leases.renewAndClaim();
    for (const [id, stream] of this.streams) {
      if (!held.has(id) && !this.shedding.has(id)) this.remove(stream); // another process holds it now
    }
    const settings = await loadEndpointSettings(this.sql, [...held], this.signingKeys);
    const release: string[] = [];
    for (const id of held) {
      if (this.shedding.has(id)) continue;
      const current = settings.get(id);
      const stream = this.streams.get(id);
      if (!current?.enabled) {
        if (stream) this.remove(stream);
        release.push(id);
      } else if (!stream) {
        await this.add(current);
      } else if (stream.deliverFromMs !== current.deliverFromMs) {
        // Re-enabled: it starts again from the present, from the cursor the PATCH set.
        this.remove(stream);
        await this.add(current);
      } else if (stream.stoppedForGood) {
        // Stopped by a 410 whose disabling is being written: the next sync sees it disabled.
      } else {
        stream.update(current);
        if (current.fifo && stream.idle && stream.waitingRetries === 0) {
          await this.writer.flushed();
          if (stream.idle) {
            stream.openRows = await countOpenDeliveries(this.sql, stream.orgId, stream.endpointId);
            stream.awaitingCount = false;
          }
          stream.pump();
        } else if (
          current.byKey &&
          (stream.awaitingCount || stream.keysStale) &&
          stream.idle &&
          stream.waitingRetries === 0
        ) {
          // Not awaited: a thousand keyed endpoints must not hold up the lease renewal.
          void this.reloadOpenKeys(stream);
        }
      }
    }
    await this.leases.release(release);
    const surplus = held.size - release.length - this.shedding.size - share;
    if (surplus > 0) {
      const candidates = [...this.streams.values()]
        .filter((stream) => !this.shedding.has(stream.endpointId))
        .sort((a, b) => a.inFlight + a.queued - (b.inFlight + b.queued));
      for (const stream of candidates.slice(0, surplus)) void this.shed(stream);
    }
  }

  private async add(settings: EndpointSettings): Promise<void> {
    const stream = new EndpointStream(settings, this.ctx);
    if (settings.fifo) stream.openRows = await countOpenDeliveries(this.sql, settings.orgId, settings.id);
    if (settings.byKey) stream.loadOpenKeys(await openKeyedDeliveries(this.sql, settings.orgId, settings.id));
    const [newest] = await this.sql`
      select id::text as id from webhook_deliveries where org_id = ${settings.orgId} and endpoint_id = ${settings.id}
      order by id desc limit 1`;
    stream.resumeUpTo = (newest?.id as string | null) ?? null;
    this.streams.set(settings.id, stream);
    let org = this.byOrg.get(settings.orgId);
    if (!org) {
      org = new Set();
      this.byOrg.set(settings.orgId, org);
    }
    org.add(stream);
    this.requestRead(stream);
    this.retries.schedule(Date.now());
  }

  /**
   * Ordering "key": the open keyed deliveries read again while nothing is in flight (a recover
   * may have opened rows, or ordering just switched to "key"). Used only if no send started
   * while they were read: a send started meanwhile may have changed what is held.
   */
  private async reloadOpenKeys(stream: EndpointStream): Promise<void> {
    if (stream.reloadingKeys) return;
    stream.reloadingKeys = true;
    stream.keysStale = false;
    let loaded = false;
    try {
      await this.writer.flushed();
      if (!stream.idle) return;
      const started = stream.sendsStarted;
      const open = await openKeyedDeliveries(this.sql, stream.orgId, stream.endpointId);
      if (stream.idle && stream.sendsStarted === started && this.streams.get(stream.endpointId) === stream) {
        stream.loadOpenKeys(open);
        loaded = true;
      }
    } catch (error) {
      if (!this.stopped)
        log.warn(
          { err: error, endpoint: stream.endpointId },
          'reading the open keyed deliveries of an endpoint failed',
        );
    } finally {
      stream.reloadingKeys = false;
      // Not loaded (it was busy, or the read failed): tried again at a later sync.
      if (!loaded) stream.keysStale = true;
    }
  }

  private remove(stream: EndpointStream): void {
    stream.stop();
    stream.releaseWire();
    if (this.streams.get(stream.endpointId) === stream) this.streams.delete(stream.endpointId);
    const org = this.byOrg.get(stream.orgId);
    org?.delete(stream);
    if (org?.size === 0) this.byOrg.delete(stream.orgId);
    this.readWanted.delete(stream);
    this.memoryWaiting.delete(stream);
    this.slots.forget(stream);
  }

  /** Hands a lease back once its sends have finished and its cursor is written: no double send. */
  private async shed(stream: EndpointStream): Promise<void> {
    this.shedding.add(stream.endpointId);
    stream.stop();
    try {
      while (!stream.idle) await new Promise((resolve) => setTimeout(resolve, 20));
      this.writer.cursorMoved(stream);
      await this.writer.flushed();
      this.remove(stream);
      await this.leases.release([stream.endpointId]);
    } catch (error) {
      log.warn({ err: error }, 'handing back a webhook endpoint lease failed; it expires instead');
    } finally {
      this.shedding.delete(stream.endpointId);
    }
  }

  private requestRead(stream: EndpointStream): void {
    if (this.stopped || !stream.dirty || stream.reading || !stream.wantsEvents()) return;
    if (this.streams.get(stream.endpointId) !== stream) return;
    if (this.streams.size > 1 && this.queuedEvents() >= MAX_QUEUED_EVENTS) return;
    if (this.bodyBytes + this.reservedBytes >= this.options.bufferBytes) {
      this.memoryWaiting.add(stream);
      return;
    }
    this.readWanted.add(stream);
    this.startReads();
  }

  /** Starts queued reads, org by org in turn, while fewer than READ_CONCURRENCY run. */
  private startReads(): void {
    while (this.reads < READ_CONCURRENCY && this.readWanted.size > 0) {
      const next = this.readWanted.take()!;
      // Checked again: it may have read, stopped or filled up since it asked.
      if (
        this.stopped ||
        !next.dirty ||
        next.reading ||
        !next.wantsEvents() ||
        this.streams.get(next.endpointId) !== next
      )
        continue;
      void this.read(next);
    }
  }

  /**
   * Bytes a read may fill: the process's room (taken now, so reads under way at once share it, and
   * given back when the read has handed its events over), at least 1 so the first event always
   * comes: an event over the room goes over the budget by at most one payload (256 KiB) a read.
   */
  private takeReadRoom(limit: number): number {
    const room = Math.max(1, Math.min(limit, this.options.bufferBytes - this.bodyBytes - this.reservedBytes));
    this.reservedBytes += room;
    return room;
  }

  /** Bodies were freed: streams that found the budget full read now, a few at a time. */
  private readWaitingForMemory(): void {
    for (const stream of this.memoryWaiting) {
      // Checked each time: a read that starts takes room, and a stream refused again is put back.
      if (this.reads >= READ_CONCURRENCY || this.bodyBytes + this.reservedBytes >= this.options.bufferBytes) return;
      this.memoryWaiting.delete(stream);
      this.requestRead(stream);
    }
  }

  /** Summed at most every 10 ms: it is asked on every read request, and there may be many streams. */
  private queuedEvents(): number {
    const now = performance.now();
    if (now - this.queuedAt >= 10) {
      this.queuedAt = now;
      this.queuedSum = 0;
      for (const stream of this.streams.values()) this.queuedSum += stream.queued;
    }
    return this.queuedSum;
  }

  private async read(stream: EndpointStream): Promise<void> {
    stream.reading = true;
    stream.dirty = false; // a wake-up while this read runs sets it again
    this.reads++;
    const room = this.takeReadRoom(this.options.endpointBufferBytes - stream.bufferedBytes);
    try {
      const result = await readEventsAfter(
        this.sql,
        stream.orgId,
        stream.readPos,
        stream.deliverFromMs,
        READ_BATCH,
        room,
        stream.filter,
      );
      let settled: Set<string> | undefined;
      if (stream.resumeUpTo !== null) {
        settled = await existingDeliveries(
          this.sql,
          stream.orgId,
          stream.endpointId,
          stream.deliveriesToCheck(result.events, stream.resumeUpTo),
        );
        if (!result.more) stream.resumeUpTo = null;
      }
      if (this.streams.get(stream.endpointId) !== stream) return;
      stream.seenWatermark = BigInt(result.watermark);
      stream.addEvents(result, settled);
      // The flush that woke us committed before this read began, so it saw those events.
      if (result.more) stream.dirty = true;
    } catch (error) {
      if (!this.stopped)
        log.error({ err: error, endpoint: stream.endpointId }, 'reading events for a webhook endpoint failed');
      setTimeout(() => {
        stream.dirty = true;
        this.requestRead(stream);
      }, READ_ERROR_BACKOFF_MS).unref();
    } finally {
      this.reservedBytes -= room;
      stream.reading = false;
      this.reads--;
      this.requestRead(stream);
      this.startReads();
    }
  }

  /**
   * Shutdown: no new sends; wait up to `graceMs` for those in flight, cut the rest short (they
   * are not recorded, so the next holder sends them), write progress, hand every lease back.
   */
  async stop(graceMs: number): Promise<void> {
    this.stopped = true;
    this.signingKeys.stop();
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.retries.stop();
    for (const stream of this.streams.values()) stream.stop();
    const deadline = Date.now() + graceMs;
    while (this.slots.sending > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
    for (const stream of this.streams.values()) stream.abortInFlight();
    for (const stream of this.streams.values()) this.writer.cursorMoved(stream);
    await Promise.race([this.writer.flushed(), new Promise((resolve) => setTimeout(resolve, 1_000).unref())]);
    await this.syncing?.catch(() => {});
    for (const stream of this.streams.values()) stream.releaseWire();
    await this.leases.releaseAll();
  }
}

async function existingDeliveries(sql: Sql, orgId: string, endpointId: string, ids: string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = await sql`
    select id::text from webhook_deliveries
    where org_id = ${orgId} and endpoint_id = ${endpointId} and id = any(${ids}::uuid[])`;
  return new Set(rows.map((row) => row.id as string));
}
