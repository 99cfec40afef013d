/**
 * Where a consumer group's page of 1 000 goes in Postgres: receive and ack called directly (no
 * HTTP), timed, on 20 000 events of one org; with SHOW_PLANS the plans of their main statements.
 *
 *   npm run build && node dist/bench/group-page-cost.js
 */
import fs from 'node:fs';
import { openDatabase } from '../src/db/connect.js';
import { ensurePartitions, migrate } from '../src/db/migrate.js';
import { createGroup } from '../src/groups/store.js';
import { receive } from '../src/groups/receive.js';
import { ackGroup } from '../src/groups/settle.js';
import { uuidv7 } from '../src/ids.js';
import { TestPostgres } from '../test/helpers/postgres.js';

const EVENTS = Number(process.env.EVENTS || 20_000);
const ORG = '0193aaaa-0000-7000-8000-000000000001';

const pg = await TestPostgres.start();
const sql = openDatabase(await pg.createDatabase('group_cost'), { max: 1, name: 'group-cost' });
try {
  await migrate(sql);
  await ensurePartitions(sql);
  if (process.env.EXTERNAL) await sql.unsafe(process.env.EXTERNAL);
  await createGroup(sql, ORG, {
    name: 'g',
    start: 'earliest',
    event_types: [],
    filter: null,
    visibility_timeout_s: 300,
    max_deliveries: 10,
  });
  const now = Date.now();
  const ids = Array.from({ length: EVENTS }, (_, i) => uuidv7(now - EVENTS + i));
  for (let i = 0; i < EVENTS; i += 5_000) {
    const chunk = ids.slice(i, i + 5_000);
    await sql`insert into events (org_id, id, type, payload, received_at)
              select ${ORG}, id, 'bench.consume', ('{"n":' || n || ',"user":{"id":' || n || ',"plan":"pro"},"amount":1,"note":"benchmark payload"}')::json,
                     to_timestamp(((('x' || substr(replace(id::text, '-', ''), 1, 12))::bit(48)::bigint)) / 1000.0)
              from unnest(${chunk}::uuid[]) with ordinality as u(id, n)`;
  }
  if (!process.env.NO_ANALYZE) await sql`vacuum analyze events`;
  const times = { receive: 0, ack: 0 };
  const cpu = { receive: 0, ack: 0 };
  const node = { receive: 0, ack: 0 };
  const nodeCpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1000;
  };
  const [{ pid }] = (await sql`select pg_backend_pid() as pid`) as unknown as [{ pid: number }];
  const backendCpu = () => {
    const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(fields[11]) + Number(fields[12])) * 10; // ms (USER_HZ = 100)
  };
  let pages = 0;
  for (;;) {
    let t0 = performance.now();
    let c0 = backendCpu();
    let n0 = nodeCpu();
    const page = await receive(sql, ORG, 'g', { max: 1000, visibilityTimeoutS: null });
    times.receive += performance.now() - t0;
    cpu.receive += backendCpu() - c0;
    node.receive += nodeCpu() - n0;
    if (page.count === 0) break;
    const got = (JSON.parse('[' + page.json + ']') as { event: { id: string } }[]).map((message) => message.event.id);
    t0 = performance.now();
    c0 = backendCpu();
    n0 = nodeCpu();
    const acked = await ackGroup(sql, ORG, 'g', got);
    times.ack += performance.now() - t0;
    cpu.ack += backendCpu() - c0;
    node.ack += nodeCpu() - n0;
    if (acked.count !== got.length) throw new Error(`acked ${acked.count} of ${got.length}`);
    pages++;
  }
  console.log(
    `${pages} pages: receive ${(times.receive / pages).toFixed(1)} ms (Postgres CPU ${(cpu.receive / pages).toFixed(1)} ms, Node ${(node.receive / pages).toFixed(1)} ms), ` +
      `ack ${(times.ack / pages).toFixed(1)} ms (Postgres CPU ${(cpu.ack / pages).toFixed(1)} ms, Node ${(node.ack / pages).toFixed(1)} ms) per page of 1 000`,
  );
} finally {
  await sql.end({ timeout: 1 });
  await pg.stop();
}
