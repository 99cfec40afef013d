import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Webhook } from 'standardwebhooks';
import {
  TriggersApiError,
  createTriggersClient,
  inboxPages,
  orThrow,
  retrying,
  sendBatch,
  type TriggersClient,
} from '../client/src/index.js';
import { createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer, freePort } from './helpers/server.js';
import { webhookKit } from './helpers/webhook-kit.js';
import { waitFor } from './webhooks-receiver.js';

/**
 * The typed client (client/): its generated types match docs/openapi.json, and its example
 * programs, run as a user runs them (child processes configured by env), work against the real
 * server: the producer batches through 429 and 503, the consumer pages and acks the inbox empty,
 * the receiver verifies every delivery and refuses forged ones.
 */

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const EXAMPLES = path.join(ROOT, 'dist/client/examples');
const LOCAL_RECEIVERS = {
  WEBHOOK_ALLOW_HTTP: 'true',
  WEBHOOK_ALLOW_PRIVATE: 'true',
  WEBHOOK_RETRY_SCHEDULE: '200ms,200ms,200ms',
  WEBHOOK_TIMEOUT_MS: '2000',
};

let pg: TestPostgres;
let server: TestServer;
const kit = webhookKit(() => server.url);
const children: ChildProcess[] = [];

before(async () => {
  pg = await TestPostgres.shared();
  server = await TestServer.start({ databaseUrl: await pg.createDatabase('client'), workers: 1, env: LOCAL_RECEIVERS });
});

after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await kit.closeReceivers();
  await server?.stop();
  await pg?.stop();
});

interface Finished {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** An example program as a user runs it: `node dist/client/examples/<name>.js`, configured by env. */
class ExampleProcess {
  readonly proc: ChildProcess;
  stdout = '';
  stderr = '';
  private readonly closed: Promise<number | null>;

  constructor(name: string, env: Record<string, string>) {
    this.proc = spawn(process.execPath, [path.join(EXAMPLES, `${name}.js`)], {
      env: { ...process.env, ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    children.push(this.proc);
    this.proc.stdout!.on('data', (chunk: Buffer) => {
      this.stdout += chunk;
    });
    this.proc.stderr!.on('data', (chunk: Buffer) => {
      this.stderr += chunk;
    });
    // 'close', not 'exit': by then all of its output has been read.
    this.closed = new Promise((resolve) => this.proc.once('close', (code) => resolve(code)));
  }

  async finished(timeoutMs = 60_000): Promise<Finished> {
    let timer!: NodeJS.Timeout;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        reject(new Error(`example did not finish in ${timeoutMs} ms:\n${this.stdout}\n${this.stderr}`));
      }, timeoutMs);
    });
    try {
      const code = await Promise.race([this.closed, timeout]);
      return { code, stdout: this.stdout, stderr: this.stderr };
    } finally {
      clearTimeout(timer);
    }
  }
}

/** Runs an example program to its end, `input` on its stdin. */
function runExample(name: string, env: Record<string, string>, input = ''): Promise<Finished> {
  const example = new ExampleProcess(name, env);
  example.proc.stdin!.end(input);
  return example.finished();
}

/**
 * In front of the server: answers the first `failBatches` batch requests itself with 503 and
 * `Retry-After: 1` (never forwarded, so nothing stored, as a real 503 promises) and forwards the rest.
 */
async function flakyProxy(
  target: string,
  failBatches: number,
): Promise<{ url: string; injected: () => number; close(): Promise<void> }> {
  let injected = 0;
  const proxy = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      if (req.url === '/v1/events/batch' && injected < failBatches) {
        injected++;
        res.writeHead(503, { 'content-type': 'application/json', 'retry-after': '1' });
        res.end(
          JSON.stringify({
            error: { code: 'unavailable', message: 'injected by the test proxy', request_id: 'proxy' },
          }),
        );
        return;
      }
      const headers: Record<string, string> = {};
      for (const name of ['authorization', 'content-type'])
        if (typeof req.headers[name] === 'string') headers[name] = req.headers[name];
      const answer = await fetch(target + req.url, {
        method: req.method,
        headers,
        body: chunks.length > 0 ? Buffer.concat(chunks) : undefined,
      }).catch(
        () =>
          new Response('{"error":{"code":"bad_gateway","message":"the test proxy could not reach the server"}}', {
            status: 502,
          }),
      );
      const passed: Record<string, string> = {};
      for (const name of ['content-type', 'retry-after', 'x-request-id']) {
        const value = answer.headers.get(name);
        if (value !== null) passed[name] = value;
      }
      res.writeHead(answer.status, passed);
      res.end(Buffer.from(await answer.arrayBuffer()));
    });
  });
  await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    injected: () => injected,
    close: () =>
      new Promise<void>((resolve) => {
        proxy.closeAllConnections();
        proxy.close(() => resolve());
      }),
  };
}

