import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { WebhookSender } from '../src/delivery/sender.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * WEBHOOK_TIMEOUT_MS bounds a whole attempt: connect, headers and the response body. Receivers
 * on 127.0.0.1 that misbehave in each way (200 then one byte a second, no headers ever, a TCP
 * accept and silence), first against the sender alone, then through the real server, where the
 * attempt must be recorded as a timeout near the deadline and retried on the schedule.
 */

const TIMEOUT_MS = 1_000;
// The deadline fires on a timer in a busy process on a shared machine: generous, but well below
// the 6 s and more that a dripping receiver held an attempt before.
const SLACK_MS = 1_500;

/** A raw TCP receiver that does `behave` with each connection, and records when each closes. */
class RawReceiver {
  readonly closedAt: number[] = [];
  readonly opened: number[] = [];
  private readonly sockets = new Set<net.Socket>();
  private readonly timers = new Set<NodeJS.Timeout>();
  private constructor(private readonly server: net.Server) {}

  static async start(behave: (socket: net.Socket, receiver: RawReceiver) => void): Promise<RawReceiver> {
    let receiver: RawReceiver;
    const server = net.createServer((socket) => {
      receiver.opened.push(Date.now());
      receiver.sockets.add(socket);
      socket.on('error', () => {});
      socket.on('close', () => {
        receiver.closedAt.push(Date.now());
        receiver.sockets.delete(socket);
      });
      behave(socket, receiver);
    });
    receiver = new RawReceiver(server);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  /** Reads whatever is left, so that a close by the peer shows (a paused socket never sees it). */
  drain(): void {
    for (const socket of this.sockets) socket.resume();
  }

  every(ms: number, tick: () => void): void {
    const timer = setInterval(tick, ms);
    this.timers.add(timer);
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as net.AddressInfo).port}/hook`;
  }

  async close(): Promise<void> {
    for (const timer of this.timers) clearInterval(timer);
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** 200 with a long content-length at once (after the request arrives), then one byte a second. */
const dripping = (socket: net.Socket, receiver: RawReceiver) => {
  let answered = false;
  socket.on('data', () => {
    if (answered) return;
    answered = true;
    socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 1000\r\n\r\n');
    receiver.every(1_000, () => {
      if (!socket.destroyed) socket.write('x');
    });
  });
};
/** Reads the request and never answers. */
const noHeaders = (socket: net.Socket) => {
  socket.resume();
};
/** Accepts the connection and never reads or writes. */
const silent = (socket: net.Socket) => {
  socket.pause();
};

const receivers: RawReceiver[] = [];
async function receiver(behave: (socket: net.Socket, receiver: RawReceiver) => void): Promise<RawReceiver> {
  const started = await RawReceiver.start(behave);
  receivers.push(started);
  return started;
}

const KINDS = [
  { name: 'answers 200 and drips its body one byte a second', behave: dripping },
  { name: 'never answers headers', behave: noHeaders },
  { name: 'accepts the connection and never speaks', behave: silent },
];

let pg: TestPostgres;
let server: TestServer;

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('deadline'),
    workers: 1,
    env: {
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_TIMEOUT_MS: String(TIMEOUT_MS),
      WEBHOOK_RETRY_SCHEDULE: '2s,1h',
    },
  });
});

after(async () => {
  for (const open of receivers) await open.close();
  await server?.stop();
  await pg?.stop();
});

for (const kind of KINDS) {
  test(`the sender: a receiver that ${kind.name} is a timeout at WEBHOOK_TIMEOUT_MS, and its socket is closed`, {
    timeout: 15_000,
  }, async () => {
    const hook = await receiver(kind.behave);
    const sender = new WebhookSender({ timeoutMs: TIMEOUT_MS, allowPrivate: true });
    try {
      const started = Date.now();
      const outcome = await sender.send(sender.target(hook.url), {}, '{"id":"x"}', () => {});
      const took = Date.now() - started;
      assert.equal(outcome.status, null, JSON.stringify(outcome));
      assert.equal(outcome.error, `timed out after ${TIMEOUT_MS} ms`);
      assert.ok(took >= TIMEOUT_MS - 50 && took < TIMEOUT_MS + SLACK_MS, `settled after ${took} ms`);
      // (undici opens a fresh idle connection after an abort: only the attempt's own is checked.)
      hook.drain();
      await waitFor('the receiver to see its connection closed', () => hook.closedAt.length > 0, SLACK_MS);
      assert.ok(
        hook.closedAt[0]! - started < TIMEOUT_MS + SLACK_MS,
        `the socket closed ${hook.closedAt[0]! - started} ms after the send began`,
      );
    } finally {
      await sender.close();
    }
  });
}

test('the sender: a huge response body is read only up to a small cap, and the answer counts', async () => {
  let written = 0;
  const big = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(1024 * 1024 * 1024) });
      const chunk = Buffer.alloc(64 * 1024, 120);
      const pump = () => {
        while (!res.destroyed && written < 1024 * 1024 * 1024 && res.write(chunk)) written += chunk.length;
        if (!res.destroyed && written < 1024 * 1024 * 1024) res.once('drain', pump);
      };
      pump();
    });
  });
  await new Promise<void>((resolve) => big.listen(0, '127.0.0.1', resolve));
  const sender = new WebhookSender({ timeoutMs: 5_000, allowPrivate: true });
  try {
    const outcome = await sender.send(
      sender.target(`http://127.0.0.1:${(big.address() as net.AddressInfo).port}/`),
      {},
      '{}',
      () => {},
    );
    assert.equal(outcome.status, 200, JSON.stringify(outcome));
    assert.equal(outcome.error, null);
    await new Promise((resolve) => setTimeout(resolve, 200));
    assert.ok(written < 64 * 1024 * 1024, `the receiver got to write ${written} bytes`);
  } finally {
    await sender.close();
    big.closeAllConnections();
    await new Promise<void>((resolve) => big.close(() => resolve()));
  }
});

