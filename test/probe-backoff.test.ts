import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mock, test } from 'node:test';
import type { ProgressWriter } from '../src/delivery/progress-writer.js';
import { PROBE_FIRST_MS, PROBE_MAX_MS, probeDelayMs } from '../src/delivery/retry.js';
import { RetryPoller } from '../src/delivery/retry-poller.js';
import type { SendOutcome, SendTarget, WebhookSender } from '../src/delivery/sender.js';
import { httpWires } from '../src/delivery/http-wire.js';
import { EndpointStream, type StreamContext } from '../src/delivery/stream.js';
import type { Sql } from '../src/db/connect.js';
import { fakeEndpointSettings } from './helpers/fake-endpoint.js';

/**
 * Probe mode of a failing endpoint (src/delivery/stream.ts, retry.ts) and the due-retry poll
 * (retry-poller.ts), with fake seams: a sender whose receiver hangs until the timeout, a progress
 * writer that commits at once, a tagged-template `sql` that answers the poll, and Node's mock
 * timers for setTimeout and Date. What a thousand hanging endpoints of one org cost the delivery
 * process is what these bound (bench:webhooks, noisy).
 */

const TIMEOUT_MS = 2_000;
// An endpoint not known to answer gets one send at a time (stream.ts, `suspect`), and is probed
// from its first failure (one that has answered, after five failures in a row).

test('probeDelayMs: 1 s, then doubling with every failed probe, up to 30 s, with ±20% jitter', () => {
  const middle = () => 0.5;
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 6, 50].map((n) => probeDelayMs(n, middle)),
    [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000],
  );
  assert.equal(
    probeDelayMs(0, () => 0),
    PROBE_FIRST_MS * 0.8,
  );
  assert.equal(
    probeDelayMs(99, () => 1),
    PROBE_MAX_MS * 1.2,
  );
});

const settings = fakeEndpointSettings;

/** A receiver that hangs (every send a timeout at TIMEOUT_MS) until `healthy`, then answers 200 at once. */
class FakeSender {
  sends: number[] = [];
  healthy = false;
  target(url: string): SendTarget {
    return { origin: new URL(url).origin, path: '/hook', refused: null };
  }
  send(): Promise<SendOutcome> {
    this.sends.push(Date.now());
    if (this.healthy)
      return Promise.resolve({ ok: true, status: 200, latencyMs: 1, error: null, retryAfter: undefined });
    return new Promise((resolve) =>
      setTimeout(
        () =>
          resolve({
            ok: false,
            status: null,
            latencyMs: TIMEOUT_MS,
            error: `timed out after ${TIMEOUT_MS} ms`,
            retryAfter: undefined,
          }),
        TIMEOUT_MS,
      ),
    );
  }
}

function streamContext(sender: FakeSender): StreamContext {
  const writer = {
    add: (record: { committed: () => void }) => queueMicrotask(record.committed),
    setHealth: () => {},
    cursorMoved: () => {},
  };
  return {
    wires: httpWires(sender as unknown as WebhookSender),
    writer: writer as unknown as ProgressWriter,
    retryScheduleMs: [3_600_000],
    defaultMaxInFlight: 256,
    endpointBufferBytes: 8 << 20,
    acquireSlot: () => true,
    releaseSlot: () => {},
    bodyBytes: () => {},
    recordQueued: () => {},
    recordWritten: () => {},
    wantsEvents: () => {},
    retryAt: () => {},
  };
}

function events(count: number) {
  return Array.from({ length: count }, (_, i) => {
    const id = `0190${String(i).padStart(4, '0')}-0000-7000-8000-${String(i).padStart(12, '0')}`;
    return { id, seq: String(i + 1), type: 'probe.test', receivedAtMs: 1, body: `{"i":${i}}` };
  });
}

/** Lets the stream's promise callbacks run between timer ticks. */
async function advance(ms: number, step = 100): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    mock.timers.tick(step);
    await new Promise((resolve) => setImmediate(resolve)); // not mocked: every promise callback runs
  }
}

