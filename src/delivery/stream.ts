import { AdaptiveLimit } from './adaptive-limit.js';
import { attemptJson, attemptOutcome, type Attempt } from './attempt.js';
import {
  attemptFinishedChannel,
  firstAttemptStartedChannel,
  type AttemptFinished,
  type FirstAttemptStarted,
} from './channels.js';
import { deliveryId } from './delivery-id.js';
import { unsignableReason } from './endpoint-keys.js';
import type { CompiledFilter } from '../filter/filter.js';
import type { EndpointSettings } from './endpoint-settings.js';
import type { OpenKeyedDelivery } from './endpoint-settings.js';
import type { ReadResult, StreamEvent, StreamPosition } from './event-reader.js';
import { KeyHolds } from './key-holds.js';
import { Pacer } from './pacer.js';
import type { CursorSource, ProgressWriter } from './progress-writer.js';
import { parseRetryAfter, probeDelayMs, retryDelayMs } from './retry.js';
import { signatureHeader } from './signature.js';
import { notSent, sameWire, type OutgoingMessage, type SendOutcome, type Wire, type Wires } from './transport.js';

export interface StreamContext {
  /** Opens the stream's wire: an HTTP target, or a broker connection (src/delivery/transport.ts). */
  wires: Wires;
  writer: ProgressWriter;
  retryScheduleMs: readonly number[];
  /** The adaptive window's ceiling when the endpoint sets no max_in_flight. */
  defaultMaxInFlight: number;
  /** Bytes of event bodies one stream holds (read ahead, in flight, retries) before it stops reading more. */
  endpointBufferBytes: number;
  /**
   * Takes one of the process's send slots; false when the process (or the org's share) is full:
   * then `pump` is called later. `suspect`: the endpoint is not known to answer (SlotShares).
   */
  acquireSlot(stream: EndpointStream, suspect: boolean): boolean;
  releaseSlot(stream: EndpointStream, suspect: boolean): void;
  /** The bodies this stream holds grew or shrank by `delta` bytes. */
  bodyBytes(delta: number): void;
  /** An attempt's record of `bytes` waits for the progress writer (`written`: it committed). */
  recordQueued(bytes: number): void;
  recordWritten(bytes: number): void;
  /** The stream's queue ran low: read more when there may be more. */
  wantsEvents(stream: EndpointStream): void;
  /** A failed delivery is due again at this time. */
  retryAt(ms: number): void;
}

/** A delivery with a row, due for another attempt: a retry, or one queued by recover. */
export interface RetryItem {
  deliveryId: string;
  eventId: string;
  eventType: string;
  eventReceivedAtMs: number;
  /** Failed attempts so far: the position in the retry schedule. */
  retryIndex: number;
  /** null when retention dropped the event meanwhile. */
  body: string | null;
}

/** An event to send; its body is dropped once its send has ended (a retry reads it again). */
interface Slot {
  seq: string;
  eventId: string;
  eventType: string;
  receivedAtMs: number;
  body: string | null;
  deliveryId: string;
  done: boolean;
  /** The event's ordering_key, kept only for an endpoint with ordering "key" (key-holds.ts). */
  orderingKey: string | null;
  holdsKey: boolean;
}

// Read more once fewer than this many events wait to be sent.
export const LOW_WATER = 256;
// After this many failures in a row the endpoint is probed: one attempt at a time (first attempts
// and retries alike), each 1 s after the previous one ended, then 2 s, 4 s … up to 30 s
// (probeDelayMs in retry.ts), until one succeeds. Events wait in the stream meanwhile, so a dead
// endpoint costs a request now and then, not a request per event as fast as it can refuse them,
// and a healthy endpoint next to it keeps the process to itself. An endpoint that has not
// answered a 2xx since its stream started is probed from its first failure: nothing says it ever
// will, and a thousand new endpoints that hang cost a timeout each, not five.
const PROBE_AFTER_FAILURES = 5;
const COMPACT_AT = 1024;
// Slots parked behind a held key (ordering "key") that a stream keeps before it stops reading:
// one key failing for hours with a steady stream of events would otherwise grow the slot list
// without end. Past it the endpoint's other keys wait too, until the key moves or parked slots
// are sent (their bodies also count in the endpoint's byte budget).
export const MAX_PARKED = 10_000;
// What the progress writer holds per record beside its attempt JSON (ids, times, status, closure).
const RECORD_OVERHEAD_BYTES = 400;

