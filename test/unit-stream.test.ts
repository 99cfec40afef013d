import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { afterEach, mock, test } from 'node:test';
import fc from 'fast-check';
import type { EndpointSettings } from '../src/delivery/endpoint-settings.js';
import type { StreamEvent } from '../src/delivery/event-reader.js';
import type { AttemptRecord, EndpointHealth, ProgressWriter } from '../src/delivery/progress-writer.js';
import type { SendOutcome, SendTarget, WebhookSender } from '../src/delivery/sender.js';
import { httpWires } from '../src/delivery/http-wire.js';
import { EndpointStream, MAX_PARKED, type StreamContext } from '../src/delivery/stream.js';
import { fakeEndpointSettings } from './helpers/fake-endpoint.js';

/**
 * One endpoint's stream (src/delivery/stream.ts) with fakes at its seams: a sender whose every
 * request waits for the test to answer it, a progress writer that keeps what it is given until
 * the test commits it, and the engine's side of StreamContext as counters. What is checked is
 * what the stream promises: what it records for each attempt, where its cursor may go, how much
 * it sends at once, and what it does with an endpoint that is gone.
 */

afterEach(() => mock.timers.reset());

const OK: SendOutcome = { ok: true, status: 200, latencyMs: 1, error: null, retryAfter: undefined };
const fail = (status: number | null): SendOutcome => ({
  ok: false,
  status,
  latencyMs: 1,
  error: status === null ? 'connection refused' : null,
  retryAfter: undefined,
});

interface Request {
  body: string;
  headers: Record<string, string>;
  answer(outcome: SendOutcome): void;
}

class FakeSender {
  readonly requests: Request[] = [];
  get open(): Request[] {
    return this.requests.filter((r) => !(r as { done?: boolean }).done);
  }
  target(url: string): SendTarget {
    return { origin: new URL(url).origin, path: '/hook', refused: null };
  }
  send(_target: SendTarget, headers: Record<string, string>, body: string): Promise<SendOutcome> {
    return new Promise((resolve) => {
      const request: Request & { done?: boolean } = {
        body,
        headers,
        answer: (outcome) => {
          request.done = true;
          resolve(outcome);
        },
      };
      this.requests.push(request);
    });
  }
}

class FakeWriter {
  records: AttemptRecord[] = [];
  health: EndpointHealth[] = [];
  cursorMoves = 0;
  add(record: AttemptRecord): void {
    this.records.push(record);
  }
  setHealth(change: EndpointHealth): void {
    this.health.push(change);
  }
  cursorMoved(): void {
    this.cursorMoves++;
  }
  /** The writer's transaction committed everything queued so far. */
  commitAll(): void {
    for (const record of this.records.splice(0)) record.committed();
  }
}

class Engine {
  slots = 0;
  maxSlots = Infinity;
  bodyBytes = 0;
  unwritten = 0;
  wantsEvents = 0;
  retryAt: number[] = [];
}

function context(
  sender: FakeSender,
  writer: FakeWriter,
  engine: Engine,
  schedule = [60_000, 3_600_000],
): StreamContext {
  return {
    wires: httpWires(sender as unknown as WebhookSender),
    writer: writer as unknown as ProgressWriter,
    retryScheduleMs: schedule,
    defaultMaxInFlight: 64,
    endpointBufferBytes: 1 << 20,
    acquireSlot: () => {
      if (engine.slots >= engine.maxSlots) return false;
      engine.slots++;
      return true;
    },
    releaseSlot: () => {
      engine.slots--;
    },
    bodyBytes: (delta) => {
      engine.bodyBytes += delta;
    },
    recordQueued: (bytes) => {
      engine.unwritten += bytes;
    },
    recordWritten: (bytes) => {
      engine.unwritten -= bytes;
    },
    wantsEvents: () => {
      engine.wantsEvents++;
    },
    retryAt: (ms) => {
      engine.retryAt.push(ms);
    },
  };
}

const settings = fakeEndpointSettings;

