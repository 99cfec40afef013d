import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { DeliveryEngine, type EngineOptions } from '../src/delivery/engine.js';
import type { LeaseKeeper } from '../src/delivery/leases.js';
import type { SendOutcome, SendTarget, WebhookSender } from '../src/delivery/sender.js';
import { httpWires } from '../src/delivery/http-wire.js';

/**
 * The delivery engine (src/delivery/engine.ts) with fakes at its constructor's seams: a lease
 * keeper that holds what the test says, a sender that answers at once, and a `sql` that answers
 * the engine's few statements from in-memory tables (matched by their text: the engine, its
 * reader, poll and progress writer). What is checked is the flow between them: leases → streams
 * → reads → sends → recorded rows and cursors, wake-ups, and a 410 that disables the endpoint
 * and hands its lease back. The statements themselves are tested against Postgres elsewhere.
 */

interface Endpoint {
  id: string;
  org_id: string;
  enabled: boolean;
  url: string;
  secret: string;
  cursor_seq: string;
  cursor_id: string;
  failing_since: Date | null;
  disabled_reason: string | null;
}

interface EventRow {
  id: string;
  seq: number;
  org_id: string;
  type: string;
  payload: string;
  received_at: Date;
}

interface DeliveryRow {
  o: string;
  e: string;
  d: string;
  v: string;
  s: string;
  i: number;
  n: string | null;
}

/** The tables the engine reads and writes, and a tagged-template `sql` over them. */
class FakeDb {
  endpoints = new Map<string, Endpoint>();
  events: EventRow[] = [];
  deliveries: DeliveryRow[] = [];
  statements: string[] = [];
  private seq = 0;

  addEndpoint(orgId: string): Endpoint {
    const endpoint: Endpoint = {
      id: randomUUID(),
      org_id: orgId,
      enabled: true,
      url: 'http://127.0.0.1:9/hook',
      secret: 'whsec_' + Buffer.alloc(32, 7).toString('base64'),
      cursor_seq: '0',
      cursor_id: '00000000-0000-0000-0000-000000000000',
      failing_since: null,
      disabled_reason: null,
    };
    this.endpoints.set(endpoint.id, endpoint);
    return endpoint;
  }

  addEvents(orgId: string, count: number): EventRow[] {
    const rows = Array.from({ length: count }, () => {
      const ms = Date.now();
      const hex = ms.toString(16).padStart(12, '0');
      const id = `${hex.slice(0, 8)}-${hex.slice(8, 12)}-7${randomUUID().slice(15)}`;
      return {
        id,
        seq: ++this.seq,
        org_id: orgId,
        type: 'unit.test',
        payload: `{"n":${this.seq}}`,
        received_at: new Date(ms),
      };
    });
    this.events.push(...rows);
    return rows;
  }

  readonly sql = Object.assign(
    (strings: TemplateStringsArray, ...values: unknown[]) => this.query(strings.join('$'), values),
    { begin: async (fn: (tx: unknown) => Promise<unknown>) => fn(this.sql) },
  ) as unknown as Sql;