const sameSpot = (a: StreamPosition, b: StreamPosition) => a.seq === b.seq && a.id === b.id;

/**
 * One endpoint's deliveries, in the one process that holds its lease. Events come in seq
 * order from the reader; each matching one becomes a slot and is sent as soon as the endpoint's
 * window, rate limit and ordering allow. Sends finish in any order; the cursor persisted with the
 * progress writer is the last event before the first unfinished one (the frontier), so a crash
 * re-sends at most what was in flight, and nothing is skipped.
 *
 * Only attempts are written: a success is one row, a failure one row with its retry time.
 * Retries come back from the engine's due-row poll as RetryItems and share the window.
 */
export class EndpointStream implements CursorSource {
  readonly endpointId: string;
  readonly orgId: string;
  readPos: StreamPosition;
  /** Read again as soon as the queue has room: a wake-up, a poll, or a full last read. */
  dirty = true;
  /** The watermark of the stream's last read: it has seen every event of its org below it. */
  seenWatermark = -1n;
  reading = false;
  /**
   * The endpoint's highest delivery id when the stream started, or null when it had none. Read
   * events whose delivery id is not above it may already have a row (sent beyond the persisted
   * cursor before a crash or a handover, or by the fan-out before an upgrade): the engine looks
   * those up, and they are not sent again. Delivery ids grow with event time, so every other event
   * is new, and a new endpoint checks nothing.
   */
  resumeUpTo: string | null = null;
  inFlight = 0;
  /** Pending and failed rows of this endpoint; a fifo endpoint holds new events while any exist. */
  openRows = 0;
  /** Switched to fifo or key while running: no new events until the engine has counted (or loaded) the open rows. */
  awaitingCount = false;
  /** Sends started so far: the engine's load of open keys is used only if none started meanwhile. */
  sendsStarted = 0;
  /**
   * Ordering "key": the open deliveries may have changed behind the stream's back (a recover, or
   * any endpoint change: the engine is not told which), so its open keys are read again when idle.
   */
  keysStale = false;
  reloadingKeys = false;
  /**
   * Bytes (string length: payloads are JSON text, mostly one byte a character) of the event
   * bodies this stream holds: read ahead, in flight and waiting retries.
   */
  bufferedBytes = 0;

  private settings: EndpointSettings;
  private readonly limit: AdaptiveLimit;
  private pacer: Pacer | null;
  private pacerTimer: NodeJS.Timeout | null = null;
  private slots: Slot[] = [];
  /** slots[head] is the first not yet done, slots[next] the first not yet started. */
  private head = 0;
  private next = 0;
  private lastDone: StreamPosition;
  /** Ordering "key": collapse the done slots when this many have been started past the frontier (collapseDone). */
  private collapseAt = COMPACT_AT;
  private persistedPos: StreamPosition;
  private retries: RetryItem[] = [];
  private failuresInARow = 0;
  /** A send to this endpoint has succeeded since the stream started. */
  private answered = false;
  /** Probes that failed since the last success: the next probe waits longer (probeDelayMs). */
  private probesFailed = 0;
  private nextProbeAt = 0;
  /** Delivery ids being sent or whose result is not committed yet: never sent twice at once. */
  private readonly active = new Set<string>();
  private stopped = false;
  private aborted = false;
  /** Cuts each send in flight short (shutdown). */
  private readonly aborts = new Set<() => void>();
  private wire: Wire;
  /** Per-key holding, for ordering "key" (null otherwise, and the hot path never looks further). */
  private keys: KeyHolds<Slot> | null = null;

