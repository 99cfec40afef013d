import type { OpenKeyedDelivery } from './endpoint-settings.js';

/** What KeyHolds needs of a stream's slot: the event's key, and whether the slot holds it now. */
export interface KeyedSlot {
  orderingKey: string | null;
  /** This slot counts in its key's holders: it is ready to send, in flight, or its first attempt is being decided. */
  holdsKey: boolean;
}

type Outcome = 'succeeded' | 'failed' | 'dead';

/**
 * Per-key order for one endpoint stream (ordering "key", API.md §5): at most one event of a key
 * is in flight, and a key whose delivery failed (its retry row is open) holds its later events
 * until that retry succeeds or dies. Events without a key are never held.
 *
 * A key is held while it has holders: a slot ready or in flight, or an open retry row. Its later
 * slots are parked here, in inbox order; when the last holder ends, the first parked slot becomes
 * ready (and holds the key in turn). The stream's cursor stays before every parked slot (it is
 * not done), so after a crash or a handover they are read again; the open rows, loaded again by
 * the new owner (openKeyedDeliveries), hold their keys as before.
 *
 * Memory: a key has entries only while it has holders or parked slots, so a million distinct keys
 * that each deliver at once leave nothing behind.
 */
export class KeyHolds<T extends KeyedSlot> {
  /** Holders per key; a key without holders has no entry. */
  private readonly holders = new Map<string, number>();
  /** Slots waiting for their key, per key, in inbox order; an empty list is deleted. */
  private readonly parked = new Map<string, T[]>();
  /** Open retry rows of keyed events: delivery id → key. */
  private readonly openRows = new Map<string, string>();
  /** Slots whose key was released to them (or no longer held): sent before any newer slot. */
  private readonly readyQueue: T[] = [];
  private parkedSlots = 0;
  /** False once the endpoint's ordering is no longer "key": nothing is parked any more. */
  private holding = true;

  get parkedCount(): number {
    return this.parkedSlots;
  }

  get readyCount(): number {
    return this.readyQueue.length;
  }

  /** Keys with an entry (for tests: entries live only while a key is held). */
  get heldKeys(): number {
    return this.holders.size;
  }

  /** A new slot reached the front of the stream: parked (true) when its key is held, else left to be sent. */
  parkIfHeld(slot: T): boolean {
    const key = slot.orderingKey;
    if (key === null || !this.holding || !this.holders.has(key)) return false;
    const list = this.parked.get(key);
    if (list) list.push(slot);
    else this.parked.set(key, [slot]);
    this.parkedSlots++;
    return true;
  }

  /** The slot is about to be sent: it holds its key until its first attempt ends. */
  admit(slot: T): void {
    if (slot.orderingKey !== null && this.holding) this.hold(slot);
  }

  /** The oldest ready slot (its key is already held for it), or undefined. */
  takeReady(): T | undefined {
    return this.readyQueue.shift();
  }

  /** A slot's first attempt ended (or was not made): its hold ends, or passes to its retry row. */
  firstAttemptEnded(deliveryId: string, slot: T, outcome: Outcome | 'none'): void {
    if (!slot.holdsKey) return;
    slot.holdsKey = false;
    const key = slot.orderingKey!;
    if (outcome === 'failed') {
      // The retry row holds the key now: the count stays.
      this.openRows.set(deliveryId, key);
      return;
    }
    this.release(key);
  }

  /** A retry (or a recovered delivery) ended: a success or a death frees its key. */
  retryEnded(deliveryId: string, outcome: Outcome): void {
    if (outcome === 'failed' || this.openRows.size === 0) return;
    const key = this.openRows.get(deliveryId);
    if (key === undefined) return;
    this.openRows.delete(deliveryId);
    this.release(key);
  }

  /**
   * The endpoint's open keyed deliveries as read from the database, with nothing in flight: they
   * replace the open rows known here (a restart, a handover, a recover, or ordering switched to
   * "key"). Ready slots keep their holds; keys no longer held release their parked slots.
   */
  reset(open: readonly OpenKeyedDelivery[]): void {
    this.holding = true;
    this.openRows.clear();
    this.holders.clear();
    for (const row of open) {
      this.openRows.set(row.deliveryId, row.key);
      this.holders.set(row.key, (this.holders.get(row.key) ?? 0) + 1);
    }
    for (const slot of this.readyQueue)
      this.holders.set(slot.orderingKey!, (this.holders.get(slot.orderingKey!) ?? 0) + 1);
    for (const key of [...this.parked.keys()]) if (!this.holders.has(key)) this.unpark(key);
  }

  /** Ordering is no longer "key": every parked slot is ready, and nothing is held from now on. */
  stopHolding(): void {
    this.holding = false;
    for (const key of [...this.parked.keys()]) {
      const list = this.parked.get(key)!;
      this.parked.delete(key);
      this.parkedSlots -= list.length;
      this.readyQueue.push(...list);
    }
    this.openRows.clear();
  }

  /** The stream stops: every slot waiting here, to drop their bodies. */
  drain(): T[] {
    const slots = this.readyQueue.splice(0);
    for (const list of this.parked.values()) slots.push(...list);
    this.parked.clear();
    this.parkedSlots = 0;
    return slots;
  }

  private hold(slot: T): void {
    const key = slot.orderingKey!;
    slot.holdsKey = true;
    this.holders.set(key, (this.holders.get(key) ?? 0) + 1);
  }

  private release(key: string): void {
    const count = (this.holders.get(key) ?? 1) - 1;
    if (count > 0) {
      this.holders.set(key, count);
      return;
    }
    this.holders.delete(key);
    this.unpark(key);
  }

  /** The key has no holders: its oldest parked slot is ready and holds it. */
  private unpark(key: string): void {
    const list = this.parked.get(key);
    if (!list) return;
    const slot = list.shift()!;
    this.parkedSlots--;
    if (list.length === 0) this.parked.delete(key);
    if (this.holding) this.hold(slot);
    this.readyQueue.push(slot);
  }
}