test('createTriggersClient refuses bad options at once, and API errors carry their code', async () => {
  assert.throws(() => createTriggersClient({ baseUrl: 'localhost:8080', apiKey: 'zt_test_x_y' }), TypeError);
  assert.throws(() => createTriggersClient({ baseUrl: 'ftp://example.com', apiKey: 'zt_test_x_y' }), TypeError);
  assert.throws(() => createTriggersClient({ baseUrl: server.url, apiKey: '' }), TypeError);

  const wrongKey = createTriggersClient({ baseUrl: `${server.url}/`, apiKey: 'zt_test_nosuchkid_c2VjcmV0' });
  const error = await wrongKey
    .GET('/v1/inbox')
    .then(orThrow)
    .then(
      () => null,
      (thrown: unknown) => thrown,
    );
  assert.ok(error instanceof TriggersApiError, String(error));
  assert.equal(error.status, 401);
  assert.equal(error.code, 'unauthorized');
  assert.match(error.requestId ?? '', /.+/);

  const { key } = await createOrgWithKey(server.url);
  const client = createTriggersClient({ baseUrl: server.url, apiKey: key });
  const invalid = await client.GET('/v1/inbox', { params: { query: { limit: 0 } } });
  assert.equal(invalid.response.status, 422);
  assert.equal(invalid.error?.error.code, 'validation_failed');
  await assert.rejects(sendBatch(client, []), RangeError);
});

test('TriggersApiError reads Retry-After in seconds or as a date; retrying waits out only 429 and 503, a bounded number of times', async () => {
  const answer = (status: number, headers: Record<string, string>, body: unknown = null) =>
    TriggersApiError.fromResponse(new Response(null, { status, headers }), body);
  assert.equal(answer(429, { 'retry-after': '3' }).retryAfterSeconds, 3);
  const inAMinute = answer(503, { 'retry-after': new Date(Date.now() + 60_000).toUTCString() }).retryAfterSeconds!;
  assert.ok(inAMinute >= 58 && inAMinute <= 61, String(inAMinute));
  assert.equal(answer(503, { 'retry-after': 'soon' }).retryAfterSeconds, null);
  const bare = answer(502, { 'x-request-id': 'r-1' }, '<html>bad gateway</html>');
  assert.deepEqual([bare.code, bare.requestId, bare.retryable], ['http_502', 'r-1', false]);

  let calls = 0;
  const waits: number[] = [];
  const limited = retrying(
    async () => {
      calls++;
      throw answer(429, { 'retry-after': '0' });
    },
    { attempts: 3, onRetry: (_error, waitMs) => waits.push(waitMs) },
  );
  await assert.rejects(limited, (error: unknown) => error instanceof TriggersApiError && error.status === 429);
  assert.deepEqual([calls, waits], [3, [0, 0]]);
  calls = 0;
  await assert.rejects(
    retrying(async () => {
      calls++;
      throw answer(422, {});
    }),
    TriggersApiError,
  );
  assert.equal(calls, 1, 'a 422 is not retried');
  calls = 0;
  const recovered = await retrying(
    async () => {
      if (++calls === 1) throw answer(503, {});
      return 'stored';
    },
    { defaultWaitMs: 10 },
  );
  assert.deepEqual([recovered, calls], ['stored', 2], 'a 503 without Retry-After waits defaultWaitMs and retries');
});

