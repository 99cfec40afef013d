import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { call, callOnNewConnection, createOrgWithKey, produceMixed, type ProducedOrg } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/**
 * Consumer groups (API.md §4b) against the real server: two HTTP workers whose flushes overlap and
 * commit out of order, long polls woken from the other worker, a SIGKILL of every process, and a
 * consumer process killed while it holds leases.
 */

let pg: TestPostgres;
let databaseUrl: string;
let server: TestServer;

before(async () => {
  pg = await TestPostgres.start();
  databaseUrl = await pg.createDatabase('groups_server');
  server = await TestServer.start({ databaseUrl, workers: 2 });
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function receive(base: string, key: string, name: string, body: Record<string, unknown> = {}) {
  const response = await call(base, 'POST', `/v1/consumer-groups/${name}/receive`, { key, body });
  assert.equal(response.status, 200, response.text);
  return response.body.messages as Array<{ event: { id: string }; delivery_count: number }>;
}

async function ack(base: string, key: string, name: string, ids: string[]) {
  const response = await call(base, 'POST', `/v1/consumer-groups/${name}/ack`, { key, body: { ids } });
  assert.equal(response.status, 200, response.text);
  assert.deepEqual(response.body.not_found, []);
}

async function createGroup(base: string, key: string, body: Record<string, unknown>) {
  const response = await call(base, 'POST', '/v1/consumer-groups', { key, body });
  assert.equal(response.status, 201, response.text);
}

test('every group sees every accepted event, none twice, while 8 producers commit out of order through two workers', {
  timeout: 240_000,
}, async () => {
  const base = server.url;
  const { key } = await createOrgWithKey(base, { name: 'groups no-skip' });
  const org: ProducedOrg = { key, accepted: new Set() };
  // One consumer acking each page, and three competing consumers sharing a second group.
  await createGroup(base, key, { name: 'solo', start: 'earliest', visibility_timeout_s: 120 });
  await createGroup(base, key, { name: 'team', start: 'earliest', visibility_timeout_s: 120 });
  let producing = true;
  const consume = async (name: string, seen: string[], max: number) => {
    const deadline = Date.now() + 180_000;
    while (Date.now() < deadline) {
      const messages = await receive(base, key, name, { max });
      const ids = messages.map((message) => message.event.id);
      seen.push(...ids);
      if (ids.length > 0) await ack(base, key, name, ids);
      else if (!producing) {
        const shown = await call(base, 'GET', `/v1/consumer-groups/${name}`, { key });
        if (shown.body.pending === 0) return;
        await sleep(5);
      } else await sleep(2);
    }
  };
  const solo: string[] = [];
  const team: string[] = [];
  const consumers = [consume('solo', solo, 41), ...Array.from({ length: 3 }, () => consume('team', team, 17))];
  await Promise.all(
    Array.from({ length: 8 }, (_, producer) =>
      produceMixed(() => base, [org], producer, { requests: 100, batchEvery: 4, batchSize: 25 }),
    ),
  );
  producing = false;
  await Promise.all(consumers);
  assert.ok(org.accepted.size > 500, `only ${org.accepted.size} accepted`);
  for (const [name, seen] of [
    ['solo', solo],
    ['team', team],
  ] as const) {
    const set = new Set(seen);
    const missed = [...org.accepted].filter((id) => !set.has(id));
    assert.equal(
      missed.length,
      0,
      `${name} missed ${missed.length} of ${org.accepted.size}, e.g. ${missed.slice(0, 3)}`,
    );
    assert.equal(seen.length, set.size, `${name} got ${seen.length - set.size} events twice`);
    assert.equal([...set].filter((id) => !org.accepted.has(id)).length, 0, `${name} got ids that never had a 202`);
  }
});

test('a long poll is woken by an event posted through either worker', { timeout: 60_000 }, async () => {
  const base = server.url;
  const { key } = await createOrgWithKey(base, { name: 'groups long poll' });
  await createGroup(base, key, { name: 'waiting' });
  const latencies: number[] = [];
  for (let round = 0; round < 8; round++) {
    const waiting = callOnNewConnection(base, 'POST', '/v1/consumer-groups/waiting/receive', key, { wait_s: 15 });
    await sleep(150);
    // A connection of its own: the kernel spreads connections over both workers.
    const posted = await callOnNewConnection(base, 'POST', '/v1/events', key, { type: 'poll.me', payload: { round } });
    assert.equal(posted.status, 202, posted.text);
    const at = performance.now();
    const answer = await waiting;
    latencies.push(performance.now() - at);
    assert.equal(answer.status, 200, answer.text);
    assert.deepEqual(
      answer.body.messages.map((m: any) => m.event.id),
      [posted.body.id],
    );
    await ack(base, key, 'waiting', [posted.body.id]);
  }
  // Timing is not asserted (a shared machine); a woken receive answers long before its 15 s.
  assert.ok(Math.max(...latencies) < 10_000);
  process.stdout.write(
    `# long poll through two workers, ms after the 202: ${latencies.map((ms) => ms.toFixed(1)).join(', ')}\n`,
  );
});

test('one org cannot hold every waiting slot: past GROUP_WAIT_PER_ORG its long polls are 429, other orgs still wait', {
  timeout: 60_000,
}, async () => {
  const limited = await TestServer.start({ databaseUrl, workers: 1, env: { GROUP_WAIT_PER_ORG: '3' } });
  try {
    const base = limited.url;
    const greedy = await createOrgWithKey(base, { name: 'greedy' });
    const other = await createOrgWithKey(base, { name: 'other' });
    await createGroup(base, greedy.key, { name: 'g' });
    await createGroup(base, other.key, { name: 'g' });
    const waits = Array.from({ length: 3 }, () =>
      callOnNewConnection(base, 'POST', '/v1/consumer-groups/g/receive', greedy.key, { wait_s: 3 }),
    );
    await sleep(300);
    const refused = await callOnNewConnection(base, 'POST', '/v1/consumer-groups/g/receive', greedy.key, { wait_s: 3 });
    assert.equal(refused.status, 429, refused.text);
    assert.equal(refused.body.error.code, 'rate_limited');
    assert.equal(refused.headers['retry-after'], '1');
    const started = Date.now();
    const otherWait = await callOnNewConnection(base, 'POST', '/v1/consumer-groups/g/receive', other.key, {
      wait_s: 1,
    });
    assert.equal(otherWait.status, 200, otherWait.text);
    assert.ok(Date.now() - started >= 900, 'the other org really waited');
    for (const wait of await Promise.all(waits)) assert.equal(wait.status, 200);
  } finally {
    await limited.stop();
  }
});

test("acks and leases answered before a SIGKILL of every process survive it; a killed consumer's leases expire and are redelivered", {
  timeout: 120_000,
}, async () => {
  let base = server.url;
  const { key } = await createOrgWithKey(base, { name: 'groups durability' });
  await createGroup(base, key, { name: 'g', start: 'earliest', visibility_timeout_s: 3 });
  const batch = await call(base, 'POST', '/v1/events/batch', {
    key,
    body: { events: Array.from({ length: 30 }, (_, n) => ({ type: 't', payload: { n } })) },
  });
  const ids: string[] = batch.body.results.map((result: any) => result.id);

  // A consumer in a process of its own receives 10 and is killed before it acks.
  const script = `
    const res = await fetch(${JSON.stringify(base)} + '/v1/consumer-groups/g/receive', { method: 'POST', headers: { authorization: 'Bearer ${key}', 'content-type': 'application/json' }, body: JSON.stringify({ max: 10 }) });
    const body = await res.json();
    process.stdout.write(JSON.stringify(body.messages.map((m) => m.event.id)) + '\\n');
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const killedHeld: string[] = await new Promise((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('\n')) resolve(JSON.parse(out));
    });
    child.once('exit', () => reject(new Error('consumer exited early')));
  });
  child.kill('SIGKILL');
  assert.deepEqual(killedHeld, ids.slice(0, 10));

  // This consumer receives the next 20, acks 10 of them and holds the other 10.
  const mine = await receive(base, key, 'g', { max: 20, visibility_timeout_s: 60 });
  assert.deepEqual(
    mine.map((m) => m.event.id),
    ids.slice(10, 30),
  );
  await ack(base, key, 'g', ids.slice(10, 20));

  await server.killAll();
  server = await TestServer.start({ databaseUrl, workers: 2 });
  base = server.url;

  const shown = await call(base, 'GET', '/v1/consumer-groups/g', { key });
  assert.equal(shown.body.pending, 20);
  // The killed consumer's leases expire (3 s) and come back with delivery_count 2; the acked ones
  // never; the ones leased for 60 s stay leased across the restart.
  await sleep(3_200);
  const again = await receive(base, key, 'g', { max: 100 });
  assert.deepEqual(
    again.map((m) => [m.event.id, m.delivery_count]),
    ids.slice(0, 10).map((id) => [id, 2]),
  );
  assert.equal((await call(base, 'GET', '/v1/consumer-groups/g', { key })).body.leased, 20);
  const acked = await call(base, 'POST', '/v1/consumer-groups/g/ack', { key, body: { ids: ids.slice(10, 20) } });
  assert.deepEqual(acked.body, { acked: 10, not_found: [] });
});