for (const kind of KINDS) {
  test(`the server: a receiver that ${kind.name} gets a timeout attempt recorded near the deadline, and a retry on the schedule`, async () => {
    const hook = await receiver(kind.behave);
    const { key } = await createOrgWithKey(server.url);
    const created = await call(server.url, 'POST', '/v1/webhooks', { key, body: { url: hook.url } });
    assert.equal(created.status, 201, created.text);
    const sent = await call(server.url, 'POST', '/v1/events', {
      key,
      body: { type: 'deadline.test', payload: { kind: kind.name } },
    });
    assert.equal(sent.status, 202, sent.text);
    const acceptedAt = Date.now();
    let recordedAt = 0;
    const delivery = await waitFor(
      'the first attempt to be recorded',
      async () => {
        const page = await call(server.url, 'GET', `/v1/webhooks/${created.body.id}/deliveries`, { key });
        const found = page.body.deliveries?.[0];
        if (found) recordedAt = Date.now();
        return found;
      },
      TIMEOUT_MS + SLACK_MS + 5_000,
      50,
    );
    const attempt = delivery.attempts[0];
    assert.equal(delivery.status, 'failed', JSON.stringify(delivery));
    assert.equal(attempt.response_status, null);
    assert.equal(attempt.error, `timed out after ${TIMEOUT_MS} ms`);
    assert.ok(
      attempt.latency_ms >= TIMEOUT_MS - 50 && attempt.latency_ms < TIMEOUT_MS + SLACK_MS,
      `latency_ms ${attempt.latency_ms}`,
    );
    assert.ok(
      recordedAt - acceptedAt < TIMEOUT_MS + SLACK_MS + 1_000,
      `recorded ${recordedAt - acceptedAt} ms after the 202`,
    );
    // The retry schedule's first wait is 2 s (±20%) after the attempt.
    const wait = Date.parse(delivery.next_attempt_at) - Date.parse(attempt.at);
    assert.ok(wait >= 1_500 && wait <= 2_500 + TIMEOUT_MS + 100, `next attempt ${wait} ms after the first began`);
    await waitFor('the retry to go out', () => hook.opened.length >= 2, 10_000);
    const again = await waitFor(
      'the retry to be recorded',
      async () => {
        const page = await call(server.url, 'GET', `/v1/webhooks/${created.body.id}/deliveries`, { key });
        const found = page.body.deliveries?.[0];
        return found?.attempts.length >= 2 ? found : null;
      },
      10_000,
      100,
    );
    assert.equal(again.attempts[1].error, `timed out after ${TIMEOUT_MS} ms`);
    assert.equal(again.status, 'failed');
  });
}