  private async query(text: string, values: unknown[]): Promise<unknown[]> {
    this.statements.push(text);
    await Promise.resolve();
    if (text.includes('from webhook_endpoints where id = any(')) {
      const ids = values[0] as string[];
      return ids.flatMap((id) => {
        const e = this.endpoints.get(id);
        return e
          ? [
              {
                ...e,
                previous_secret: null,
                event_types: ['*'],
                filter: null,
                deliver_from_ms: 0,
                ordering: 'none',
                rate_limit_per_sec: null,
                max_in_flight: null,
                failing_since_ms: e.failing_since?.getTime() ?? null,
              },
            ]
          : [];
      });
    }
    if (text.includes('as watermark')) return [{ watermark: String(this.seq + 1) }];
    if (text.includes('select id, cursor_seq, type, payload')) {
      const [orgId, after] = values as [string, string];
      const limit = values.find((v, i) => i > 3 && typeof v === 'number') as number;
      return this.events
        .filter((e) => e.org_id === orgId && e.seq > Number(after))
        .slice(0, limit)
        .map((e, i, all) => ({
          id: e.id,
          cursor_seq: String(e.seq),
          type: e.type,
          payload: e.payload,
          occurred_at: null,
          received_at: e.received_at,
          upto_bytes: all.slice(0, i + 1).reduce((sum, r) => sum + r.payload.length, 0),
        }));
    }
    // The per-minute stats the progress writer upserts beside the attempts: not this fake's business.
    if (text.includes('insert into endpoint_stats')) return [];
    if (text.includes('select id::text as id from webhook_deliveries')) return [];
    if (text.includes('count(*)::int as n from webhook_deliveries')) return [{ n: 0 }];
    if (text.includes('select org_id, endpoint_id, id, event_id, event_received_at, retry_index')) return [];
    if (text.includes('set failing_since = null')) {
      for (const id of values[1] as string[]) this.endpoints.get(id)!.failing_since = null;
      return [];
    }
    if (text.includes('set failing_since = case')) {
      const [, ids, times] = values as [string[], string[], string[]];
      return ids.flatMap((id, i) => {
        const e = this.endpoints.get(id);
        if (!e?.enabled) return [];
        e.failing_since ??= new Date(times[i]!);
        return [{ id, failing_since: e.failing_since }];
      });
    }
    if (text.includes('set enabled = false')) {
      const e = this.endpoints.get(values[2] as string)!;
      e.enabled = false;
      e.disabled_reason = values[0] as string;
      return [];
    }
    if (text.includes('pg_notify')) return [];
    if (text.includes('set cursor_seq = c.seq')) {
      const [, ids, seqs, cursorIds] = values as [string[], string[], string[], string[]];
      ids.forEach((id, i) => {
        const e = this.endpoints.get(id);
        if (e && Number(e.cursor_seq) < Number(seqs[i]))
          Object.assign(e, { cursor_seq: seqs[i], cursor_id: cursorIds[i] });
      });
      return [];
    }
    if (text.includes('insert into webhook_deliveries')) {
      const rows = JSON.parse(
        values.find((v) => typeof v === 'string' && v.startsWith('[')) as string,
      ) as DeliveryRow[];
      for (const row of rows) {
        const existing = this.deliveries.find((d) => d.d === row.d);
        if (existing) Object.assign(existing, row);
        else this.deliveries.push(row);
      }
      return [];
    }
    throw new Error(`the fake database does not know: ${text.slice(0, 120)}`);
  }
}

class FakeLeases {
  held = new Set<string>();
  released: string[] = [];
  releasedAll = false;
  async renewAndClaim() {
    return { held: new Set(this.held), share: this.held.size };
  }
  async release(ids: string[]) {
    for (const id of ids) this.held.delete(id);
    this.released.push(...ids);
  }
  async releaseAll() {
    this.releasedAll = true;
  }
}

/** Answers every request at once with `status`, counting them per event id. */
class InstantSender {
  sent = new Map<string, number>();
  constructor(public status = 200) {}
  target(url: string): SendTarget {
    return { origin: new URL(url).origin, path: '/hook', refused: null };
  }
  async send(_target: SendTarget, headers: Record<string, string>): Promise<SendOutcome> {
    const id = headers['webhook-id']!;
    this.sent.set(id, (this.sent.get(id) ?? 0) + 1);
    return {
      ok: this.status >= 200 && this.status < 300,
      status: this.status,
      latencyMs: 1,
      error: null,
      retryAfter: undefined,
    };
  }
}

const OPTIONS: EngineOptions = {
  retryScheduleMs: [60_000],
  disableAfterHours: 0,
  defaultMaxInFlight: 16,
  maxInFlight: 64,
  bufferBytes: 8 << 20,
  endpointBufferBytes: 1 << 20,
  pollIntervalMs: 600_000,
};