test('the producer sends events in batches through 429 and 503; the consumer reads and acks all of them', async () => {
  const total = 2_500;
  // A burst of one batch: the second batch right after it waits for a 429's Retry-After.
  const { key } = await createOrgWithKey(server.url, { rate_limit_per_sec: 1_000, burst: 1_000 });
  const lines =
    Array.from({ length: total }, (_, i) =>
      JSON.stringify({
        type: i % 2 === 0 ? 'order.created' : 'order.paid',
        payload: { i },
        dedup_id: `client-test-${i}`,
      }),
    ).join('\n') + '\n';
  const proxy = await flakyProxy(server.url, 1);
  let produced: Finished;
  try {
    produced = await runExample('producer', { TRIGGERS_BASE_URL: proxy.url, TRIGGERS_API_KEY: key }, lines);
  } finally {
    await proxy.close();
  }
  assert.equal(produced.code, 0, produced.stderr);
  const summary =
    /producer: (\d+) events in (\d+) batches: (\d+) accepted, (\d+) duplicates, (\d+) rejected; waited (\d+)×429, (\d+)×503/.exec(
      produced.stdout,
    );
  assert.ok(summary, produced.stdout);
  const [, events, batches, accepted, duplicates, rejected, waited429, waited503] = summary.map(Number);
  assert.deepEqual(
    { events, batches, accepted, duplicates, rejected },
    { events: total, batches: 3, accepted: total, duplicates: 0, rejected: 0 },
  );
  assert.equal(waited503, 1, 'the injected 503 was waited out and the batch sent again');
  assert.ok(waited429! >= 1, `a batch beyond the burst waited out a 429: ${produced.stdout}`);
  assert.equal(proxy.injected(), 1);

  const consumed = await runExample('consumer', {
    TRIGGERS_BASE_URL: server.url,
    TRIGGERS_API_KEY: key,
    PAGE_SIZE: '200',
  });
  assert.equal(consumed.code, 0, consumed.stderr);
  const read = /consumer: (\d+) events in (\d+) pages, (\d+) acked; (.*)/.exec(consumed.stdout);
  assert.ok(read, consumed.stdout);
  assert.equal(Number(read[1]), total);
  assert.ok(Number(read[2]) >= Math.ceil(total / 200), consumed.stdout);
  assert.equal(Number(read[3]), total);
  assert.deepEqual(read[4]!.split(' ').sort(), ['order.created=1250', 'order.paid=1250']);

  const client = createTriggersClient({ baseUrl: server.url, apiKey: key });
  const left = orThrow(await client.GET('/v1/inbox'));
  assert.deepEqual(left.events, [], 'the inbox is empty once the consumer is done');
  assert.equal(left.has_more, false);
  const again = await runExample('consumer', { TRIGGERS_BASE_URL: server.url, TRIGGERS_API_KEY: key });
  assert.match(again.stdout, /consumer: 0 events in 1 pages, 0 acked/);

  // Re-running the producer over the same input (as after a crash) stores nothing twice.
  const rerun = await runExample(
    'producer',
    { TRIGGERS_BASE_URL: server.url, TRIGGERS_API_KEY: key, BATCH_SIZE: '500' },
    lines.split('\n').slice(0, 600).join('\n'),
  );
  assert.equal(rerun.code, 0, rerun.stderr);
  assert.match(rerun.stdout, /producer: 600 events in 2 batches: 0 accepted, 600 duplicates, 0 rejected/);
});

test('with POLL_MS the consumer keeps polling from its last cursor and stops on SIGTERM', async () => {
  const { key } = await createOrgWithKey(server.url);
  const client = createTriggersClient({ baseUrl: server.url, apiKey: key });
  await sendBatch(client, [{ type: 'poll.early', payload: {} }]);
  const consumer = new ExampleProcess('consumer', {
    TRIGGERS_BASE_URL: server.url,
    TRIGGERS_API_KEY: key,
    POLL_MS: '50',
    EVENT_TYPE: 'poll.*',
  });
  consumer.proc.stdin!.end();
  await waitFor('the first event acked', async () => orThrow(await client.GET('/v1/inbox')).events.length === 0);
  await sendBatch(client, [
    { type: 'poll.late', payload: {} },
    { type: 'poll.late', payload: {} },
    { type: 'other.kind', payload: {} },
  ]);
  await waitFor('the later events acked', async () => orThrow(await client.GET('/v1/inbox')).events.length === 1);
  consumer.proc.kill('SIGTERM');
  const done = await consumer.finished();
  assert.equal(done.code, 0, done.stderr);
  assert.match(done.stdout, /consumer: 3 events in \d+ pages, 3 acked; poll.early=1 poll.late=2/);
  assert.equal(orThrow(await client.GET('/v1/inbox')).events[0]!.type, 'other.kind', 'EVENT_TYPE filtered');
});