function events(count: number, from = 0, type = 'unit.test'): StreamEvent[] {
  return Array.from({ length: count }, (_, k) => {
    const i = from + k;
    const id = `0190${String(i).padStart(4, '0')}-0000-7000-8000-${String(i).padStart(12, '0')}`;
    return { id, seq: String(i + 1), type, receivedAtMs: 1_000 + i, body: `{"i":${i}}` };
  });
}

function setup(overrides: Partial<EndpointSettings> = {}, schedule?: number[]) {
  const sender = new FakeSender();
  const writer = new FakeWriter();
  const engine = new Engine();
  const stream = new EndpointStream(settings(overrides), context(sender, writer, engine, schedule));
  return { sender, writer, engine, stream };
}

const flush = () => new Promise((resolve) => setImmediate(resolve));

/** Answers every open request with `outcome` until none is open (the stream sends more as they end). */
async function answerAll(sender: FakeSender, outcome: SendOutcome | ((r: Request) => SendOutcome)): Promise<void> {
  for (let open = sender.open; open.length > 0; open = sender.open) {
    for (const request of open) request.answer(typeof outcome === 'function' ? outcome(request) : outcome);
    await flush();
  }
}

test('an endpoint not known to answer gets one request at a time; once it answers, the window (8, +1 for that success)', async () => {
  const { sender, writer, stream } = setup();
  stream.addEvents({ events: events(100), more: false });
  assert.equal(sender.open.length, 1);
  sender.open[0]!.answer(OK);
  await flush();
  assert.equal(sender.open.length, 9);
  assert.equal(writer.records.length, 1);
  assert.equal(writer.records[0]!.status, 'succeeded');
});

test('each request is signed and carries the event id and time (Standard Webhooks headers)', () => {
  const { sender, stream } = setup();
  stream.addEvents({ events: events(1), more: false });
  const { headers, body } = sender.requests[0]!;
  assert.equal(body, '{"i":0}');
  assert.equal(headers['webhook-id'], events(1)[0]!.id);
  assert.match(headers['webhook-timestamp']!, /^\d+$/);
  assert.match(headers['webhook-signature']!, /^v1,[A-Za-z0-9+/=]+$/);
});

test('the cursor stops before the first event whose record is not written, whatever order sends end in', async () => {
  const { sender, writer, stream } = setup();
  const batch = events(10);
  stream.addEvents({ events: batch, more: false });
  sender.open[0]!.answer(OK); // now answered: a window of 9
  await flush();
  const open = sender.open;
  assert.equal(open.length, 9);
  // The last seven end first; the second event is still in flight.
  for (const request of open.slice(1)) request.answer(OK);
  await flush();
  assert.deepEqual(stream.frontier(), { seq: batch[0]!.seq, id: batch[0]!.id });
  open[0]!.answer(OK);
  await answerAll(sender, OK);
  assert.deepEqual(stream.frontier(), { seq: batch[9]!.seq, id: batch[9]!.id });
  stream.persisted(stream.frontier()!);
  assert.equal(stream.frontier(), null, 'not moved since it was persisted');
  assert.equal(writer.records.length, 10);
});

test('property: the cursor never passes an event that was not recorded, and ends at the last read', async () => {
  await fc.assert(
    fc.asyncProperty(fc.integer({ min: 1, max: 60 }), fc.array(fc.nat(), { maxLength: 200 }), async (count, picks) => {
      // Failures put the endpoint in probe mode, whose pauses are timers: the clock is the test's.
      mock.timers.reset(); // a failed run left it enabled: shrinking reruns start clean
      mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
      const { sender, writer, stream } = setup();
      const batch = events(count);
      stream.addEvents({ events: batch, more: false });
      const recorded = new Set<string>();
      let persisted = stream.readPos;
      const check = () => {
        for (const record of writer.records) recorded.add(record.eventId);
        const at = stream.frontier();
        if (at === null) return;
        persisted = at;
        stream.persisted(at);
        for (const event of batch) {
          if (BigInt(event.seq) > BigInt(at.seq)) break;
          assert.ok(recorded.has(event.id), `cursor at ${at.seq} passed event ${event.seq}, not recorded`);
        }
      };
      for (const pick of picks) {
        const open = sender.open;
        if (open.length === 0) break;
        open[pick % open.length]!.answer(pick % 7 === 0 ? fail(500) : OK);
        await flush();
        check();
      }
      for (let i = 0; i < 200 && writer.records.length < count; i++) {
        if (sender.open.length === 0) mock.timers.tick(40_000); // past the longest probe pause
        await answerAll(sender, OK);
      }
      check();
      mock.timers.reset();
      assert.equal(recorded.size, count);
      assert.equal(persisted.id, batch.at(-1)!.id, 'everything recorded: the cursor is at the last event read');
    }),
    { numRuns: 60 },
  );
});