  constructor(
    settings: EndpointSettings,
    private readonly ctx: StreamContext,
  ) {
    this.settings = settings;
    this.endpointId = settings.id;
    this.orgId = settings.orgId;
    this.readPos = settings.cursor;
    this.lastDone = settings.cursor;
    this.persistedPos = settings.cursor;
    this.limit = new AdaptiveLimit(settings.maxInFlight ?? ctx.defaultMaxInFlight);
    this.pacer = settings.rateLimitPerSec ? new Pacer(settings.rateLimitPerSec) : null;
    this.wire = ctx.wires.open(settings);
    if (settings.byKey) this.keys = new KeyHolds<Slot>();
  }

  get deliverFromMs(): number {
    return this.settings.deliverFromMs;
  }

  /** The endpoint's payload filter, applied where its events are read (src/delivery/event-reader.ts). */
  get filter(): CompiledFilter | null {
    return this.settings.filter;
  }

  get fifo(): boolean {
    return this.settings.fifo;
  }

  get byKey(): boolean {
    return this.settings.byKey;
  }

  /** Slots parked behind a held key (ordering "key"). */
  get parked(): number {
    return this.keys?.parkedCount ?? 0;
  }

  /** Keys held now (ordering "key"): for tests of the memory bound. */
  get heldKeys(): number {
    return this.keys?.heldKeys ?? 0;
  }

  /**
   * The endpoint's open keyed deliveries, read with nothing in flight (engine.ts): they hold
   * their keys from now on, and keys no longer held let their parked events go.
   */
  loadOpenKeys(open: readonly OpenKeyedDelivery[]): void {
    if (!this.settings.byKey) return;
    if (this.keys === null) this.keys = new KeyHolds<Slot>();
    this.keys.reset(open);
    this.awaitingCount = false;
    this.pump();
  }

  /** Settings changed by PATCH or a rotation; the cursor and deliver_from are the engine's business. */
  update(settings: EndpointSettings): void {
    const old = this.settings;
    this.settings = settings;
    if (!sameWire(settings, old)) {
      // Sends in flight finish on the old wire; it is released after them.
      this.wire.retire();
      this.wire = this.ctx.wires.open(settings);
    }
    if (settings.fifo && !old.fifo) this.awaitingCount = true;
    if (settings.byKey && !old.byKey) this.awaitingCount = true;
    if (!settings.byKey && old.byKey) this.keys?.stopHolding();
    if (settings.maxInFlight !== old.maxInFlight)
      this.limit.setCap(settings.maxInFlight ?? this.ctx.defaultMaxInFlight);
    if (settings.rateLimitPerSec !== old.rateLimitPerSec)
      this.pacer = settings.rateLimitPerSec ? new Pacer(settings.rateLimitPerSec) : null;
    // Our own record of failing_since is fresher than the row until the writer has caught up.
    if (old.failingSinceMs !== null && settings.failingSinceMs === null)
      this.settings.failingSinceMs = old.failingSinceMs;
    this.pump();
  }

  /** Events waiting to be sent. */
  get queued(): number {
    return this.slots.length - this.next + (this.keys?.readyCount ?? 0);
  }

  /** Read more once fewer than LOW_WATER events, and less than half the endpoint's byte budget, wait here. */
  wantsEvents(): boolean {
    return (
      !this.stopped &&
      this.queued < LOW_WATER &&
      this.bufferedBytes * 2 <= this.ctx.endpointBufferBytes &&
      (this.keys === null || this.keys.parkedCount < MAX_PARKED)
    );
  }

  /**
   * Room for more retries: below the endpoint's byte budget, and, in probe mode, none waiting
   * (a probe sends one; those handed out beyond it would only be due rows the poll finds again).
   */
  wantsRetries(): boolean {
    if (this.probing && this.retries.length > 0) return false;
    return !this.stopped && this.bufferedBytes < this.ctx.endpointBufferBytes;
  }

  private get probing(): boolean {
    return this.failuresInARow >= (this.answered ? PROBE_AFTER_FAILURES : 1);
  }

  /**
   * Not known to answer: no 2xx since the stream started, or the last attempt failed. One send at
   * a time then, from the org's smaller pool of suspect slots (SlotShares): an endpoint that hangs
   * holds one slot until its timeout, not the eight of a fresh window, and a thousand of them hold
   * an eighth of their org's share. A healthy endpoint is suspect for its first round trip.
   */
  private get suspect(): boolean {
    return !this.answered || this.failuresInARow > 0;
  }

