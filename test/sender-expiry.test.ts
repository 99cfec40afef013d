import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { EXPIRE_PER_TURN, WebhookSender } from '../src/delivery/sender.js';

/**
 * Sends that started together time out together. The sender settles them as timeouts a few per
 * turn of the event loop (src/delivery/sender.ts), with I/O read in between: hundreds in one turn
 * (a thousand hanging endpoints of one org, bench:webhooks noisy) stalled the delivery process
 * for up to 190 ms, and every other endpoint's answers waited unread meanwhile.
 */

const TIMEOUT_MS = 300;
const SENDS = 64;

test(`${SENDS} sends to a receiver that never answers, started at once, are settled at most ${EXPIRE_PER_TURN} per turn of the event loop`, async () => {
  const server = net.createServer((socket) => socket.resume());
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const sender = new WebhookSender({ timeoutMs: TIMEOUT_MS, allowPrivate: true });
  // One count per turn: an immediate that queues the next one runs once in each check phase.
  let turn = 0;
  let ticking = true;
  const tick = () => { turn++; if (ticking) setImmediate(tick); };
  setImmediate(tick);
  try {
    const target = sender.target(`http://127.0.0.1:${(server.address() as net.AddressInfo).port}/hook`);
    const settledIn = await Promise.all(Array.from({ length: SENDS }, () =>
      sender.send(target, {}, '{"id":"x"}', () => {}).then((outcome) => ({ outcome, turn }))));
    for (const { outcome } of settledIn) assert.equal(outcome.error, `timed out after ${TIMEOUT_MS} ms`);
    const perTurn = new Map<number, number>();
    for (const { turn: at } of settledIn) perTurn.set(at, (perTurn.get(at) ?? 0) + 1);
    const most = Math.max(...perTurn.values());
    assert.ok(most <= EXPIRE_PER_TURN, `${most} attempts settled in one turn (${[...perTurn.values()].join(', ')})`);
  } finally {
    ticking = false;
    await sender.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});