test("a failed attempt is recorded failed with its retry time from the schedule (±20%), and the endpoint's failure noted", async () => {
  const { sender, writer, engine, stream } = setup({}, [60_000, 3_600_000]);
  stream.addEvents({ events: events(1), more: false });
  const before = Date.now();
  sender.open[0]!.answer(fail(503));
  await flush();
  const [record] = writer.records;
  assert.equal(record!.status, 'failed');
  assert.equal(record!.retryIndex, 1);
  const wait = record!.nextAttemptAtMs! - before;
  assert.ok(wait >= 48_000 - 50 && wait <= 72_000 + 50, `retry in ${wait} ms`);
  assert.deepEqual(
    writer.health.map((h) => h.failure?.status),
    [503],
  );
  assert.deepEqual(JSON.parse(record!.attempt).response_status, 503);
  assert.equal(stream.openRows, 1, 'an open row: a fifo endpoint would hold new events');
  assert.deepEqual(engine.retryAt, [], 'the retry is scheduled once its row is committed');
  writer.commitAll();
  assert.deepEqual(engine.retryAt, [record!.nextAttemptAtMs]);
});

test('a retry past the end of the schedule is dead; a success after failures clears failing_since once', async () => {
  const { sender, writer, stream } = setup({}, [60_000]);
  stream.addEvents({ events: events(1), more: false });
  await answerAll(sender, OK);
  assert.equal(writer.health.length, 0, 'nothing to clear');
  stream.addRetries([
    {
      deliveryId: randomUUID(),
      eventId: randomUUID(),
      eventType: 'test',
      eventReceivedAtMs: 1,
      retryIndex: 1,
      body: '{}',
    },
  ]);
  sender.open[0]!.answer(fail(500));
  await flush();
  assert.equal(writer.records[1]!.status, 'dead');
  assert.equal(writer.records[1]!.nextAttemptAtMs, null);
  stream.addEvents({ events: events(2, 1), more: false });
  await answerAll(sender, OK);
  assert.deepEqual(
    writer.health.map((h) => (h.failure === null ? 'cleared' : 'failed')),
    ['failed', 'cleared'],
  );
});

test('a retry whose event retention dropped is recorded dead without a request, and is no fault of the endpoint', async () => {
  const { sender, writer, engine, stream } = setup();
  stream.addRetries([
    {
      deliveryId: randomUUID(),
      eventId: randomUUID(),
      eventType: 'test',
      eventReceivedAtMs: 1,
      retryIndex: 2,
      body: null,
    },
  ]);
  assert.equal(sender.requests.length, 0);
  assert.equal(writer.records.length, 1);
  assert.equal(writer.records[0]!.status, 'dead');
  assert.equal(JSON.parse(writer.records[0]!.attempt).error, 'event no longer retained');
  assert.deepEqual(writer.health, [], 'no failing_since, no disabling, for an event that expired');
  assert.equal(engine.slots, 0, 'its slot was given back');
});

test('410 Gone: nothing more goes out, not even what is queued, and every body held is let go', async () => {
  const { sender, writer, engine, stream } = setup();
  stream.addEvents({ events: events(50), more: false });
  sender.open[0]!.answer(OK);
  await flush();
  assert.equal(sender.open.length, 9);
  sender.open[0]!.answer({ ok: false, status: 410, latencyMs: 1, error: null, retryAfter: undefined });
  await flush();
  assert.equal(stream.stoppedForGood, true);
  assert.deepEqual(
    writer.health.map((h) => h.failure?.status),
    [410],
  );
  await answerAll(sender, OK); // the eight in flight finish and are recorded
  assert.equal(sender.requests.length, 10);
  assert.equal(writer.records.length, 10);
  assert.equal(engine.bodyBytes, 0);
  assert.equal(engine.slots, 0);
  stream.addEvents({ events: events(5, 50), more: false });
  assert.equal(sender.requests.length, 10, 'a stopped stream takes nothing more');
});