  get idle(): boolean {
    return this.inFlight === 0;
  }

  get stoppedForGood(): boolean {
    return this.stopped;
  }

  /** The delivery ids a read's owed events would get, those not above `upTo` (see resumeUpTo). */
  deliveriesToCheck(events: readonly StreamEvent[], upTo: string): string[] {
    const ids: string[] = [];
    for (const event of events) {
      if (!this.owed(event)) continue;
      const delivery = deliveryId(this.endpointId, event.id);
      if (delivery <= upTo) ids.push(delivery);
    }
    return ids;
  }

  /** The endpoint wants this event: its type matches, and it was received from deliver_from on. */
  private owed(event: StreamEvent): boolean {
    return (
      event.excluded === undefined &&
      event.receivedAtMs >= this.settings.deliverFromMs &&
      this.settings.matches(event.type)
    );
  }

  /** `settled`: deliveries that already have a row (resuming after a crash or a handover): not sent again. */
  addEvents(result: ReadResult, settled?: ReadonlySet<string>): void {
    if (this.stopped) return;
    let bytes = 0;
    for (const event of result.events) {
      this.readPos = { seq: event.seq, id: event.id };
      if (!this.owed(event)) continue;
      const delivery = deliveryId(this.endpointId, event.id);
      if (settled?.has(delivery)) continue;
      this.slots.push({
        seq: event.seq,
        eventId: event.id,
        eventType: event.type,
        receivedAtMs: event.receivedAtMs,
        body: event.body,
        deliveryId: delivery,
        done: false,
        orderingKey: this.keys === null ? null : (event.orderingKey ?? null),
        holdsKey: false,
      });
      bytes += event.body.length;
    }
    this.holdBytes(bytes);
    if (result.events.length > 0) this.ctx.writer.cursorMoved(this);
    this.pump();
  }

  /** Takes retries while below the endpoint's byte budget (at least one); the rest stay due for a later poll. */
  addRetries(items: RetryItem[]): void {
    if (this.stopped) return;
    let bytes = 0;
    for (const item of items) {
      if (this.active.has(item.deliveryId)) continue;
      if (bytes > 0 && this.bufferedBytes + bytes >= this.ctx.endpointBufferBytes) break;
      this.retries.push(item);
      bytes += item.body?.length ?? 0;
    }
    this.holdBytes(bytes);
    this.pump();
  }

  private holdBytes(delta: number): void {
    if (delta === 0) return;
    this.bufferedBytes += delta;
    this.ctx.bodyBytes(delta);
  }

  /** Delivery ids this stream is busy with, so the due-row poll does not hand them out again. */
  isBusyWith(id: string): boolean {
    return this.active.has(id) || this.retries.some((item) => item.deliveryId === id);
  }

  get waitingRetries(): number {
    return this.retries.length;
  }

  /** No new sends from now on; sends in flight finish and are recorded. What waited to be sent is dropped. */
  stop(): void {
    this.stopped = true;
    if (this.pacerTimer) clearTimeout(this.pacerTimer);
    this.pacerTimer = null;
    let bytes = 0;
    for (let i = this.next; i < this.slots.length; i++) {
      const slot = this.slots[i]!;
      bytes += slot.body?.length ?? 0;
      slot.body = null;
    }
    for (const item of this.retries.splice(0)) bytes += item.body?.length ?? 0;
    if (this.keys !== null) {
      for (const slot of this.keys.drain()) {
        bytes += slot.body?.length ?? 0;
        slot.body = null;
      }
    }
    this.holdBytes(-bytes);
  }

  /** The stream is gone (lease handed back, endpoint deleted, shutdown): its wire's connection goes once its sends settle. */
  releaseWire(): void {
    this.wire.retire();
  }

  /** Shutdown: cut sends in flight short; they are not recorded, so the next owner sends them. */
  abortInFlight(): void {
    this.stop();
    this.aborted = true;
    for (const abort of this.aborts) abort();
  }

