import type { Sql } from '../db/connect.js';
import { log } from '../log.js';
import { fillEndpointKeys, type EndpointKeys } from './endpoint-keys.js';

/**
 * How old, at most, the keys a delivery process signs with may be: it signs only with keys read
 * by a query sent less than this long before (measured on its own monotonic clock). A rotation
 * answers only this long after its commit (src/webhooks/service.ts), so every delivery that
 * starts after the answer signs with keys read after the commit: the new secret is always there.
 * The same bound makes a delete or a disable stop every send within this long of its commit, and
 * any other change (a PATCH of the URL, event types or controls) apply to every send that starts
 * this long after its commit: a read that finds the row's updated_at other than the one the
 * stream's settings were loaded with holds the stream's sends until the engine has loaded them
 * again (`onStale`). The NOTIFY of every change usually gets there first; this bound holds while
 * the delivery process's LISTEN connection is down, when only the 2 s heartbeat would.
 */
export const SIGNING_KEYS_VALID_MS = 1_000;
// Keys of endpoints that signed lately are re-read this often, ahead of need, so a busy stream
// never waits for them: it has SIGNING_KEYS_VALID_MS - REFRESH_MS for the query to come back.
const REFRESH_MS = 250;
// "Lately": an endpoint idle for longer has its keys read again only when it next sends, which
// then waits for one query (about a millisecond).
const ACTIVE_MS = 5_000;
const WARN_EVERY_MS = 30_000;

/** What waits for fresh keys: an endpoint stream, pumped again once they are there. */
export interface KeyUser {
  readonly endpointId: string;
  readonly orgId: string;
  pump(): void;
}

interface Entry {
  orgId: string;
  /**
   * The HMAC keys, newest first. One array per endpoint in the process, shared by every
   * EndpointSettings of it and updated in place: a stream signs with `settings.keys`, so even
   * settings loaded before a rotation and applied after it (a slow sync) sign with the keys of
   * the newest read. Entries are therefore never dropped while the endpoint exists.
   */
  keys: EndpointKeys;
  secret: string | null;
  previousSecret: string | null;
  /** performance.now() when the query behind `keys` was sent; -Infinity before any. */
  readAt: number;
  /** The row existed and was enabled at that read. */
  usable: boolean;
  /** The row was gone at that read: deleted, and an id never comes back. */
  gone: boolean;
  usedAt: number;
  waiting: Set<KeyUser>;
  /** updated_at (ms) as of the latest read of any kind. */
  seenVersion: number;
  /** updated_at (ms) of the latest settings load (loadEndpointSettings), and when it was sent. */
  loadedVersion: number;
  loadedAt: number;
  /** readAt of the read whose change `onStale` was last told of: each change asks for one reload, not one per send. */
  reloadAskedFor: number;
}

export interface KeyRow {
  id: string;
  org_id: string;
  enabled: boolean;
  secret: string;
  previous_secret: string | null;
  /** The row's updated_at in ms: every API change (PATCH, rotate, disable) sets it. */
  updated_at_ms: number;
}

/**
 * The signing keys of the endpoints a delivery process streams, with how fresh they are. The
 * engine asks `ready` before each send (a Map look-up and a clock read); a stream whose keys are
 * too old waits while one query, shared by every waiting stream, reads them again.
 */
export class SigningKeys {
  private readonly entries = new Map<string, Entry>();
  private timer: NodeJS.Timeout | null = null;
  private reading = false;
  private readAgain = false;
  private stopped = false;
  private warnedAt = -Infinity;

  /** `onStale`: a read found an endpoint changed since its settings were loaded: load them again. */
  constructor(
    private readonly sql: Sql,
    private readonly onStale: () => void = () => {},
    private readonly validMs = SIGNING_KEYS_VALID_MS,
    private readonly refreshMs = REFRESH_MS,
  ) {}