test('types it does not want and events before deliver_from move the read position but are not sent', () => {
  const { sender, stream } = setup({ matches: (type) => type === 'wanted', deliverFromMs: 1_003 });
  const batch = [...events(2, 0, 'wanted'), ...events(2, 2, 'other'), ...events(3, 4, 'wanted')];
  stream.addEvents({ events: batch, more: false });
  assert.equal(stream.readPos.id, batch.at(-1)!.id);
  assert.equal(stream.queued + stream.inFlight, 3, 'events 4, 5, 6');
  assert.equal(sender.requests[0]!.body, '{"i":4}');
});

test("events the endpoint's filter left out (marked excluded by the read) move the read position but are not sent", () => {
  const { sender, stream } = setup();
  const batch = events(4);
  batch[1]!.excluded = true;
  batch[3]!.excluded = true;
  stream.addEvents({ events: batch, more: false });
  assert.equal(stream.readPos.id, batch.at(-1)!.id);
  assert.equal(stream.queued + stream.inFlight, 2, 'events 0 and 2');
  assert.equal(sender.requests[0]!.body, '{"i":0}');
  assert.deepEqual(stream.deliveriesToCheck(batch, 'ffffffff-ffff-7fff-bfff-ffffffffffff').length, 2);
});

test('deliveries that already have a row (a resume after a crash) are not sent again', () => {
  const { sender, stream } = setup();
  const batch = events(3);
  const upTo = 'ffffffff-ffff-7fff-bfff-ffffffffffff';
  const ids = stream.deliveriesToCheck(batch, upTo);
  assert.equal(ids.length, 3);
  stream.addEvents({ events: batch, more: false }, new Set([ids[0]!, ids[1]!]));
  assert.equal(stream.queued + stream.inFlight, 1);
  assert.equal(sender.requests[0]!.body, '{"i":2}');
});

test('fifo: one request at a time, and no new event while the endpoint has an open (failed) row', async () => {
  const { sender, writer, stream } = setup({ fifo: true });
  stream.addEvents({ events: events(5), more: false });
  sender.open[0]!.answer(OK);
  await flush();
  assert.equal(sender.open.length, 1);
  sender.open[0]!.answer(fail(500));
  await flush();
  assert.equal(sender.open.length, 0, 'held behind its failed row');
  assert.equal(stream.openRows, 1);
  // Its retry succeeds: the row is closed, the next event goes.
  const failed = writer.records.at(-1)!;
  writer.commitAll();
  stream.addRetries([
    {
      deliveryId: failed.deliveryId,
      eventId: failed.eventId,
      eventType: 'test',
      eventReceivedAtMs: failed.eventReceivedAtMs,
      retryIndex: 1,
      body: '{"i":1}',
    },
  ]);
  assert.equal(sender.open.length, 1);
  sender.open[0]!.answer(OK);
  await flush();
  assert.equal(stream.openRows, 0);
  assert.equal(sender.open.length, 1, 'the next event');
  assert.equal(sender.open[0]!.body, '{"i":2}');
});

test("the process's slots bound the stream: refused a slot, it waits to be pumped", async () => {
  const { sender, engine, stream } = setup();
  stream.addEvents({ events: events(1), more: false });
  sender.open[0]!.answer(OK);
  await flush();
  engine.maxSlots = 3;
  stream.addEvents({ events: events(20, 1), more: false });
  assert.equal(sender.open.length, 3);
  engine.maxSlots = 10;
  stream.pump();
  assert.equal(sender.open.length, 9, 'the window');
});