  frontier(): StreamPosition | null {
    while (this.head < this.slots.length && this.slots[this.head]!.done) {
      const slot = this.slots[this.head]!;
      this.lastDone = { seq: slot.seq, id: slot.eventId };
      this.head++;
    }
    if (this.head >= COMPACT_AT) {
      this.slots = this.slots.slice(this.head);
      this.next -= this.head;
      this.head = 0;
    }
    if (this.keys !== null && this.next - this.head >= this.collapseAt) this.collapseDone();
    const position = this.head === this.slots.length ? this.readPos : this.lastDone;
    return sameSpot(position, this.persistedPos) ? null : position;
  }

  /**
   * Ordering "key": a key held for hours keeps the frontier at its first parked event while the
   * other keys deliver millions behind it, all done. Of each run of done slots before `next`
   * only the last is kept: the frontier, when it gets there, moves to the same position, and the
   * slots held stay those not done (parked, ready, in flight). Run when the started slots have
   * doubled since the last time, so it costs O(1) a slot.
   */
  private collapseDone(): void {
    const kept: Slot[] = [];
    for (let i = this.head; i < this.next; i++) {
      const slot = this.slots[i]!;
      if (slot.done && i + 1 < this.next && this.slots[i + 1]!.done) continue;
      kept.push(slot);
    }
    const started = kept.length;
    for (let i = this.next; i < this.slots.length; i++) kept.push(this.slots[i]!);
    this.slots = kept;
    this.head = 0;
    this.next = started;
    this.collapseAt = Math.max(COMPACT_AT, 2 * started);
  }

  /** Slots the stream keeps (not yet passed by the frontier): for tests of its memory bound. */
  get trackedSlots(): number {
    return this.slots.length - this.head;
  }

  persisted(position: StreamPosition): void {
    this.persistedPos = position;
  }

  /** Starts every send the window, the rate limit and the ordering allow now. */
  pump(): void {
    while (!this.stopped) {
      const suspect = this.suspect;
      const cap = this.settings.fifo || suspect ? 1 : this.limit.current;
      if (this.inFlight >= cap) break;
      const retry = this.retries.length > 0;
      if (!retry) {
        if (this.keys === null) {
          if (this.next >= this.slots.length || (this.settings.fifo && (this.openRows > 0 || this.awaitingCount)))
            break;
        } else if (!this.keyedSlotWaiting()) break;
      }
      const probing = this.probing;
      if (probing) {
        if (this.inFlight > 0) break;
        const wait = this.nextProbeAt - Date.now();
        if (wait > 0) {
          this.pacerTimer ??= setTimeout(() => {
            this.pacerTimer = null;
            this.pump();
          }, wait);
          break;
        }
      }
      if (!this.ctx.acquireSlot(this, suspect)) break;
      if (this.pacer) {
        const wait = this.pacer.tryStart(Date.now());
        if (wait > 0) {
          this.ctx.releaseSlot(this, suspect);
          this.pacerTimer ??= setTimeout(() => {
            this.pacerTimer = null;
            this.pump();
          }, wait);
          break;
        }
      }
      this.sendsStarted++;
      if (retry) this.startRetry(this.retries.shift()!, suspect);
      else if (this.keys === null) this.startSlot(this.slots[this.next++]!, suspect);
      else this.startSlot(this.takeKeyedSlot(), suspect);
    }
    if (this.wantsEvents()) this.ctx.wantsEvents(this);
  }

  /**
   * Ordering "key": true when a slot can be sent now, a ready one (its key released to it) or
   * the next new one whose key is free. New slots whose key is held are parked on the way.
   */
  private keyedSlotWaiting(): boolean {
    const keys = this.keys!;
    if (keys.readyCount > 0) return true;
    if (this.awaitingCount) return false;
    while (this.next < this.slots.length) {
      const slot = this.slots[this.next]!;
      // Parked or peeked, not admitted: holding the key is for the send (takeKeyedSlot), which
      // may yet wait for a process slot or the pacer.
      if (!this.keys!.parkIfHeld(slot)) return true;
      this.next++;
    }
    return false;
  }

