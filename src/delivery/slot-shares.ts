/**
 * The delivery process's send slots (DELIVERY_MAX_IN_FLIGHT) shared between orgs.
 *
 * A send holds its slot until it ends, which for a receiver that hangs is WEBHOOK_TIMEOUT_MS:
 * slots cannot be taken back early (aborting a send that may have arrived would send it twice).
 * With one process-wide cap and first come, first served, an org with many hanging endpoints took
 * every slot and another org's healthy endpoint waited for its timeouts. So:
 *
 * - Each org with work (a send in flight or a stream waiting for a slot) may hold at most
 *   `capacity / (orgs with work + 1)` slots, and at least MIN_ORG_SLOTS. The `+ 1` is a share kept
 *   free for the next org to get work: since a taken slot cannot be reclaimed, a newcomer must
 *   find its share free the moment it arrives, not after someone's timeout. One org alone may use
 *   half the process (512 of the default 1 024), two a third each, and so on; the idle share is
 *   the price of never preempting a send.
 * - An org at its share waits for its own sends to end; a slot its send frees goes first to orgs
 *   below their share that found the process full, in turn, then back to the org itself.
 * - When an org runs out of work the shares grow, and orgs that were held at the smaller share
 *   get the room at once.
 *
 * We chose this over per-org fixed caps with work-conserving borrowing: borrowing is only safe
 * when the lender can take the slot back, and a slot held by a hanging receiver cannot be. The
 * cost is bounded and small where it matters: a nearby receiver needs about 30 sends in flight
 * for 10 000 deliveries/s at 3 ms, an endpoint's own ceiling is WEBHOOK_ENDPOINT_CONCURRENCY (256),
 * and an operator with one org of many slow but healthy endpoints raises DELIVERY_MAX_IN_FLIGHT.
 * With more orgs sending at once than `capacity / MIN_ORG_SLOTS`, the minimums add up to more than
 * the process has, and a newcomer waits for a slot to free up (served before any org over its
 * share).
 *
 * - **Suspect sends** (to an endpoint that has not answered a 2xx since its stream started, or
 *   whose last attempt failed) may fill only an eighth of an org's share. Slots cannot be taken
 *   back, so a hanging receiver costs its slot for WEBHOOK_TIMEOUT_MS and then a timeout: an
 *   abort, a closed socket, a new connection and a failure record (1-2 ms of the process's CPU).
 *   An org whose thousand endpoints hang filled its whole share with them, and their timeouts (a
 *   share of 341 slots at a 2 s timeout: 170 a second) took 0.35-0.45 of the delivery process's
 *   core from every other org (bench:webhooks, noisy). An eighth bounds that to an eighth, and
 *   costs a healthy endpoint one round trip when its stream starts (an org alone has 64 suspect
 *   slots: a thousand new endpoints 200 ms away all get their first answer within 4 s).
 *
 * Sends may also be paused as a whole (the progress writer is behind: see DeliveryEngine).
 */

/** A stream asking for slots; `pump` is called when it may try again. */
export interface SlotUser {
  readonly orgId: string;
  pump(): void;
}

const MIN_ORG_SLOTS = 1;
/** Suspect sends may hold this fraction of an org's share (at least one slot). */
const SUSPECT_SHARE = 1 / 8;

class OrgSlots {
  inFlight = 0;
  /** Of inFlight, the suspect sends. */
  suspectInFlight = 0;
  /** Streams of this org that asked for a slot and were refused, oldest first. */
  readonly waiting = new Set<SlotUser>();
  /** Streams refused a suspect slot (apart, so waking the others never spins on them). */
  readonly waitingSuspect = new Set<SlotUser>();

  get idle(): boolean {
    return this.inFlight === 0 && this.waiting.size === 0 && this.waitingSuspect.size === 0;
  }
}

export class SlotShares {
  private readonly orgs = new Map<string, OrgSlots>();
  /** Orgs below their share that found the process full (or paused), in turn. */
  private readonly starved = new Set<OrgSlots>();
  private inFlight = 0;
  private paused = false;

  constructor(private readonly capacity: number) {}

  get sending(): number {
    return this.inFlight;
  }