test('bytes held are counted in and out: read ahead, in flight and retries, back to zero when all is sent', async () => {
  const { sender, engine, stream } = setup();
  const batch = events(30);
  stream.addEvents({ events: batch, more: false });
  stream.addRetries([
    {
      deliveryId: randomUUID(),
      eventId: randomUUID(),
      eventType: 'test',
      eventReceivedAtMs: 1,
      retryIndex: 1,
      body: 'x'.repeat(100),
    },
  ]);
  assert.equal(engine.bodyBytes, batch.reduce((sum, e) => sum + e.body.length, 0) + 100);
  assert.equal(stream.bufferedBytes, engine.bodyBytes);
  await answerAll(sender, OK);
  assert.equal(engine.bodyBytes, 0);
  assert.equal(stream.bufferedBytes, 0);
  assert.equal(engine.slots, 0);
});

test('rate_limit_per_sec: no second sees more than rate × 1.1 requests, though the endpoint answers at once', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  const { sender, stream } = setup({ rateLimitPerSec: 20 });
  stream.addEvents({ events: events(1), more: false });
  sender.open[0]!.answer(OK);
  await flush();
  stream.addEvents({ events: events(200, 1), more: false });
  const starts: number[] = [];
  let seen = sender.requests.length;
  for (let ms = 0; ms < 5_000; ms += 10) {
    for (; seen < sender.requests.length; seen++) starts.push(Date.now());
    for (const request of sender.open) request.answer(OK);
    await flush();
    mock.timers.tick(10);
  }
  for (let i = 0; i < starts.length; i++) {
    const inSecond = starts.filter((t) => t >= starts[i]! && t < starts[i]! + 1_000).length;
    assert.ok(inSecond <= 22, `${inSecond} requests in the second from ${starts[i]}`);
  }
  assert.ok(starts.length >= 95, `${starts.length} requests in 5 s at 20/s`);
  stream.stop();
});

test('abortInFlight (shutdown): sends cut short are not recorded, so the next owner sends them', async () => {
  const sender = new FakeSender();
  const writer = new FakeWriter();
  const engine = new Engine();
  let cut = 0;
  const cuttable = {
    target: sender.target.bind(sender),
    send: (
      target: SendTarget,
      headers: Record<string, string>,
      body: string,
      onAbortable: (abort: () => void) => void,
    ) => {
      const promise = sender.send(target, headers, body);
      onAbortable(() => {
        cut++;
        sender.requests.at(-1)!.answer(fail(null));
      });
      return promise;
    },
  };
  const stream = new EndpointStream(settings(), {
    ...context(sender, writer, engine),
    wires: httpWires(cuttable as unknown as WebhookSender),
  });
  const batch = events(3);
  stream.addEvents({ events: batch, more: false });
  stream.abortInFlight();
  await flush();
  assert.equal(cut, 1);
  assert.equal(writer.records.length, 0);
  assert.equal(stream.frontier(), null, 'the cursor stays before the event in flight');
  assert.equal(engine.slots, 0);
});

/** Events with ordering keys: `keys[i]` is event i's key (null: none). */
function keyedEvents(keys: (string | null)[], from = 0): StreamEvent[] {
  return events(keys.length, from).map((event, i) => ({ ...event, orderingKey: keys[i] }));
}

const bodyIndex = (request: Request) => (JSON.parse(request.body) as { i: number }).i;

/** A healthy, answered endpoint (not suspect: its window is open). */
async function answeredKeyStream() {
  const setupResult = setup({ byKey: true });
  setupResult.stream.addEvents({ events: keyedEvents([null]), more: false });
  setupResult.sender.open[0]!.answer(OK);
  await flush();
  setupResult.writer.commitAll();
  return setupResult;
}

test('ordering "key": one event of a key in flight at a time; other keys and keyless events in parallel', async () => {
  const { sender, stream } = await answeredKeyStream();
  // 1..6: a, a, b, null, a, null
  stream.addEvents({ events: keyedEvents(['a', 'a', 'b', null, 'a', null], 1), more: false });
  assert.deepEqual(sender.open.map(bodyIndex), [1, 3, 4, 6], 'the first of a, the first of b, both keyless');
  assert.equal(stream.parked, 2);
  sender.open.find((r) => bodyIndex(r) === 1)!.answer(OK);
  await flush();
  assert.deepEqual(sender.open.map(bodyIndex), [3, 4, 6, 2], "a's next one goes when its first succeeded");
  await answerAll(sender, OK);
  assert.deepEqual(sender.requests.slice(1).map(bodyIndex), [1, 3, 4, 6, 2, 5]);
  assert.equal(stream.parked, 0);
  assert.equal(stream.heldKeys, 0, 'no entry left for keys with nothing in flight');
});