test('two group-worker examples share a consumer group: every event handled once, failures nacked and redelivered, a clean stop on SIGTERM', async () => {
  const { key } = await createOrgWithKey(server.url);
  const client = createTriggersClient({ baseUrl: server.url, apiKey: key });
  const env = {
    TRIGGERS_BASE_URL: server.url,
    TRIGGERS_API_KEY: key,
    GROUP: 'workers',
    CONCURRENCY: '8',
    FAIL_EVERY: '10',
  };
  // Both start at once: one creates the group, the other finds it taken (409) and goes on.
  const workers = [new ExampleProcess('group-worker', env), new ExampleProcess('group-worker', env)];
  for (const worker of workers) worker.proc.stdin!.end();
  await waitFor('both workers ready', () => workers.every((worker) => worker.stdout.includes('ready')), 30_000);
  // Sent while both wait in a long poll; every tenth event fails its first delivery.
  await sendBatch(
    client,
    Array.from({ length: 200 }, (_, i) => ({ type: 'work.item', payload: { i } })),
  );
  await waitFor(
    'the group drained',
    async () => {
      const group = orThrow(await client.GET('/v1/consumer-groups/{name}', { params: { path: { name: 'workers' } } }));
      return group.pending === 0 && group.dead === 0;
    },
    60_000,
    100,
  );
  for (const worker of workers) worker.proc.kill('SIGTERM');
  const totals = { received: 0, acked: 0, nacked: 0, handled: 0 };
  for (const worker of workers) {
    const done = await worker.finished(20_000);
    assert.equal(done.code, 0, done.stderr);
    const line = done.stdout.match(/group-worker: (\d+) received, (\d+) acked, (\d+) nacked;(?: work\.item=(\d+))?/);
    assert.ok(line, done.stdout);
    totals.received += Number(line[1]);
    totals.acked += Number(line[2]);
    totals.nacked += Number(line[3]);
    totals.handled += Number(line[4] ?? 0);
  }
  assert.deepEqual(totals, { received: 220, acked: 200, nacked: 20, handled: 200 });
});

test('the producer reports rejected events and unreadable lines and exits 1', async () => {
  const { key } = await createOrgWithKey(server.url);
  const input = ['{"type": "ok.event", "payload": {}}', 'not json', '', '{"type": "bad type!", "payload": {}}'].join(
    '\n',
  );
  const produced = await runExample('producer', { TRIGGERS_BASE_URL: server.url, TRIGGERS_API_KEY: key }, input);
  assert.equal(produced.code, 1);
  assert.match(produced.stdout, /producer: 2 events in 1 batches: 1 accepted, 0 duplicates, 1 rejected/);
  assert.match(produced.stderr, /line 2 is not JSON/);
  assert.match(produced.stderr, /line 4 rejected: .*validation_failed/);
});