async function until(condition: () => boolean, what: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

function setup(status = 200) {
  const db = new FakeDb();
  const leases = new FakeLeases();
  const sender = new InstantSender(status);
  const engine = new DeliveryEngine(
    db.sql,
    httpWires(sender as unknown as WebhookSender),
    leases as unknown as LeaseKeeper,
    OPTIONS,
  );
  return { db, leases, sender, engine };
}

test('a leased endpoint gets every event of its org once, each recorded, and its cursor ends at the last', async () => {
  const { db, leases, sender, engine } = setup();
  const org = randomUUID();
  const endpoint = db.addEndpoint(org);
  leases.held.add(endpoint.id);
  const events = db.addEvents(org, 40);
  db.addEvents(randomUUID(), 5); // another org's: not this endpoint's business
  await engine.sync();
  engine.start();
  await until(() => db.deliveries.length === 40, 'every delivery recorded');
  assert.deepEqual([...sender.sent.keys()].sort(), events.map((e) => e.id).sort());
  assert.ok(
    [...sender.sent.values()].every((n) => n === 1),
    'each sent once',
  );
  assert.ok(db.deliveries.every((d) => d.s === 'succeeded' && d.e === endpoint.id));
  await until(() => endpoint.cursor_seq === String(events.at(-1)!.seq), 'the cursor at the last event');
  await engine.stop(1_000);
  assert.equal(leases.releasedAll, true);
});

test('a wake-up for the org reads new events at once, without waiting for the poll', async () => {
  const { db, leases, sender, engine } = setup();
  const org = randomUUID();
  const endpoint = db.addEndpoint(org);
  leases.held.add(endpoint.id);
  await engine.sync();
  engine.start();
  await until(() => db.statements.some((s) => s.includes('select id, cursor_seq')), 'the first read');
  const late = db.addEvents(org, 3);
  engine.eventsCommitted([randomUUID()]); // another org: nothing read for this one
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(sender.sent.size, 0);
  engine.eventsCommitted([org]);
  await until(() => sender.sent.size === 3, 'the woken stream sent the new events');
  assert.deepEqual([...sender.sent.keys()].sort(), late.map((e) => e.id).sort());
  await engine.stop(1_000);
});

test('410 Gone: the progress writer disables the endpoint, the engine stops its stream and hands its lease back', async () => {
  const { db, leases, sender, engine } = setup(410);
  const org = randomUUID();
  const endpoint = db.addEndpoint(org);
  leases.held.add(endpoint.id);
  db.addEvents(org, 50);
  await engine.sync();
  engine.start();
  await until(() => !endpoint.enabled, 'disabled');
  assert.match(endpoint.disabled_reason!, /410 Gone/);
  await until(() => leases.released.includes(endpoint.id), 'its lease handed back');
  const sent = [...sender.sent.values()].reduce((a, b) => a + b, 0);
  assert.equal(sent, 1, 'never answered: one request at a time, and nothing after the 410');
  await new Promise((resolve) => setTimeout(resolve, 50));
  assert.equal(
    [...sender.sent.values()].reduce((a, b) => a + b, 0),
    1,
  );
  assert.equal(engine.sending, 0);
  assert.equal(engine.bufferedBytes, 0, 'the stopped stream let its bodies go');
  await engine.stop(1_000);
});

test('a failed attempt is recorded with its retry time and sets failing_since; the endpoint stays enabled', async () => {
  const { db, leases, engine } = setup(500);
  const org = randomUUID();
  const endpoint = db.addEndpoint(org);
  leases.held.add(endpoint.id);
  db.addEvents(org, 1);
  await engine.sync();
  engine.start();
  await until(() => db.deliveries.length === 1, 'the attempt recorded');
  assert.equal(db.deliveries[0]!.s, 'failed');
  assert.equal(db.deliveries[0]!.i, 1);
  assert.ok(db.deliveries[0]!.n !== null);
  await until(() => endpoint.failing_since !== null, 'failing_since set');
  assert.equal(endpoint.enabled, true);
  await engine.stop(1_000);
});