test('ordering "key": a failing key holds only its own followers until its retry succeeds', async () => {
  const { sender, writer, stream } = await answeredKeyStream();
  stream.addEvents({ events: keyedEvents(['a', 'b', 'a', 'b', null, 'a'], 1), more: false });
  sender.open.find((r) => bodyIndex(r) === 1)!.answer(fail(500));
  await flush();
  await answerAll(sender, OK);
  const sent = sender.requests.slice(1).map(bodyIndex);
  assert.deepEqual(sent.slice(1).sort(), [2, 4, 5], "b and the keyless event went; a's followers (3, 6) wait");
  assert.equal(stream.parked, 2);
  assert.equal(stream.heldKeys, 1);
  const failed = writer.records.find((record) => record.status === 'failed')!;
  writer.commitAll();
  // A failed retry keeps holding.
  stream.addRetries([
    {
      deliveryId: failed.deliveryId,
      eventId: failed.eventId,
      eventType: 'test',
      eventReceivedAtMs: failed.eventReceivedAtMs,
      retryIndex: 1,
      body: '{"i":1}',
    },
  ]);
  sender.open[0]!.answer(fail(500));
  await flush();
  assert.equal(sender.open.length, 0, 'still held after a failed retry');
  writer.commitAll();
  stream.addRetries([
    {
      deliveryId: failed.deliveryId,
      eventId: failed.eventId,
      eventType: 'test',
      eventReceivedAtMs: failed.eventReceivedAtMs,
      retryIndex: 2,
      body: '{"i":1}',
    },
  ]);
  sender.open[0]!.answer(OK);
  await flush();
  await answerAll(sender, OK);
  assert.deepEqual(sender.requests.slice(-3).map(bodyIndex), [1, 3, 6], "the retry, then a's followers in order");
  assert.equal(stream.parked, 0);
  assert.equal(stream.heldKeys, 0);
});

test('ordering "key": a delivery that goes dead releases its key', async () => {
  const { sender, writer, stream } = await answeredKeyStream();
  stream.addEvents({ events: keyedEvents(['a', 'a'], 1), more: false });
  sender.open[0]!.answer(fail(500));
  await flush();
  assert.equal(sender.open.length, 0);
  const failed = writer.records.at(-1)!;
  writer.commitAll();
  // The schedule has two retries: the second retry index is the last, a failure there is dead.
  stream.addRetries([
    {
      deliveryId: failed.deliveryId,
      eventId: failed.eventId,
      eventType: 'test',
      eventReceivedAtMs: failed.eventReceivedAtMs,
      retryIndex: 2,
      body: '{"i":1}',
    },
  ]);
  sender.open[0]!.answer(fail(500));
  await flush();
  assert.equal(writer.records.at(-1)!.status, 'dead');
  assert.deepEqual(sender.open.map(bodyIndex), [2], 'the follower goes once its predecessor is dead');
});

test('ordering "key": open rows loaded at start (a restart or a handover) hold their keys until their retries end', async () => {
  const { sender, writer, stream } = setup({ byKey: true });
  const openId = randomUUID();
  stream.loadOpenKeys([{ deliveryId: openId, key: 'a' }]);
  stream.addEvents({ events: keyedEvents(['a', 'b', null]), more: false });
  await answerAll(sender, OK);
  assert.deepEqual(sender.requests.map(bodyIndex).sort(), [1, 2], "a's event waits for the open row");
  writer.commitAll();
  stream.addRetries([
    {
      deliveryId: openId,
      eventId: randomUUID(),
      eventType: 'test',
      eventReceivedAtMs: 1,
      retryIndex: 1,
      body: '{"i":-1}',
    },
  ]);
  await answerAll(sender, OK);
  assert.deepEqual(sender.requests.slice(-2).map(bodyIndex), [-1, 0]);
  // Reloaded with no open rows: nothing held.
  stream.loadOpenKeys([]);
  assert.equal(stream.heldKeys, 0);
});