  start(): void {
    this.timer = setInterval(() => this.refresh(), this.refreshMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /**
   * A row read by a settings load sent at `sentAt` (performance.now()): returns the endpoint's
   * shared keys array, brought up to that read unless a later-sent one was applied already.
   */
  observe(row: KeyRow, sentAt: number): EndpointKeys {
    const entry = this.entry(row.id, row.org_id);
    this.apply(entry, row, sentAt);
    if (sentAt > entry.loadedAt) {
      entry.loadedAt = sentAt;
      entry.loadedVersion = row.updated_at_ms;
    }
    return entry.keys;
  }

  /** May `user` sign now? If not, it is pumped again once its keys have been read afresh. */
  ready(user: KeyUser): boolean {
    const now = performance.now();
    const entry = this.entry(user.endpointId, user.orgId);
    entry.usedAt = now;
    if (now - entry.readAt < this.validMs) {
      // Changed since the stream's settings were loaded (compared for equality: updated_at is
      // a transaction's start, so a later commit may carry an earlier time): the engine loads
      // them again and updates the stream, which pumps it.
      if (entry.readAt > entry.loadedAt && entry.seenVersion !== entry.loadedVersion) {
        if (entry.reloadAskedFor !== entry.readAt) {
          entry.reloadAskedFor = entry.readAt;
          this.onStale();
        }
        return false;
      }
      // Disabled or deleted as of a fresh read: nothing to sign. The engine's sync removes the
      // stream, or updates (and so pumps) it when it is enabled again.
      if (entry.usable) return true;
      if (entry.readAt > -Infinity) return false;
    }
    entry.waiting.add(user);
    this.refresh();
    return false;
  }

  private entry(id: string, orgId: string): Entry {
    let entry = this.entries.get(id);
    if (!entry) {
      entry = {
        orgId,
        keys: [],
        secret: null,
        previousSecret: null,
        readAt: -Infinity,
        usable: false,
        gone: false,
        usedAt: -Infinity,
        waiting: new Set(),
        seenVersion: NaN,
        loadedVersion: NaN,
        loadedAt: -Infinity,
        reloadAskedFor: -Infinity,
      };
      this.entries.set(id, entry);
    }
    return entry;
  }

  private apply(entry: Entry, row: KeyRow | null, sentAt: number): void {
    // A query sent later saw every commit an earlier one saw: keep the later one's answer.
    if (sentAt <= entry.readAt) return;
    entry.readAt = sentAt;
    entry.usable = row?.enabled === true;
    entry.gone = row === null;
    if (row !== null) entry.seenVersion = row.updated_at_ms;
    if (row === null || (row.secret === entry.secret && row.previous_secret === entry.previousSecret)) return;
    entry.secret = row.secret;
    entry.previousSecret = row.previous_secret;
    // Stored sealed (or clear, before SECRETS_KEY): opened once per change, not per send.
    fillEndpointKeys(entry.keys, row);
  }

  /** Reads the keys of waiting and lately active endpoints; one query at a time, again if asked meanwhile. */
  private refresh(): void {
    if (this.stopped) return;
    if (this.reading) {
      this.readAgain = true;
      return;
    }
    const now = performance.now();
    const ids: string[] = [];
    const orgs = new Set<string>();
    for (const [id, entry] of this.entries) {
      if (entry.waiting.size > 0 || (entry.usable && now - entry.usedAt < ACTIVE_MS)) {
        ids.push(id);
        orgs.add(entry.orgId);
      }
      // A deleted endpoint's entry goes once nothing asks for it: its id never comes back, so
      // a stream still holding its old array would find a new, unusable entry.
      else if (entry.gone && now - entry.usedAt > ACTIVE_MS) this.entries.delete(id);
    }
    if (ids.length === 0) return;
    this.reading = true;
    void this.read(ids, [...orgs]).finally(() => {
      this.reading = false;
      if (this.readAgain) {
        this.readAgain = false;
        this.refresh();
      }
    });
  }

  private async read(ids: string[], orgs: string[]): Promise<void> {
    const sentAt = performance.now();
    let rows: KeyRow[];
    try {
      rows = await this.sql<KeyRow[]>`
        select id, org_id, enabled, secret, case when previous_secret_expires_at > now() then previous_secret end as previous_secret,
          (extract(epoch from updated_at) * 1000)::float8 as updated_at_ms
        from webhook_endpoints where org_id = any(${orgs}::uuid[]) and id = any(${ids}::uuid[])`;
    } catch (error) {
      // Waiting streams stay waiting: the timer tries again. Nothing is signed with old keys.
      if (!this.stopped && performance.now() - this.warnedAt > WARN_EVERY_MS) {
        this.warnedAt = performance.now();
        log.warn({ err: error }, 'could not read webhook signing keys; sends wait until they can be read');
      }
      return;
    }
    const byId = new Map(rows.map((row) => [row.id, row]));
    const woken: KeyUser[] = [];
    for (const id of ids) {
      const entry = this.entries.get(id);
      if (!entry) continue;
      this.apply(entry, byId.get(id) ?? null, sentAt);
      if (!entry.usable) {
        // Disabled or deleted: its stream sends nothing more. The engine's sync removes it, or
        // (enabled again meanwhile) updates it, which pumps it.
        entry.waiting.clear();
      } else if (entry.waiting.size > 0 && performance.now() - entry.readAt < this.validMs) {
        woken.push(...entry.waiting);
        entry.waiting.clear();
      }
    }
    for (const user of woken) user.pump();
  }
}