test('a hanging endpoint in probe mode is probed at growing pauses counted from the end of each attempt, and resumes at once when a probe succeeds', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const sender = new FakeSender();
    const stream = new EndpointStream(settings(), streamContext(sender));
    stream.addEvents({ events: events(200), more: false });
    // Never answered: one send, not a window of eight, and probe mode from its timeout on.
    assert.equal(sender.sends.length, 1);
    await advance(120_000);
    // Probed every second from the start of the previous attempt, a receiver that hangs 2 s got a
    // send every 2 s: 60 in two minutes. Paused 1, 2, 4, 8, 16, 30, 30 s (±20%) after each ended: about 8.
    const probes = sender.sends.length - 1;
    assert.ok(probes >= 5 && probes <= 10, `${probes} probes in 120 s`);
    const gaps = sender.sends.slice(1).map((at, i, all) => (i === 0 ? at - sender.sends[0]! : at - all[i - 1]!));
    for (let i = 0; i < gaps.length; i++) {
      assert.ok(
        gaps[i]! >= TIMEOUT_MS + Math.min(PROBE_MAX_MS, PROBE_FIRST_MS * 2 ** i) * 0.8 - 100,
        `gap ${i}: ${gaps[i]} ms (${gaps.join(', ')})`,
      );
    }
    // The receiver answers again: the next probe (within the longest pause) succeeds, and
    // everything waiting goes out without pauses.
    sender.healthy = true;
    await advance(PROBE_MAX_MS * 1.2 + TIMEOUT_MS + 1_000);
    // Each failed attempt took an event (its retry is the poll's business): every event was sent once.
    assert.equal(sender.sends.length, 200, `after recovery ${sender.sends.length - 1 - probes} sends`);
  } finally {
    mock.timers.reset();
  }
});

test('in probe mode a stream holding a retry takes no more from the due-retry poll', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const sender = new FakeSender();
    const stream = new EndpointStream(settings(), streamContext(sender));
    stream.addEvents({ events: events(8), more: false });
    assert.equal(stream.wantsRetries(), true);
    await advance(TIMEOUT_MS + 100);
    // Its first send timed out: probe mode. A retry handed to it waits for the next probe.
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
    assert.equal(stream.waitingRetries, 1);
    assert.equal(stream.wantsRetries(), false);
  } finally {
    mock.timers.reset();
  }
});

test('the due-retry poll does not query again every 10 ms while its streams are still busy with the due rows it finds', async () => {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 1_000_000 });
  try {
    const endpointId = randomUUID();
    const orgId = randomUUID();
    const rows = Array.from({ length: 1_000 }, () => ({
      org_id: orgId,
      endpoint_id: endpointId,
      id: randomUUID(),
      event_id: randomUUID(),
      event_received_at: new Date(1),
      retry_index: 1,
    }));
    const busy = new Set<string>(rows.map((row) => row.id));
    const stream = {
      endpointId,
      orgId,
      stoppedForGood: false,
      waitingRetries: 0,
      wantsRetries: () => true,
      isBusyWith: (id: string) => busy.has(id),
      addRetries: () => {},
    } as unknown as EndpointStream;
    let polls = 0;
    const sql = ((strings: TemplateStringsArray) => {
      if (strings.join('?').includes('from webhook_deliveries')) {
        polls++;
        return Promise.resolve(rows);
      }
      return Promise.resolve([]);
    }) as unknown as Sql;
    const poller = new RetryPoller(sql, () => [stream], { take: () => 1 << 20, give: () => {} });
    poller.schedule(Date.now());
    await advance(2_000, 10);
    poller.stop();
    // Every 10 ms this was 200 queries of 1 000 rows for nothing; now the regular second.
    assert.ok(polls >= 2 && polls <= 4, `${polls} polls in 2 s`);
  } finally {
    mock.timers.reset();
  }
});
