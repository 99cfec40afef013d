import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import { after, before, describe, test } from 'node:test';
import type { Sql } from '../src/db/connect.js';
import { call, createOrgWithKey, type ApiResponse } from './helpers/api.js';
import { childPids, commandLineOf, ingestUntil, sleep } from './helpers/load.js';
import { holdEventsLock, TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/**
 * Issue 8, reliability and abuse: overload, slow clients, hostile bodies. The other scenarios of
 * the issue live in cluster.test.ts, durability.test.ts, auth.test.ts, postgres-outage.test.ts,
 * fuzz.test.ts and the rate-limit tests; docs/RELIABILITY.md maps each guarantee to its test.
 */

let pg: TestPostgres;
let db: Sql;
let server: TestServer;
let base: string;

// Small per-worker queue, small batches and one flush at a time, so "far above capacity" is easy
// to reach. The batch size matters: a stalled flush holds its batch out of the queue, and a worker
// whose share of the 300 load connections all fit in that batch would have room in its queue.
const MAX_QUEUED_EVENTS = 100;
const MAX_BATCH_ROWS = 10;

before(async () => {
  pg = await TestPostgres.start();
  const url = await pg.createDatabase('reliability');
  db = pg.connect('reliability');
  server = await TestServer.start({
    databaseUrl: url,
    workers: 2,
    // A long flush timeout: the overload test blocks COPY with a lock for a few seconds, and a
    // timed-out flush is not what it is about.
    env: {
      MAX_QUEUED_EVENTS: String(MAX_QUEUED_EVENTS),
      MAX_BATCH_ROWS: String(MAX_BATCH_ROWS),
      FLUSH_CONCURRENCY: '1',
      FLUSH_TIMEOUT_MS: '60000',
    },
  });
  base = server.url;
});

after(async () => {
  await db?.end({ timeout: 1 });
  await server?.killAll();
  await pg?.stop();
});

const httpWorkers = () => childPids(server.proc.pid!).filter((pid) => commandLineOf(pid).includes('main.js'));

function rssBytes(pid: number): number {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

async function eventCount(orgId: string): Promise<number> {
  const [row] = await db`select count(*)::int as n from events where org_id = ${orgId}`;
  return row!.n;
}

async function statusOk(): Promise<void> {
  const status = await call(base, 'GET', '/status');
  assert.equal(status.status, 200, status.text);
  assert.equal(status.body.status, 'ok');
}

function expectError(response: ApiResponse, status: number, code: string) {
  assert.equal(response.status, status, response.text);
  assert.equal(response.body?.error?.code, code, response.text);
  assert.equal(response.body.error.request_id, response.headers.get('x-request-id'));
}

describe('overload', () => {
  test('offered load far above capacity gets fast 503s, memory stays bounded, and the server recovers', async () => {
    const { key, orgId } = await createOrgWithKey(base, { name: 'overload' });
    // Warm every worker's key cache and measure memory at rest.
    const warm = await Promise.all(
      Array.from({ length: 20 }, () =>
        call(base, 'POST', '/v1/events', {
          key,
          body: { type: 'warm', payload: {} },
          headers: { connection: 'close' },
        }),
      ),
    );
    assert.deepEqual(
      warm.map((r) => r.status),
      warm.map(() => 202),
    );
    const workers = httpWorkers();
    const baseline = new Map(workers.map((pid) => [pid, rssBytes(pid)]));
    const peak = new Map(baseline);
    const sampler = setInterval(() => {
      for (const pid of workers) peak.set(pid, Math.max(peak.get(pid)!, rssBytes(pid)));
    }, 200);

    // Storage stalls: a test transaction holds a lock that COPY into events must wait for.
    const lock = await holdEventsLock(db);

    // 300 concurrent clients against 2 workers x 100 queued events: most must be refused at once.
    let stopLoad!: () => void;
    const load = ingestUntil(
      base,
      key,
      300,
      new Promise<void>((resolve) => {
        stopLoad = resolve;
      }),
    );
    let probes: ApiResponse[] | null = null;
    let answered: Promise<ApiResponse[]> | null = null;
    try {
      await sleep(2000);
      // While storage is stalled and the queues are full, refusals are immediate, not queued:
      // each probe is answered (503, Retry-After) while the lock is still held. A probe that
      // waits for storage instead must not hold the lock itself: give up on it after 3 s.
      answered = Promise.all(
        Array.from({ length: 20 }, () =>
          call(base, 'POST', '/v1/events', {
            key,
            body: { type: 'probe', payload: {} },
            headers: { connection: 'close' },
          }),
        ),
      );
      probes = await Promise.race([answered, sleep(3000).then(() => null)]);
      await sleep(1000);
    } finally {
      lock.release();
      await lock.done;
    }
    try {
      await sleep(2000); // the queued events flush; the load goes on against a free storage
    } finally {
      stopLoad();
    }
    const { accepted, statuses } = await load;
    clearInterval(sampler);

    const outcomes = JSON.stringify(Object.fromEntries(statuses));
    const late =
      probes === null
        ? (await answered!).map((probe) => `${probe.status} in ${probe.headers.get('x-response-time')}`)
        : [];
    assert.ok(
      probes !== null,
      `a probe waited for the stalled storage instead of being refused at once (late answers: ${late})`,
    );
    for (const probe of probes) {
      expectError(probe, 503, 'unavailable');
      assert.match(probe.headers.get('retry-after') ?? '', /^\d+$/);
    }
    for (const status of statuses.keys())
      assert.ok(status === 202 || status === 503, `unexpected outcome ${status}: ${outcomes}`);
    assert.ok((statuses.get(503) ?? 0) > 300, `too few refusals: ${outcomes}`);
    assert.ok((statuses.get(202) ?? 0) > 100, `too few accepted after the stall: ${outcomes}`);

    // Bounded queues: no worker's memory grew by more than a generous 200 MiB.
    for (const pid of workers) {
      const growth = peak.get(pid)! - baseline.get(pid)!;
      assert.ok(growth < 200 * 1024 * 1024, `worker ${pid} grew by ${Math.round(growth / 1048576)} MiB under overload`);
    }

    // Recovered: normal answers again, and exactly the 202'd events are stored (no refused one).
    const after = await call(base, 'POST', '/v1/events', { key, body: { type: 'after', payload: {} } });
    assert.equal(after.status, 202, after.text);
    await statusOk();
    assert.equal(await eventCount(orgId), 20 + accepted.length + 1);
  });
});

describe('slow clients', () => {
  test('500 clients trickling a byte every 2 s do not stop normal clients being served', async () => {
    const slow = await createOrgWithKey(base, { name: 'slow' });
    const normal = await createOrgWithKey(base, { name: 'normal' });
    const sockets: net.Socket[] = [];
    const timers: NodeJS.Timeout[] = [];
    try {
      for (let i = 0; i < 500; i++) {
        const socket = net.connect(server.port, '127.0.0.1');
        socket.on('error', () => {});
        sockets.push(socket);
        // Half never finish their headers; half send complete headers, then a body byte by byte.
        const start =
          i % 2 === 0
            ? 'POST /v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nX-Slow: '
            : `POST /v1/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${slow.key}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"type":"slow","payload":{"s":"`;
        socket.write(start);
        timers.push(
          setInterval(() => {
            if (!socket.destroyed) socket.write('a');
          }, 2000),
        );
        if (i % 50 === 49) await sleep(20);
      }

      // Normal clients, on fresh connections, keep getting 202 while the slow ones trickle.
      const deadline = Date.now() + 15_000;
      let served = 0;
      while (Date.now() < deadline) {
        const batch = await Promise.all(
          Array.from({ length: 5 }, () =>
            call(base, 'POST', '/v1/events', {
              key: normal.key,
              body: { type: 'normal', payload: {} },
              headers: { connection: 'close' },
            }),
          ),
        );
        for (const response of batch) assert.equal(response.status, 202, response.text);
        served += batch.length;
        await sleep(250);
      }
      assert.ok(served >= 50, `only ${served} normal requests served in 15 s`);
    } finally {
      for (const timer of timers) clearInterval(timer);
      for (const socket of sockets) socket.destroy();
    }
    await statusOk();
    // No trickled request completed, so nothing of theirs is stored.
    assert.equal(await eventCount(slow.orgId), 0);
  });
});

describe('hostile bodies (beyond those in ingest.test.ts)', () => {
  let key: string;
  let orgId: string;
  const headers = { 'content-type': 'application/json' };
  const post = (path: string, raw: string | Buffer, extra: Record<string, string> = headers) =>
    call(base, 'POST', path, { key, raw, headers: extra });

  before(async () => {
    ({ key, orgId } = await createOrgWithKey(base, { name: 'hostile' }));
  });

  test('huge strings and arrays: stored intact within the limits, 413 beyond them', async () => {
    const bigString = 'é'.repeat(100_000); // 200 000 bytes of UTF-8, under 256 KiB
    const stringOk = await post('/v1/events', JSON.stringify({ type: 'big.string', payload: { s: bigString } }));
    assert.equal(stringOk.status, 202, stringOk.text);
    const got = await call(base, 'GET', `/v1/events/${stringOk.body.id}`, { key });
    assert.equal(got.body.payload.s, bigString);

    const bigArray = Array.from({ length: 40_000 }, (_, i) => i % 10); // ~80 KB serialised
    const arrayOk = await post('/v1/events', JSON.stringify({ type: 'big.array', payload: { a: bigArray } }));
    assert.equal(arrayOk.status, 202, arrayOk.text);
    assert.deepEqual((await call(base, 'GET', `/v1/events/${arrayOk.body.id}`, { key })).body.payload.a, bigArray);

    const before = await eventCount(orgId);
    // Payload over 256 KiB but body under the 512 KiB request limit: 413 from validation.
    expectError(
      await post('/v1/events', JSON.stringify({ type: 'a', payload: { a: Array(140_000).fill(1) } })),
      413,
      'payload_too_large',
    );
    // Body over the 512 KiB request limit: 413 while streaming.
    expectError(
      await post('/v1/events', JSON.stringify({ type: 'a', payload: { s: 'x'.repeat(600_000) } })),
      413,
      'payload_too_large',
    );
    // A batch over 8 MiB: 413. A batch item over 256 KiB: that item is rejected, the others stored.
    expectError(
      await post(
        '/v1/events/batch',
        JSON.stringify({ events: [{ type: 'a', payload: { s: 'x'.repeat(9 * 1024 * 1024) } }] }),
      ),
      413,
      'payload_too_large',
    );
    const mixed = await post(
      '/v1/events/batch',
      JSON.stringify({
        events: [
          { type: 'ok.one', payload: {} },
          { type: 'too.big', payload: { s: 'x'.repeat(300 * 1024) } },
          { type: 'ok.two', payload: {} },
        ],
      }),
    );
    assert.equal(mixed.status, 200, mixed.text);
    assert.deepEqual(
      mixed.body.results.map((r: { status: string }) => r.status),
      ['accepted', 'rejected', 'accepted'],
    );
    assert.equal(mixed.body.results[1].error.code, 'payload_too_large');
    assert.equal(await eventCount(orgId), before + 2);
  });

  test('duplicate keys: the last one wins (as JSON.parse and most JSON servers do)', async () => {
    const response = await post(
      '/v1/events',
      '{"type":"dup.first","type":"dup.last","payload":{"k":1,"k":2},"payload":{"k":3,"k":4}}',
    );
    assert.equal(response.status, 202, response.text);
    const got = await call(base, 'GET', `/v1/events/${response.body.id}`, { key });
    assert.equal(got.body.type, 'dup.last');
    assert.deepEqual(got.body.payload, { k: 4 });
  });

  test('__proto__ inside a payload is plain data; at the top level or in an envelope it is an unknown field', async () => {
    const inPayload = await post(
      '/v1/events',
      '{"type":"proto","payload":{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}}',
    );
    assert.equal(inPayload.status, 202, inPayload.text);
    const got = await call(base, 'GET', `/v1/events/${inPayload.body.id}`, { key });
    assert.deepEqual(
      JSON.parse(got.text).payload,
      JSON.parse('{"__proto__":{"polluted":true},"constructor":{"prototype":{"x":1}}}'),
    );
    assert.equal(({} as Record<string, unknown>).polluted, undefined);

    const before = await eventCount(orgId);
    expectError(
      await post('/v1/events/batch', '{"events":[{"type":"a","payload":{}}],"__proto__":{"x":1}}'),
      422,
      'validation_failed',
    );
    const item = await post('/v1/events/batch', '{"events":[{"type":"a","payload":{},"__proto__":{"x":1}}]}');
    assert.equal(item.status, 200, item.text);
    assert.equal(item.body.results[0].status, 'rejected');
    assert.equal(item.body.results[0].error.details[0].field, '__proto__');
    assert.equal(await eventCount(orgId), before);
    await statusOk();
  });

  test('batch variants: deep nesting, NUL, lone surrogates, out-of-range numbers, invalid UTF-8', async () => {
    const before = await eventCount(orgId);
    const deep = '['.repeat(100_000) + ']'.repeat(100_000);
    // Deep where the envelope's array should be: 422. A deep array as the only item: that item is
    // rejected (not an object). Deep items are rejected one by one, the rest stored.
    expectError(await post('/v1/events/batch', '{"events":{"a":' + deep + '}}'), 422, 'validation_failed');
    const deepItem = await post('/v1/events/batch', '{"events":' + deep + '}');
    assert.equal(deepItem.status, 200, deepItem.text);
    assert.deepEqual([deepItem.body.accepted, deepItem.body.rejected], [0, 1]);
    const items = await post(
      '/v1/events/batch',
      '{"events":[' +
        [
          '{"type":"fine","payload":{}}',
          '{"type":"deep","payload":{"a":' + deep + '}}',
          '{"type":"nul","payload":{"s":"a\\u0000b"}}',
          '{"type":"surrogate","payload":{"s":"\\udfff"}}',
          '{"type":"range","payload":{"n":-1e400}}',
          '{"type":"nul\\u0000type","payload":{}}',
          '{"type":"fine","payload":{},"dedup_id":"x\\u0000"}',
        ].join(',') +
        ']}',
    );
    assert.equal(items.status, 200, items.text);
    assert.deepEqual(
      items.body.results.map((r: { status: string }) => r.status),
      ['accepted', 'rejected', 'rejected', 'rejected', 'rejected', 'rejected', 'rejected'],
    );
    for (const result of items.body.results.slice(1)) assert.equal(result.error.code, 'validation_failed');
    const invalidUtf8 = Buffer.concat([
      Buffer.from('{"events":[{"type":"a","payload":{"s":"'),
      Buffer.from([0xc3, 0x28]),
      Buffer.from('"}}]}'),
    ]);
    expectError(await post('/v1/events/batch', invalidUtf8), 400, 'invalid_json');
    // A raw (unescaped) NUL byte or control character inside a JSON string is not JSON.
    expectError(await post('/v1/events', Buffer.from('{"type":"a","payload":{"s":"a\u0000b"}}')), 400, 'invalid_json');
    expectError(
      await post('/v1/events/batch', Buffer.from('{"events":[{"type":"a","payload":{"s":"a\u0001b"}}]}')),
      400,
      'invalid_json',
    );
    assert.equal(await eventCount(orgId), before + 1);
  });

  test('wrong content types: 415 (missing, near misses, form, multipart), for single and batch', async () => {
    const raw = JSON.stringify({ type: 'a', payload: {} });
    const before = await eventCount(orgId);
    for (const path of ['/v1/events', '/v1/events/batch']) {
      for (const type of [
        'application/jsonx',
        'text/json',
        'application/json-patch+json',
        'multipart/form-data; boundary=x',
        'application/x-www-form-urlencoded',
        'application',
      ]) {
        expectError(await post(path, raw, { 'content-type': type }), 415, 'unsupported_media_type');
      }
      // No Content-Type at all.
      expectError(await call(base, 'POST', path, { key, raw: Buffer.from(raw) }), 415, 'unsupported_media_type');
    }
    // Case and parameters do not matter.
    assert.equal((await post('/v1/events', raw, { 'content-type': 'Application/JSON ; charset=UTF-8' })).status, 202);
    assert.equal(await eventCount(orgId), before + 1);
  });

  test('truncated bodies (Content-Length larger than what is sent, then close) store nothing, server stays up', async () => {
    const before = await eventCount(orgId);
    const single = JSON.stringify({ type: 'truncated', payload: { s: 'x'.repeat(1000) } });
    const batch = JSON.stringify({
      events: Array.from({ length: 50 }, (_, i) => ({ type: 'truncated', payload: { i } })),
    });
    const sends: Array<Promise<string>> = [];
    for (const [path, body] of [
      ['/v1/events', single],
      ['/v1/events/batch', batch],
    ] as const) {
      for (const cut of [0, 1, Math.floor(body.length / 2), body.length - 1]) {
        sends.push(
          new Promise<string>((resolve) => {
            const socket = net.connect(server.port, '127.0.0.1');
            let received = '';
            socket.on('data', (data) => {
              received += data.toString();
            });
            socket.on('error', () => {});
            socket.on('close', () => resolve(received));
            socket.on('connect', () => {
              socket.write(
                `POST ${path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\nContent-Type: application/json\r\n` +
                  `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n` +
                  body.slice(0, cut),
              );
              setTimeout(() => socket.end(), 300);
            });
          }),
        );
      }
    }
    const answers = await Promise.all(sends);
    // Nothing may be answered as accepted: the server never saw a whole body.
    for (const answer of answers) assert.doesNotMatch(answer, /^HTTP\/1\.1 20/, answer);
    await sleep(500);
    assert.equal(await eventCount(orgId), before);
    await statusOk();
    const ok = await post('/v1/events', single);
    assert.equal(ok.status, 202);
  });
});