  /** The slot keyedSlotWaiting found: a ready one first (older), else the next new one, now holding its key. */
  private takeKeyedSlot(): Slot {
    const ready = this.keys!.takeReady();
    if (ready !== undefined) return ready;
    const slot = this.slots[this.next++]!;
    this.keys!.admit(slot);
    return slot;
  }

  private startSlot(slot: Slot, suspect: boolean): void {
    if (this.active.has(slot.deliveryId)) {
      // Its row is being retried right now (after a crash the stream reads it again): that
      // attempt's record stands for this one.
      this.ctx.releaseSlot(this, suspect);
      slot.done = true;
      this.holdBytes(-slot.body!.length);
      slot.body = null;
      this.keys?.firstAttemptEnded(slot.deliveryId, slot, 'none');
      this.ctx.writer.cursorMoved(this);
      return;
    }
    this.send(slot.deliveryId, slot.eventId, slot.eventType, slot.receivedAtMs, slot.body!, 0, slot, suspect);
  }

  private startRetry(item: RetryItem, suspect: boolean): void {
    if (this.active.has(item.deliveryId)) {
      this.ctx.releaseSlot(this, suspect);
      this.holdBytes(-(item.body?.length ?? 0));
      return;
    }
    if (item.body === null) {
      this.ctx.releaseSlot(this, suspect);
      this.active.add(item.deliveryId);
      this.record(
        item.deliveryId,
        item.eventId,
        item.eventReceivedAtMs,
        item.retryIndex,
        null,
        Date.now(),
        { kind: 'expired' },
        'dead',
      );
      this.keys?.retryEnded(item.deliveryId, 'dead');
      return;
    }
    this.send(
      item.deliveryId,
      item.eventId,
      item.eventType,
      item.eventReceivedAtMs,
      item.body,
      item.retryIndex,
      null,
      suspect,
    );
  }

  private send(
    id: string,
    eventId: string,
    eventType: string,
    receivedAtMs: number,
    body: string,
    retryIndex: number,
    slot: Slot | null,
    suspect: boolean,
  ): void {
    this.inFlight++;
    this.active.add(id);
    const ticket = this.limit.started();
    const probe = this.probing;
    const attemptedAt = Date.now();
    if (slot !== null && firstAttemptStartedChannel.hasSubscribers)
      firstAttemptStartedChannel.publish({
        lagSeconds: (attemptedAt - receivedAtMs) / 1000,
      } satisfies FirstAttemptStarted);
    let abort: (() => void) | null = null;
    void this.transmit(eventId, eventType, body, attemptedAt, (cut) => {
      abort = cut;
      this.aborts.add(cut);
    }).then((outcome) => {
      if (abort !== null) this.aborts.delete(abort);
      this.inFlight--;
      // The body is not needed any more: a retry reads it again.
      if (slot !== null) slot.body = null;
      this.holdBytes(-body.length);
      this.ctx.releaseSlot(this, suspect);
      if (this.aborted) {
        // Shutting down: not an attempt to record. The slot stays unfinished, so the cursor stays
        // before it and the next owner sends it; a retry's row stays due. (Its key stays held:
        // nothing more is sent from this stream.)
        this.active.delete(id);
        return;
      }
      const ok = outcome.ok;
      this.limit.completed(ticket, ok ? 'ok' : 'failed', outcome.latencyMs);
      this.failuresInARow = ok ? 0 : this.failuresInARow + 1;
      if (ok) {
        this.answered = true;
        this.probesFailed = 0;
      } else if (this.probing) {
        // Counted from the end of this attempt: a probe that hangs until its timeout is followed
        // by a pause, not by the next probe at once.
        if (probe) this.probesFailed++;
        this.nextProbeAt = Date.now() + probeDelayMs(this.probesFailed);
      }
      let status: 'succeeded' | 'failed' | 'dead' = 'succeeded';
      let delayMs: number | null = null;
      if (!ok) {
        delayMs = retryDelayMs(this.ctx.retryScheduleMs, retryIndex, parseRetryAfter(outcome.retryAfter));
        status = delayMs === null ? 'dead' : 'failed';
      }
      if (slot !== null) slot.done = true;
      this.record(
        id,
        eventId,
        receivedAtMs,
        retryIndex,
        delayMs,
        attemptedAt,
        { kind: 'sent', outcome },
        status,
        slot !== null,
      );
      if (this.keys !== null) {
        if (slot !== null) this.keys.firstAttemptEnded(id, slot, status);
        else this.keys.retryEnded(id, status);
      }
      this.pump();
    });
  }

