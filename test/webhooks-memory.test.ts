import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { workerPids } from './helpers/processes.js';
import { TestServer } from './helpers/server.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * The event bodies a delivery process holds are bounded in bytes (DELIVERY_BUFFER_BYTES, 64 MiB
 * by default; WEBHOOK_ENDPOINT_BUFFER_BYTES, 8 MiB, per endpoint), not only in events: a read
 * used to take 500 events whatever their size, so four endpoints behind on 256 KiB payloads
 * held 4 × 125 MiB, and sent bodies stayed in memory until 1 024 had been sent.
 *
 * Measured as the delivery process's peak resident memory, VmHWM in /proc/<pid>/status: the
 * kernel's own high-water mark, so no sampling can miss a peak, and it counts everything the
 * process held (the V8 heap, where the bodies live as strings, and the Postgres client's
 * buffers outside it), which a heap gauge would not.
 */

const ENDPOINTS = 4;
const BATCHES = 15;
const PER_BATCH = 28; // 28 × 256 KiB stays under the 8 MiB batch body limit
const PAYLOAD = 'x'.repeat(256 * 1024 - 64);
// Holding the backlog: the process's budget (64 MiB) plus what a Node process reading from
// Postgres needs besides (its client's buffers, the garbage collector's lag). Without the byte
// bounds every stream read all 420 events, and the peak grew by more than the backlog (420 MiB).
const MAX_BACKLOG_GROWTH_MIB = 200;
// Sending it: every body is read once and copied once into its request (undici); the peak then
// follows the garbage collector and the allocator more than what is live. A ceiling only.
const MAX_DRAIN_GROWTH_MIB = 400;

let pg: TestPostgres;
let server: TestServer;
const receivers: http.Server[] = [];

before(async () => {
  pg = await TestPostgres.start();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('memory'),
    workers: 1,
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_ALLOW_PRIVATE: 'true', WEBHOOK_TIMEOUT_MS: '120000' },
  });
});

after(async () => {
  for (const receiver of receivers) {
    receiver.closeAllConnections();
    await new Promise<void>((resolve) => receiver.close(() => resolve()));
  }
  await server?.stop();
  await pg?.stop();
});

interface CountingReceiver {
  url: string;
  ids: Set<string>;
  /** Answers wait here while the burst is ingested, so that the backlog builds up in the delivery process. */
  parked: http.ServerResponse[] | null;
}

/** Records each webhook-id and keeps no body. */
async function countingReceiver(): Promise<CountingReceiver> {
  const hook: CountingReceiver = { url: '', ids: new Set(), parked: [] };
  const receiver = http.createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      hook.ids.add(String(req.headers['webhook-id']));
      if (hook.parked) hook.parked.push(res);
      else res.end('ok');
    });
  });
  receivers.push(receiver);
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  hook.url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
  return hook;
}

function memoryKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)![1]);
}

test(`a backlog of 256 KiB events at ${ENDPOINTS} endpoints keeps the delivery process near its byte budget, and everything arrives`, async () => {
  const [deliveryPid] = workerPids(server.proc.pid!, 'delivery');
  assert.ok(deliveryPid, 'the delivery process');
  const { key } = await createOrgWithKey(server.url);
  const hooks: CountingReceiver[] = [];
  for (let i = 0; i < ENDPOINTS; i++) {
    const hook = await countingReceiver();
    hooks.push(hook);
    // One request at a time, held by the receiver: nearly every event waits in the delivery process.
    const created = await call(server.url, 'POST', '/v1/webhooks', { key, body: { url: hook.url, max_in_flight: 1 } });
    assert.equal(created.status, 201, created.text);
  }
  await new Promise((resolve) => setTimeout(resolve, 1_000));
  const restingKiB = memoryKiB(deliveryPid, 'VmRSS');

  const ids: string[] = [];
  for (let b = 0; b < BATCHES; b++) {
    const events = Array.from({ length: PER_BATCH }, (_, i) => ({ type: 'big.event', payload: { i, blob: PAYLOAD } }));
    const response = await call(server.url, 'POST', '/v1/events/batch', { key, body: { events } });
    assert.equal(response.status, 200, response.text);
    assert.equal(response.body.accepted, PER_BATCH, response.text);
    ids.push(...response.body.results.map((result: { id: string }) => result.id));
  }
  // Wake-ups read the events as they commit; give the last reads time to finish.
  await new Promise((resolve) => setTimeout(resolve, 3_000));
  const backlogPeakMiB = (memoryKiB(deliveryPid, 'VmHWM') - restingKiB) / 1024;

  for (const hook of hooks) {
    for (const res of hook.parked!.splice(0)) res.end('ok');
    hook.parked = null;
  }
  await waitFor(
    'every endpoint to get every event',
    () => hooks.every((hook) => ids.every((id) => hook.ids.has(id))),
    180_000,
    200,
  );
  const drainPeakMiB = (memoryKiB(deliveryPid, 'VmHWM') - restingKiB) / 1024;
  process.stderr.write(
    `delivery process: ${(restingKiB / 1024).toFixed(0)} MiB at rest; peak +${backlogPeakMiB.toFixed(0)} MiB holding the backlog ` +
      `(${ENDPOINTS} × ${ids.length} events of 256 KiB = ${((ENDPOINTS * ids.length) / 4).toFixed(0)} MiB), +${drainPeakMiB.toFixed(0)} MiB once all were sent\n`,
  );
  assert.ok(
    backlogPeakMiB < MAX_BACKLOG_GROWTH_MIB,
    `holding the backlog, the delivery process's peak grew by ${backlogPeakMiB.toFixed(0)} MiB (limit ${MAX_BACKLOG_GROWTH_MIB})`,
  );
  assert.ok(
    drainPeakMiB < MAX_DRAIN_GROWTH_MIB,
    `sending the backlog, the delivery process's peak grew by ${drainPeakMiB.toFixed(0)} MiB (limit ${MAX_DRAIN_GROWTH_MIB})`,
  );
});