test('ordering "key": distinct keys leave no entries behind once delivered (10 000 here), and parked events are bounded (MAX_PARKED)', async () => {
  const { sender, writer, stream } = await answeredKeyStream();
  for (let batch = 0; batch < 20; batch++) {
    stream.addEvents({
      events: keyedEvents(
        Array.from({ length: 500 }, (_, i) => `k${batch * 500 + i}`),
        1 + batch * 500,
      ),
      more: false,
    });
    await answerAll(sender, OK);
    writer.commitAll();
    assert.equal(stream.heldKeys, 0);
  }
  assert.equal(sender.requests.length, 1 + 10_000);
  // One key fails; its followers are parked up to MAX_PARKED, then the stream stops reading.
  stream.addEvents({ events: keyedEvents(['held'], 20_000), more: false });
  sender.open[0]!.answer(fail(500));
  await flush();
  for (let from = 20_001; stream.parked < MAX_PARKED; from += 500) {
    assert.ok(stream.wantsEvents(), `reads on below MAX_PARKED (${stream.parked} parked)`);
    stream.addEvents({
      events: keyedEvents(
        Array.from({ length: 500 }, () => 'held'),
        from,
      ),
      more: false,
    });
  }
  assert.equal(stream.wantsEvents(), false, 'no more reads while MAX_PARKED events wait for one key');
  assert.equal(stream.heldKeys, 1);
});

test('ordering "key": switched to none, parked events are sent; the engine reloads open keys when switched back', async () => {
  const { sender, stream } = await answeredKeyStream();
  stream.addEvents({ events: keyedEvents(['a', 'a', 'a'], 1), more: false });
  assert.equal(sender.open.length, 1);
  stream.update(settings({ id: stream.endpointId, orgId: stream.orgId, byKey: false }));
  assert.equal(sender.open.length, 3, 'nothing held any more');
  await answerAll(sender, OK);
  stream.update(settings({ id: stream.endpointId, orgId: stream.orgId, byKey: true }));
  stream.addEvents({ events: keyedEvents(['a'], 4), more: false });
  assert.equal(sender.open.length, 0, 'waits for the engine to load the open keys');
  stream.loadOpenKeys([]);
  assert.equal(sender.open.length, 1);
});

test('ordering "key": a key held while thousands of other events are delivered keeps the frontier at its parked event, and the done slots behind it do not pile up', async () => {
  const { sender, writer, stream } = await answeredKeyStream();
  // 1: held's first (fails), 2: held's second (parked); then 20 000 events of other keys.
  stream.addEvents({ events: keyedEvents(['held', 'held'], 1), more: false });
  sender.open[0]!.answer(fail(500));
  await flush();
  const failed = writer.records.at(-1)!;
  writer.commitAll();
  assert.equal(stream.parked, 1);
  const beforeParked = stream.frontier();
  assert.equal(beforeParked?.seq, '2', 'the frontier stops before the parked event (seq 3)');
  stream.persisted(beforeParked!);
  for (let from = 3; from < 20_003; from += 500) {
    stream.addEvents({
      events: keyedEvents(
        Array.from({ length: 500 }, (_, i) => `k${(from + i) % 1000}`),
        from,
      ),
      more: false,
    });
    await answerAll(sender, OK);
    writer.commitAll();
    assert.equal(stream.frontier(), null, 'the frontier stays before the parked event');
  }
  assert.ok(stream.trackedSlots < 4_000, `done slots behind the parked one are collapsed: ${stream.trackedSlots} kept`);
  // The held key's retry succeeds: its parked event goes, and the frontier moves to the end.
  stream.addRetries([
    {
      deliveryId: failed.deliveryId,
      eventId: failed.eventId,
      eventType: 'test',
      eventReceivedAtMs: failed.eventReceivedAtMs,
      retryIndex: 1,
      body: '{"i":1}',
    },
  ]);
  await answerAll(sender, OK);
  writer.commitAll();
  assert.deepEqual(sender.requests.slice(-2).map(bodyIndex), [1, 2]);
  assert.equal(stream.frontier()?.seq, '20003', 'every event done: the frontier is the last one read');
});