  /**
   * The endpoint's target, or one refused with the reason when its secret does not open (sealed
   * under a key not configured): a failed attempt, retried on the schedule, never an unsigned send.
   */
  /**
   * Signs the message and hands it to the wire. An endpoint whose secret could not be opened (a
   * SECRETS_KEY missing: src/delivery/endpoint-keys.ts) sends nothing: a failed attempt with the
   * reason, retried on the schedule, never a message signed with nothing.
   */
  private transmit(
    eventId: string,
    eventType: string,
    body: string,
    attemptedAt: number,
    onAbortable: (abort: () => void) => void,
  ): Promise<SendOutcome> {
    const keys = this.settings.keys;
    if (keys.length === 0) return Promise.resolve(notSent(unsignableReason(keys)));
    const timestamp = Math.floor(attemptedAt / 1000);
    const message: OutgoingMessage = {
      eventId,
      eventType,
      headers: {
        'webhook-id': eventId,
        'webhook-timestamp': String(timestamp),
        'webhook-signature': signatureHeader(keys, eventId, timestamp, body),
      },
      body,
    };
    return this.wire.send(message, onAbortable);
  }

  /**
   * Queues the attempt's row and the endpoint's health change in the progress writer. Runs in the
   * same tick as `slot.done = true` (see ProgressWriter on why that matters).
   */
  private record(
    id: string,
    eventId: string,
    receivedAtMs: number,
    retryIndex: number,
    delayMs: number | null,
    attemptedAt: number,
    result: Attempt,
    status: 'succeeded' | 'failed' | 'dead',
    firstAttempt = false,
  ): void {
    const nextAttemptAtMs = delayMs === null ? null : attemptedAt + delayMs;
    const outcome = attemptOutcome(result);
    if (attemptFinishedChannel.hasSubscribers)
      attemptFinishedChannel.publish({ outcome: status, seconds: outcome.latencyMs / 1000 } satisfies AttemptFinished);
    if (status === 'succeeded') {
      if (this.settings.failingSinceMs !== null) {
        this.settings.failingSinceMs = null;
        this.ctx.writer.setHealth({ orgId: this.orgId, endpointId: this.endpointId, failure: null });
      }
    } else if (result.kind === 'sent') {
      // A failed send: the endpoint's fault as far as we know (an expired event is nobody's).
      this.settings.failingSinceMs ??= attemptedAt;
      this.ctx.writer.setHealth({
        orgId: this.orgId,
        endpointId: this.endpointId,
        failure: { atMs: attemptedAt, status: outcome.status },
      });
      // 410 Gone: nothing more goes out from this moment, not even what is already queued.
      if (outcome.status === 410) this.stop();
    }
    if (firstAttempt) {
      if (status === 'failed') this.openRows++;
    } else if (status !== 'failed') {
      this.openRows = Math.max(0, this.openRows - 1);
    }
    const attempt = attemptJson(attemptedAt, outcome, nextAttemptAtMs);
    const recordBytes = attempt.length + RECORD_OVERHEAD_BYTES;
    this.ctx.recordQueued(recordBytes);
    this.ctx.writer.add({
      orgId: this.orgId,
      endpointId: this.endpointId,
      deliveryId: id,
      eventId,
      eventReceivedAtMs: receivedAtMs,
      status,
      retryIndex: status === 'failed' || status === 'dead' ? retryIndex + 1 : retryIndex,
      nextAttemptAtMs,
      attempt,
      attemptedAtMs: attemptedAt,
      latencyMs: outcome.latencyMs,
      firstAttempt,
      committed: () => {
        this.ctx.recordWritten(recordBytes);
        this.active.delete(id);
        if (nextAttemptAtMs !== null) this.ctx.retryAt(nextAttemptAtMs);
      },
    });
    this.ctx.writer.cursorMoved(this);
  }
}