test('the receiver example verifies every delivery with standardwebhooks and answers 400 to forged ones', async () => {
  const { key } = await createOrgWithKey(server.url);
  const client = createTriggersClient({ baseUrl: server.url, apiKey: key });
  const port = await freePort();
  const endpoint = orThrow(
    await client.POST('/v1/webhooks', {
      body: { url: `http://127.0.0.1:${port}/webhooks`, event_types: ['receiver.*'] },
    }),
  );
  const receiver = new ExampleProcess('receiver', {
    WEBHOOK_SECRET: endpoint.secret,
    PORT: String(port),
    HOST: '127.0.0.1',
  });
  receiver.proc.stdin!.end();
  await waitFor('the receiver to listen', () => receiver.stdout.includes('receiver: listening on'));

  const count = 20;
  const sent = await sendBatch(
    client,
    Array.from({ length: count }, (_, i) => ({ type: 'receiver.test', payload: { i, text: 'çà ✓ "quoted" \u2028' } })),
  );
  const ids = sent.results.map((result) =>
    result.status === 'rejected' ? assert.fail(JSON.stringify(result.error)) : result.id,
  );
  const deliveries = await kit.settledDeliveries(endpoint.id, key, ids);
  for (const delivery of deliveries) {
    assert.equal(delivery.status, 'succeeded', JSON.stringify(delivery));
    assert.deepEqual(
      delivery.attempts.map((attempt: any) => attempt.response_status),
      [204],
      'verified at the first attempt',
    );
  }
  for (const id of ids) assert.ok(receiver.stdout.includes(`receiver: verified ${id} receiver.test`), `${id} verified`);

  const hook = `http://127.0.0.1:${port}/webhooks`;
  const body = JSON.stringify({
    id: 'forged-1',
    type: 'receiver.test',
    payload: { steal: true },
    occurred_at: new Date().toISOString(),
    received_at: new Date().toISOString(),
  });
  const signed = (secret: string, content: string, at = new Date()) => ({
    'content-type': 'application/json',
    'webhook-id': 'forged-1',
    'webhook-timestamp': String(Math.floor(at.getTime() / 1000)),
    'webhook-signature': new Webhook(secret).sign('forged-1', at, content),
  });
  const otherSecret = `whsec_${Buffer.alloc(32, 7).toString('base64')}`;
  const forged = [
    { what: 'signed with another secret', headers: signed(otherSecret, body), body },
    { what: 'body altered after signing', headers: signed(endpoint.secret, body), body: body.replace('true', 'false') },
    { what: 'replayed 10 minutes late', headers: signed(endpoint.secret, body, new Date(Date.now() - 600_000)), body },
    { what: 'no signature headers', headers: { 'content-type': 'application/json' }, body },
  ];
  for (const attempt of forged) {
    const answer = await fetch(hook, { method: 'POST', headers: attempt.headers, body: attempt.body });
    assert.equal(answer.status, 400, attempt.what);
  }
  // The same request, signed with the endpoint's secret, passes: the 400s were the signatures.
  assert.equal((await fetch(hook, { method: 'POST', headers: signed(endpoint.secret, body), body })).status, 204);

  receiver.proc.kill('SIGTERM');
  const done = await receiver.finished();
  assert.equal(done.code, 0, done.stderr);
  assert.match(
    done.stdout,
    new RegExp(`receiver: ${count + 1} verified \\(${count + 1} events, 0 repeats\\), ${forged.length} rejected`),
  );
});

test('the inbox pager follows next_cursor until has_more is false', async () => {
  const { key } = await createOrgWithKey(server.url);
  const client = createTriggersClient({ baseUrl: server.url, apiKey: key });
  await sendBatch(
    client,
    Array.from({ length: 25 }, (_, i) => ({ type: i < 20 ? 'page.me' : 'other.type', payload: { i } })),
  );
  const pages = [];
  for await (const page of inboxPages(client, { type: 'page.*', limit: 7 })) pages.push(page);
  assert.deepEqual(
    pages.map((page) => page.events.length),
    [7, 7, 6],
  );
  assert.deepEqual(
    pages.flatMap((page) => page.events.map((event) => (event.payload as { i: number }).i)),
    Array.from({ length: 20 }, (_, i) => i),
  );
  // Polling from the last cursor finds what arrived after it, and only that.
  await sendBatch(client, [{ type: 'page.me', payload: { i: 20 } }]);
  const later = [];
  for await (const page of inboxPages(client, { type: 'page.*', cursor: pages.at(-1)!.next_cursor! }))
    later.push(...page.events);
  assert.deepEqual(
    later.map((event) => (event.payload as { i: number }).i),
    [20],
  );
});

/** Compile-time checks that the generated types are the API's, not `any` (never run). */
export function typeChecks(client: TriggersClient): void {
  // @ts-expect-error: no such route
  void client.GET('/v1/nowhere');
  // @ts-expect-error: an event needs a type
  void client.POST('/v1/events', { body: { payload: {} } });
  // @ts-expect-error: limit is a number
  void client.GET('/v1/inbox', { params: { query: { limit: '10' } } });
  // @ts-expect-error: ack takes ids
  void client.POST('/v1/ack', { body: { id: 'x' } });
}