  /** Slots each org with work may hold now. */
  get share(): number {
    return Math.max(MIN_ORG_SLOTS, Math.floor(this.capacity / (this.orgs.size + 1)));
  }

  /** Suspect sends each org with work may hold now. */
  get suspectShare(): number {
    return Math.max(1, Math.floor(this.share * SUSPECT_SHARE));
  }

  /** Orgs with a send in flight or a stream waiting. */
  get orgsWithWork(): number {
    return this.orgs.size;
  }

  /**
   * A slot for one send of `user`, or false: then `user.pump()` is called when it may try again.
   * `suspect`: the send goes to an endpoint not known to answer (see above); pass the same to `release`.
   */
  tryAcquire(user: SlotUser, suspect = false): boolean {
    let org = this.orgs.get(user.orgId);
    if (org === undefined) this.orgs.set(user.orgId, (org = new OrgSlots()));
    const waiting = suspect ? org.waitingSuspect : org.waiting;
    if (org.inFlight >= this.share || (suspect && org.suspectInFlight >= this.suspectShare)) {
      waiting.add(user);
      return false;
    }
    if (this.paused || this.inFlight >= this.capacity) {
      waiting.add(user);
      this.starved.add(org);
      return false;
    }
    org.inFlight++;
    if (suspect) org.suspectInFlight++;
    this.inFlight++;
    return true;
  }

  release(user: SlotUser, suspect = false): void {
    const org = this.orgs.get(user.orgId)!;
    org.inFlight--;
    if (suspect) org.suspectInFlight--;
    this.inFlight--;
    if (org.idle) {
      this.orgs.delete(user.orgId);
      this.starved.delete(org);
      this.wakeAll(); // the shares grew
      return;
    }
    this.wakeStarved();
    this.wake(org);
  }

  /** The stream is gone: it waits for nothing any more. */
  forget(user: SlotUser): void {
    const org = this.orgs.get(user.orgId);
    if (org === undefined) return;
    org.waiting.delete(user);
    org.waitingSuspect.delete(user);
    if (org.idle) {
      this.orgs.delete(user.orgId);
      this.starved.delete(org);
      this.wakeAll();
    }
  }

  /** No new sends until `resume`; sends in flight carry on. */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    this.wakeAll();
  }

  private get free(): boolean {
    return !this.paused && this.inFlight < this.capacity;
  }

  /** Starved orgs first, in turn: each is taken out, and put back at the end if it blocks on the process again. */
  private wakeStarved(): void {
    while (this.free && this.starved.size > 0) {
      const [org] = this.starved;
      this.starved.delete(org!);
      this.wake(org!);
    }
  }

  /**
   * Streams of `org`, oldest first, while it is below its share and the process has room: the
   * suspect ones while suspect sends are below theirs, then the others. A stream refused again is
   * back in one of the two sets (a suspect one in `waitingSuspect`, which only the first loop
   * takes from, and only while a suspect send can start), so neither loop spins.
   */
  private wake(org: OrgSlots): void {
    while (
      this.free &&
      org.waitingSuspect.size > 0 &&
      org.inFlight < this.share &&
      org.suspectInFlight < this.suspectShare
    ) {
      const [user] = org.waitingSuspect;
      org.waitingSuspect.delete(user!);
      user!.pump();
    }
    while (this.free && org.waiting.size > 0 && org.inFlight < this.share) {
      const [user] = org.waiting;
      org.waiting.delete(user!);
      user!.pump(); // takes what it can; if refused again it is back in `waiting`
    }
    // Still below its share but the process is full: it is owed the next free slot.
    if (!this.free && this.wantsMore(org)) this.starved.add(org);
  }

  private wantsMore(org: OrgSlots): boolean {
    if (org.inFlight >= this.share) return false;
    return org.waiting.size > 0 || (org.waitingSuspect.size > 0 && org.suspectInFlight < this.suspectShare);
  }

  private wakeAll(): void {
    this.wakeStarved();
    for (const org of [...this.orgs.values()]) {
      if (!this.free) return;
      if (org.waiting.size > 0 || org.waitingSuspect.size > 0) this.wake(org);
    }
  }
}
