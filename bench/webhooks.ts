/**
 * bench:webhooks: webhook delivery throughput and latency of the real server, next to a baseline
 * measured in the same run on this machine.
 *
 *   npm run bench:webhooks
 *   DELIVERY_WORKERS=2 npm run bench:webhooks             # passed through to the server
 *   BENCH_SCENARIOS=burst,latency npm run bench:webhooks  # a subset (baseline always runs)
 *   BENCH_JSON=1 npm run bench:webhooks                   # also print every figure as one JSON document
 *   BENCH_BURST_EVENTS, BENCH_FANOUT_EVENTS, BENCH_ISOLATION_EVENTS, BENCH_IN_FLIGHT,
 *   BENCH_SCENARIO_TIMEOUT_MS override the sizes below.
 *
 * About 1 min 40 s in all on 2 cores (the Postgres counters' settling takes 5-12 s a scenario).
 *
 * Setup: `node dist/src/main.js` (WORKERS=2, its own embedded Postgres in a fresh temp dir,
 * WEBHOOK_ALLOW_HTTP/PRIVATE=true, WEBHOOK_TIMEOUT_MS=2000) and a receiver in a child process
 * (bench/webhook-receiver.ts: node:http on 127.0.0.1, answers 200 at once, records per path each
 * webhook-id and its arrival time). Each scenario uses its own org (rate limit 10 000 000/s) and
 * key, so no endpoint of one scenario sees another's events.
 *
 *   baseline   the receiver driven by a bare undici Pool, BASELINE_IN_FLIGHT requests in flight,
 *              the same kind of POST (≈280-byte JSON, three webhook-* headers): requests/s; run
 *              before the server starts and again after the scenarios, the better of the two is
 *              the reference (the machine is shared: both are printed)
 *   burst      1 endpoint, BURST_EVENTS events through POST /v1/events/batch (100 a batch,
 *              PRODUCERS concurrent producers): ingest rate; deliveries/s from the first batch
 *              answer to the last arrival; every accepted id arrived; lag = arrival − its batch's answer
 *   fanout     FANOUT_ENDPOINTS endpoints, FANOUT_EVENTS events: total deliveries/s, each endpoint got every event
 *   latency    one POST /v1/events every 25 ms for 8 s, 1 endpoint: arrival − 202, p50/p95/p99/max
 *              (product target: first attempt within 50 ms of the 202, median ≤ 20 ms)
 *   isolation  a healthy endpoint alone (ISOLATION_EVENTS burst), then again with a hanging and a
 *              failing (500) endpoint of the same org subscribed to the same events, then alone
 *              again: the healthy endpoint's deliveries/s beside them and its ratio to the mean of
 *              the two runs alone (target ≥ 0.9)
 *
 * Per scenario: CPU seconds (utime+stime from /proc) of the delivery worker(s), the HTTP workers,
 * Postgres (the postmaster and its children), the receiver and this process, as µs per delivery;
 * Postgres row writes to the webhook and delivery tables (pg_stat_user_tables, read once the
 * counters are stable; they are flushed with a delay) and WAL bytes, per delivery, and the events
 * tables' inserts for reference; and the machine's busy CPU outside the measured processes (other
 * load on a shared machine makes a scenario's figures less comparable). A throughput scenario
 * that has not received everything after SCENARIO_TIMEOUT_MS prints what arrived and fails the
 * run (exit code 1, after cleaning up).
 *
 * Load goes to 127.0.0.1 only. Processes are stopped by their pid: the receiver, the server
 * (SIGTERM, then its process group SIGKILL if it does not exit) and, if the server left it
 * behind, its embedded Postgres; the temp dir is then removed.
 */
import { fork, spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import postgres from 'postgres';
import { Pool } from 'undici';
import { childrenOf, descendantsOf, machineBusySeconds } from './proc-stats.js';
import type { PathCounts, PathDump } from './webhook-receiver.js';

// The concurrency of the baseline client: 64 requests in flight on 64 keep-alive connections,
// taken as what the delivery engine may use against one endpoint.
const BASELINE_IN_FLIGHT = Number(process.env.BENCH_IN_FLIGHT || 64);
const BASELINE_REQUESTS = 20_000;
const BASELINE_WARMUP = 2_000;
const BURST_EVENTS = Number(process.env.BENCH_BURST_EVENTS || 20_000);
const FANOUT_ENDPOINTS = 12;
const FANOUT_EVENTS = Number(process.env.BENCH_FANOUT_EVENTS || 3_000);
const ISOLATION_EVENTS = Number(process.env.BENCH_ISOLATION_EVENTS || 30_000);
const LATENCY_INTERVAL_MS = 25;
const LATENCY_SECONDS = 8;
const BATCH_SIZE = 100;
const PRODUCERS = 4;
const SCENARIO_TIMEOUT_MS = Number(process.env.BENCH_SCENARIO_TIMEOUT_MS || 90_000);
const LATENCY_TIMEOUT_MS = 20_000;
// Everything, server boot and cleanup included: past this the run is abandoned (exit code 1).
const RUN_DEADLINE_MS = 15 * 60_000;
const SCENARIOS = (process.env.BENCH_SCENARIOS || 'burst,fanout,latency,isolation').split(',').map((s) => s.trim());
const WEBHOOK_TIMEOUT_MS = 2_000;
const ADMIN_TOKEN = 'bench-admin-token-0123456789abcdef';

const here = path.dirname(fileURLToPath(import.meta.url));
const MAIN = path.resolve(here, '../src/main.js');
const RECEIVER = path.join(here, 'webhook-receiver.js');

const now = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

// ---------------------------------------------------------------------------------------------
// Processes: receiver, server, cleanup

class ReceiverProcess {
  private seq = 0;
  private readonly pending = new Map<number, (body: any) => void>();

  private constructor(readonly proc: ChildProcess, readonly port: number) {
    proc.on('message', (message: { seq?: number }) => {
      if (message.seq === undefined) return;
      const resolve = this.pending.get(message.seq);
      this.pending.delete(message.seq);
      resolve?.(message);
    });
    proc.once('exit', () => {
      for (const [, resolve] of this.pending) resolve({ error: 'receiver exited' });
      this.pending.clear();
    });
  }

  static async start(): Promise<ReceiverProcess> {
    const proc = fork(RECEIVER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('the receiver did not start within 10 s')), 10_000);
      proc.once('exit', (code) => reject(new Error(`the receiver exited (${code}) before listening`)));
      proc.on('message', (message: { type?: string; port?: number }) => {
        if (message.type === 'ready') {
          clearTimeout(timer);
          resolve(message.port!);
        }
      });
    });
    return new ReceiverProcess(proc, port);
  }

  url(pathname: string): string {
    return `http://127.0.0.1:${this.port}${pathname}`;
  }

  private ask<T>(message: object): Promise<T> {
    if (!this.proc.connected) return Promise.reject(new Error('the receiver is not running'));
    const seq = ++this.seq;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(seq, (body) => (body.error ? reject(new Error(body.error)) : resolve(body as T)));
      this.proc.send({ seq, ...message });
    });
  }

  async counts(prefix: string): Promise<Record<string, PathCounts>> {
    return (await this.ask<{ paths: Record<string, PathCounts> }>({ cmd: 'counts', prefix })).paths;
  }

  dump(pathname: string): Promise<PathDump> {
    return this.ask<PathDump>({ cmd: 'dump', path: pathname });
  }

  async stop(): Promise<void> {
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((resolve) => this.proc.once('exit', resolve));
    try {
      await Promise.race([this.ask({ cmd: 'close' }), sleep(3_000)]);
    } catch {
      // not connected any more: fall through to the signal
    }
    await Promise.race([exited, sleep(2_000)]);
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await exited;
    }
  }
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function waitGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!alive(pid)) return true;
    await sleep(50);
  }
  return !alive(pid);
}

/** `node dist/src/main.js` as the tests start it, with its own embedded Postgres under dataDir. */
class ServerProcess {
  output = '';
  private readonly exitPromise: Promise<number | null>;

  private constructor(readonly proc: ChildProcess, readonly port: number, readonly dataDir: string) {
    this.exitPromise = new Promise((resolve) => proc.once('exit', (code) => resolve(code)));
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get pgDir(): string {
    return path.join(this.dataDir, 'pg');
  }

  static spawn(dataDir: string, port: number): ServerProcess {
    const env: Record<string, string> = { ...(process.env as Record<string, string>) };
    for (const name of ['DATABASE_URL', 'DATA_DIR', 'REDIS_URL', 'METRICS_TOKEN']) delete env[name];
    Object.assign(env, {
      PORT: String(port),
      HOST: '127.0.0.1',
      WORKERS: '2',
      ADMIN_TOKEN,
      LOG_LEVEL: 'warn',
      DATA_DIR: dataDir,
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      WEBHOOK_TIMEOUT_MS: String(WEBHOOK_TIMEOUT_MS),
    });
    // DELIVERY_WORKERS (and any other setting) comes through from this process's environment.
    // detached: its own process group, so that a server that does not stop can be killed whole.
    const proc = spawn(process.execPath, [MAIN], { env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const server = new ServerProcess(proc, port, dataDir);
    const append = (chunk: Buffer) => {
      server.output += chunk.toString();
      if (server.output.length > 200_000) server.output = server.output.slice(-100_000);
    };
    proc.stdout!.on('data', append);
    proc.stderr!.on('data', append);
    return server;
  }

  running(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  async waitReady(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!/serving on/.test(this.output)) {
      if (!this.running()) throw new Error(`the server exited before it served:\n${this.tail()}`);
      if (Date.now() > deadline) throw new Error(`the server did not serve within ${timeoutMs / 1000} s:\n${this.tail()}`);
      await sleep(50);
    }
  }

  tail(chars = 4_000): string {
    return this.output.slice(-chars);
  }

  postmasterPid(): number | null {
    try {
      const pid = Number(fs.readFileSync(path.join(this.pgDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
      return Number.isInteger(pid) && pid > 0 ? pid : null;
    } catch {
      return null;
    }
  }

  /** SIGTERM and wait; if it has not exited after 45 s, SIGKILL its process group. Then make sure its Postgres is down. */
  async stop(): Promise<void> {
    const postmaster = this.postmasterPid();
    if (this.running()) {
      this.proc.kill('SIGTERM');
      const exited = await Promise.race([this.exitPromise.then(() => true), sleep(45_000).then(() => false)]);
      if (!exited) {
        process.stderr.write('bench:webhooks: the server did not exit within 45 s of SIGTERM; killing its process group\n');
        try {
          process.kill(-this.proc.pid!, 'SIGKILL');
        } catch {
          // already gone
        }
        await this.exitPromise;
      }
    }
    // The server stops its embedded Postgres on a clean exit; after a kill it would be left running.
    if (postmaster !== null && alive(postmaster)) {
      try {
        process.kill(postmaster, 'SIGINT');
      } catch {
        // gone meanwhile
      }
      if (!(await waitGone(postmaster, 20_000))) {
        try {
          process.kill(postmaster, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
        await waitGone(postmaster, 5_000);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HTTP helpers against the server

async function api(base: string, method: string, pathname: string, auth: string, body?: unknown): Promise<{ status: number; body: any; text: string }> {
  const headers: Record<string, string> = { authorization: `Bearer ${auth}` };
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(base + pathname, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  let parsed: any = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  return { status: response.status, body: parsed, text };
}

async function createOrg(base: string, name: string): Promise<string> {
  const org = await api(base, 'POST', '/v1/admin/orgs', ADMIN_TOKEN, { name, rate_limit_per_sec: 10_000_000, burst: 10_000_000 });
  if (org.status !== 201) throw new Error(`create org: ${org.status} ${org.text}`);
  const key = await api(base, 'POST', `/v1/admin/orgs/${org.body.id}/keys`, ADMIN_TOKEN, {});
  if (key.status !== 201) throw new Error(`create key: ${key.status} ${key.text}`);
  const apiKey = key.body.key as string;
  // Every HTTP worker verifies a new key once (argon2, by design slow); do that before measuring.
  await Promise.all(Array.from({ length: 8 }, async () => {
    const warm = await api(base, 'GET', '/v1/webhooks', apiKey);
    if (warm.status !== 200) throw new Error(`GET /v1/webhooks with the new key: ${warm.status} ${warm.text}`);
  }));
  return apiKey;
}

async function createEndpoint(base: string, key: string, url: string): Promise<string> {
  const created = await api(base, 'POST', '/v1/webhooks', key, { url, event_types: [], description: 'bench' });
  if (created.status !== 201) throw new Error(`create endpoint ${url}: ${created.status} ${created.text}`);
  return created.body.id as string;
}

const PAYLOAD_NOTE = 'x'.repeat(60);
const payloadFor = (n: number) => ({ n, user_id: 12345, email: 'someone@example.com', plan: 'pro', amount: 49.5, note: PAYLOAD_NOTE });

interface Ingested {
  /** event id → when its (batch) answer came back. */
  answeredAt: Map<string, number>;
  startedAt: number;
  firstAnswer: number;
  lastAnswer: number;
  rejected: number;
}

/** POSTs `total` events in batches of BATCH_SIZE from PRODUCERS concurrent producers. */
async function burst(pool: Pool, key: string, type: string, total: number): Promise<Ingested> {
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  const batches = Math.ceil(total / BATCH_SIZE);
  const result: Ingested = { answeredAt: new Map(), startedAt: now(), firstAnswer: Infinity, lastAnswer: 0, rejected: 0 };
  let next = 0;
  const producer = async () => {
    while (next < batches) {
      const batch = next++;
      const size = Math.min(BATCH_SIZE, total - batch * BATCH_SIZE);
      const body = JSON.stringify({ events: Array.from({ length: size }, (_, i) => ({ type, payload: payloadFor(batch * BATCH_SIZE + i) })) });
      const response = await pool.request({ path: '/v1/events/batch', method: 'POST', headers, body });
      const text = await response.body.text();
      const at = now();
      if (response.statusCode !== 200) throw new Error(`POST /v1/events/batch answered ${response.statusCode}: ${text.slice(0, 300)}`);
      result.firstAnswer = Math.min(result.firstAnswer, at);
      result.lastAnswer = Math.max(result.lastAnswer, at);
      for (const item of (JSON.parse(text) as { results: Array<{ status: string; id?: string }> }).results) {
        if (item.status === 'accepted' && item.id) result.answeredAt.set(item.id, at);
        else result.rejected++;
      }
    }
  };
  await Promise.all(Array.from({ length: PRODUCERS }, producer));
  return result;
}

// ---------------------------------------------------------------------------------------------
// Measurements: CPU per process group, Postgres counters

type Group = 'delivery' | 'http' | 'primary' | 'other' | 'postgres' | 'receiver';
const GROUPS: Group[] = ['delivery', 'http', 'postgres', 'receiver', 'primary', 'other'];
/** CPU seconds per group; `elsewhere`: the machine's busy time outside every measured process. */
type CpuSplit = Record<Group | 'bench' | 'elsewhere', number>;
type CpuSnapshot = { procs: Map<string, { group: Group; cpu: number }>; bench: number; machine: number };
const emptySplit = (): CpuSplit => Object.fromEntries([...GROUPS, 'bench', 'elsewhere'].map((g) => [g, 0])) as CpuSplit;

function readText(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

const TICKS_PER_SECOND = 100;

/** utime+stime in seconds and the start time (to tell a reused pid apart), or null if gone. */
function procStat(pid: number): { cpu: number; start: string } | null {
  const stat = readText(`/proc/${pid}/stat`);
  if (!stat) return null;
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { cpu: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND, start: fields[19]! };
}

function roleOf(pid: number): string | null {
  const environ = readText(`/proc/${pid}/environ`);
  if (!environ) return null;
  const entry = environ.split('\0').find((e) => e.startsWith('TRIGGERS_ROLE='));
  return entry ? entry.slice('TRIGGERS_ROLE='.length) : null;
}

function cpuSnapshot(server: ServerProcess, receiver: ReceiverProcess): CpuSnapshot {
  const procs = new Map<string, { group: Group; cpu: number }>();
  const add = (pid: number, group: Group) => {
    const stat = procStat(pid);
    if (stat) procs.set(`${pid}:${stat.start}`, { group, cpu: stat.cpu });
  };
  const postgresPids = new Set<number>();
  const postmaster = server.postmasterPid();
  if (postmaster !== null) for (const pid of [postmaster, ...descendantsOf(postmaster)]) postgresPids.add(pid);
  for (const pid of postgresPids) add(pid, 'postgres');
  const primary = server.proc.pid!;
  add(primary, 'primary');
  for (const child of childrenOf(primary)) {
    if (postgresPids.has(child)) continue; // the primary spawned the postmaster
    const role = roleOf(child);
    const group: Group = role === 'delivery' ? 'delivery' : role === 'http' ? 'http' : 'other';
    for (const pid of [child, ...descendantsOf(child)]) add(pid, group);
  }
  add(receiver.proc.pid!, 'receiver');
  const usage = process.cpuUsage();
  return { procs, bench: (usage.user + usage.system) / 1e6, machine: machineBusySeconds() };
}

function cpuDiff(after: CpuSnapshot, before: CpuSnapshot): CpuSplit {
  const out = emptySplit();
  for (const [key, { group, cpu }] of after.procs) out[group] += Math.max(0, cpu - (before.procs.get(key)?.cpu ?? 0));
  out.bench = after.bench - before.bench;
  const measured = [...GROUPS, 'bench' as const].reduce((sum, g) => sum + out[g], 0);
  out.elsewhere = Math.max(0, after.machine - before.machine - measured);
  return out;
}

interface PgCounters {
  writes: number;
  eventInserts: number;
  lsn: bigint;
}

function parseLsn(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

async function pgCounters(sql: postgres.Sql): Promise<PgCounters> {
  const [row] = await sql`
    select
      (select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables
        where relname like 'webhook%' or relname like 'delivery%')::float8 as writes,
      (select coalesce(sum(n_tup_ins), 0) from pg_stat_user_tables where relname like 'events%')::float8 as event_inserts,
      pg_current_wal_lsn()::text as lsn`;
  return { writes: Number(row!.writes), eventInserts: Number(row!.event_inserts), lsn: parseLsn(String(row!.lsn)) };
}

/**
 * The table counters once the scenario's writes have been published. A backend publishes its
 * counts when it ends a transaction if its last publication is over 1 s old, else it keeps them
 * until a later transaction or until it has been idle for 10 s. So after at least 1.2 s, from a
 * moment T, the counters are read once
 *   - every other backend on the database has either been idle for over 10.5 s, or has been seen
 *     to end statements at two moments after T at least 1 s apart (one of them published, after T), and
 *   - they have grown by at most SETTLED_WRITES over the last 2 s (some writes never stop: the
 *     delivery workers' heartbeats);
 * or after SETTLE_MAX_MS at most.
 */
const SETTLED_WRITES = 20;
const SETTLE_MAX_MS = 13_000;

async function settledPgCounters(sql: postgres.Sql): Promise<PgCounters & { waitedMs: number }> {
  const started = Date.now();
  await sleep(1_200);
  const [{ t }] = (await sql`select extract(epoch from clock_timestamp())::float8 as t`) as unknown as [{ t: number }];
  // backend → the earliest and latest state change seen after t
  const seen = new Map<string, { first: number; last: number }>();
  const samples: Array<PgCounters & { at: number }> = [{ ...(await pgCounters(sql)), at: Date.now() }];
  for (;;) {
    const backends = await sql`
      select pid || ':' || extract(epoch from backend_start) as backend, state,
             extract(epoch from state_change)::float8 as changed, extract(epoch from clock_timestamp() - state_change)::float8 as age
      from pg_stat_activity
      where datname = current_database() and pid <> pg_backend_pid() and backend_type = 'client backend'`;
    let holding = 0;
    for (const b of backends) {
      const backend = String(b.backend);
      if (b.changed !== null && b.changed >= t) {
        const s = seen.get(backend);
        if (!s) seen.set(backend, { first: b.changed, last: b.changed });
        else s.last = Math.max(s.last, b.changed);
      }
      const s = seen.get(backend);
      const idleLong = b.state === 'idle' && b.age !== null && b.age > 10.5;
      if (!idleLong && !(s && s.last - s.first >= 1)) holding++;
    }
    const last = samples[samples.length - 1]!;
    const windowStart = samples.find((s) => last.at - s.at <= 2_000)!;
    const quiet = last.at - samples[0]!.at >= 2_000 && last.writes - windowStart.writes <= SETTLED_WRITES && last.eventInserts === windowStart.eventInserts;
    if ((quiet && holding === 0) || Date.now() - started >= SETTLE_MAX_MS) return { ...last, waitedMs: Date.now() - started };
    await sleep(250);
    samples.push({ ...(await pgCounters(sql)), at: Date.now() });
  }
}

// ---------------------------------------------------------------------------------------------
// Scenario bookkeeping

interface Row {
  scenario: string;
  deliveries: number;
  seconds: number;
  perSecond: number;
  /** Only when compared with something else than the baseline (which is applied in the table). */
  ratio?: number;
  ratioLabel?: string;
  lag?: Percentiles;
  cpu?: CpuSplit;
  pg?: { writes: number; walBytes: number; eventInserts: number; settleMs: number };
  ok: boolean;
  notes: string[];
}

interface Percentiles {
  p50: number;
  p95: number;
  p99: number;
  max: number;
}

function percentiles(values: number[]): Percentiles {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]! : NaN);
  return { p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted.length ? sorted[sorted.length - 1]! : NaN };
}

const failures: string[] = [];
const rows: Row[] = [];

function say(line: string): void {
  process.stdout.write(line + '\n');
}

interface Arrival {
  complete: boolean;
  counts: Record<string, PathCounts>;
}

/** Polls the receiver until every path has `expected` distinct webhook-ids, or the timeout passes. */
async function waitForArrivals(receiver: ReceiverProcess, paths: string[], expected: number, timeoutMs: number): Promise<Arrival> {
  const deadline = Date.now() + timeoutMs;
  let lastReport = Date.now();
  for (;;) {
    const all = await receiver.counts('/');
    const counts = Object.fromEntries(paths.map((p) => [p, all[p] ?? { requests: 0, distinct: 0, duplicates: 0, last: 0 }]));
    if (paths.every((p) => counts[p]!.distinct >= expected)) return { complete: true, counts };
    if (Date.now() > deadline) return { complete: false, counts };
    if (Date.now() - lastReport > 15_000) {
      lastReport = Date.now();
      const got = paths.reduce((sum, p) => sum + counts[p]!.distinct, 0);
      say(`  … ${got} of ${expected * paths.length} deliveries so far`);
    }
    await sleep(100);
  }
}

/** Compares what arrived on `pathname` with the accepted ids; returns the dump and problems found. */
async function checkPath(receiver: ReceiverProcess, pathname: string, answeredAt: Map<string, number>): Promise<{ dump: PathDump; problems: string[]; lags: number[] }> {
  const dump = await receiver.dump(pathname);
  const problems: string[] = [];
  const lags: number[] = [];
  let unknown = 0;
  for (let i = 0; i < dump.ids.length; i++) {
    const answered = answeredAt.get(dump.ids[i]!);
    if (answered === undefined) unknown++;
    else lags.push(dump.at[i]! - answered);
  }
  const missing = answeredAt.size - lags.length;
  if (missing > 0) problems.push(`${pathname}: ${missing} of ${answeredAt.size} accepted events never arrived`);
  if (unknown > 0) problems.push(`${pathname}: ${unknown} webhook-ids that were never accepted`);
  return { dump, problems, lags };
}

interface Ctx {
  server: ServerProcess;
  receiver: ReceiverProcess;
  sql: postgres.Sql;
  ingest: Pool;
  pgBefore: PgCounters;
}

/** Runs `body` between a CPU snapshot and the Postgres counters, and fills those into its row. */
async function measured(ctx: Ctx, body: (markEnd: () => void) => Promise<Row>): Promise<Row> {
  const before = cpuSnapshot(ctx.server, ctx.receiver);
  let after: CpuSnapshot | null = null;
  const row = await body(() => { after = cpuSnapshot(ctx.server, ctx.receiver); });
  const cpu = cpuDiff(after ?? cpuSnapshot(ctx.server, ctx.receiver), before);
  const pgAfter = await settledPgCounters(ctx.sql);
  row.cpu = cpu;
  row.pg = {
    writes: pgAfter.writes - ctx.pgBefore.writes,
    walBytes: Number(pgAfter.lsn - ctx.pgBefore.lsn),
    eventInserts: pgAfter.eventInserts - ctx.pgBefore.eventInserts,
    settleMs: pgAfter.waitedMs,
  };
  ctx.pgBefore = pgAfter;
  rows.push(row);
  printRow(row);
  return row;
}

function fmt(n: number | undefined, digits = 0): string {
  if (n === undefined || !Number.isFinite(n)) return '-';
  return n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function perDelivery(seconds: number, deliveries: number): number {
  return deliveries > 0 ? (seconds * 1e6) / deliveries : NaN;
}

function printRow(row: Row): void {
  const unit = row.scenario.startsWith('baseline') ? 'requests' : 'deliveries';
  const parts = [`${row.scenario}: ${fmt(row.deliveries)} ${unit} in ${fmt(row.seconds, 2)} s = ${fmt(row.perSecond)}/s`];
  if (row.ratio !== undefined) parts.push(`${row.ratioLabel ?? 'ratio'} ${fmt(row.ratio, 2)}`);
  if (row.lag) parts.push(`lag ms p50 ${fmt(row.lag.p50, 1)} p95 ${fmt(row.lag.p95, 1)} p99 ${fmt(row.lag.p99, 1)} max ${fmt(row.lag.max, 1)}`);
  say(`  ${parts.join(', ')}${row.ok ? '' : '  ** FAILED **'}`);
  if (row.cpu) {
    const c = row.cpu;
    say(`  cpu s: delivery ${fmt(c.delivery, 2)}, http ${fmt(c.http, 2)}, postgres ${fmt(c.postgres, 2)}, receiver ${fmt(c.receiver, 2)}, bench ${fmt(c.bench, 2)}, primary ${fmt(c.primary, 2)}${c.other ? `, other ${fmt(c.other, 2)}` : ''}; elsewhere on the machine ${fmt(c.elsewhere, 2)}`);
  }
  if (row.pg) {
    say(`  postgres: ${fmt(row.pg.writes)} webhook/delivery row writes (${fmt(row.pg.writes / row.deliveries, 2)}/delivery), ${fmt(row.pg.walBytes)} WAL bytes (${fmt(row.pg.walBytes / row.deliveries)}/delivery), ${fmt(row.pg.eventInserts)} event inserts; counters settled after ${fmt(row.pg.settleMs / 1000, 1)} s`);
  }
  for (const note of row.notes) say(`  ${note}`);
}

// ---------------------------------------------------------------------------------------------
// Baseline and scenarios

const BASE_TIMESTAMP = new Date().toISOString();

/** A body shaped like a delivery's: {id, type, payload, occurred_at, received_at}. */
function webhookLikeBody(id: string, n: number): string {
  return JSON.stringify({ id, type: 'bench.webhook', payload: payloadFor(n), occurred_at: BASE_TIMESTAMP, received_at: BASE_TIMESTAMP });
}

async function runBaseline(receiver: ReceiverProcess, name: string): Promise<Row> {
  const secret = randomBytes(32);
  const pool = new Pool(`http://127.0.0.1:${receiver.port}`, { connections: BASELINE_IN_FLIGHT, pipelining: 1, keepAliveTimeout: 30_000 });
  const run = async (pathname: string, count: number, prefix: string) => {
    let next = 0;
    let errors = 0;
    const sender = async () => {
      while (next < count) {
        const n = next++;
        // Ids shaped like the server's, so the receiver's work is the same.
        const id = `${prefix}${String(n).padStart(20, '0')}`;
        const body = webhookLikeBody(id, n);
        const timestamp = String(Math.floor(Date.now() / 1000));
        const signature = 'v1,' + createHmac('sha256', secret).update(`${id}.${timestamp}.${body}`).digest('base64');
        const response = await pool.request({
          path: pathname, method: 'POST', body,
          headers: { 'content-type': 'application/json', 'webhook-id': id, 'webhook-timestamp': timestamp, 'webhook-signature': signature },
        });
        await response.body.dump();
        if (response.statusCode !== 200) errors++;
      }
    };
    const started = now();
    await Promise.all(Array.from({ length: BASELINE_IN_FLIGHT }, sender));
    return { seconds: (now() - started) / 1000, errors };
  };
  try {
    const tag = name.replace(/\W+/g, '-');
    await run(`/baseline/${tag}-warmup`, BASELINE_WARMUP, 'evt_warm');
    const before = { receiver: procStat(receiver.proc.pid!)?.cpu ?? 0, bench: process.cpuUsage(), machine: machineBusySeconds() };
    const { seconds, errors } = await run(`/baseline/${tag}`, BASELINE_REQUESTS, 'evt_base');
    const benchUsage = process.cpuUsage(before.bench);
    const counts = (await receiver.counts(`/baseline/${tag}`))[`/baseline/${tag}`];
    const ok = errors === 0 && counts?.distinct === BASELINE_REQUESTS;
    const cpu = emptySplit();
    cpu.receiver = (procStat(receiver.proc.pid!)?.cpu ?? 0) - before.receiver;
    cpu.bench = (benchUsage.user + benchUsage.system) / 1e6;
    cpu.elsewhere = Math.max(0, machineBusySeconds() - before.machine - cpu.receiver - cpu.bench);
    const row: Row = {
      scenario: name, deliveries: BASELINE_REQUESTS, seconds, perSecond: BASELINE_REQUESTS / seconds, cpu, ok,
      notes: [`bare undici Pool, ${BASELINE_IN_FLIGHT} in flight; the "bench" CPU is the client's${ok ? '' : `; ${errors} non-200 answers, ${counts?.distinct ?? 0} distinct ids received`}`],
    };
    if (!ok) failures.push(`${name}: ${errors} errors, ${counts?.distinct ?? 0} of ${BASELINE_REQUESTS} received`);
    rows.push(row);
    printRow(row);
    return row;
  } finally {
    await pool.close();
  }
}

/** One or more healthy endpoints, a burst; optional extra (hang/fail) endpoints are only reported. */
async function throughputScenario(ctx: Ctx, options: {
  name: string;
  events: number;
  healthy: string[];
  extra?: string[];
  ratioTo?: { label: string; perSecond: number };
}): Promise<Row> {
  const key = await createOrg(ctx.server.url, `bench ${options.name}`);
  // The failing and hanging endpoints first, so that an engine that serves endpoints in order
  // meets them before the healthy one.
  const extraIds: string[] = [];
  for (const p of options.extra ?? []) extraIds.push(await createEndpoint(ctx.server.url, key, ctx.receiver.url(p)));
  for (const p of options.healthy) await createEndpoint(ctx.server.url, key, ctx.receiver.url(p));
  try {
    return await measured(ctx, async (markEnd) => {
      const ingested = await burst(ctx.ingest, key, `bench.${options.name.replace(/[^a-z0-9]+/gi, '.')}`, options.events);
      const accepted = ingested.answeredAt.size;
      const notes: string[] = [];
      const ingestSeconds = (ingested.lastAnswer - ingested.startedAt) / 1000;
      notes.push(`ingest: ${fmt(accepted)} accepted${ingested.rejected ? `, ${ingested.rejected} NOT accepted` : ''} in ${fmt(ingestSeconds, 2)} s = ${fmt(accepted / ingestSeconds)} events/s`);
      const arrival = await waitForArrivals(ctx.receiver, options.healthy, accepted, SCENARIO_TIMEOUT_MS);
      markEnd();
      let ok = arrival.complete && ingested.rejected === 0;
      if (!arrival.complete) {
        const got = options.healthy.map((p) => `${p} ${arrival.counts[p]!.distinct}/${accepted}`).join(', ');
        notes.push(`TIMED OUT after ${SCENARIO_TIMEOUT_MS / 1000} s: arrived ${got}`);
        failures.push(`${options.name}: not every event arrived within ${SCENARIO_TIMEOUT_MS / 1000} s (${got})`);
      }
      if (ingested.rejected) failures.push(`${options.name}: ${ingested.rejected} events not accepted`);
      const lags: number[] = [];
      let lastArrival = 0;
      let delivered = 0;
      let duplicates = 0;
      for (const p of options.healthy) {
        const check = await checkPath(ctx.receiver, p, ingested.answeredAt);
        lags.push(...check.lags);
        delivered += check.lags.length;
        duplicates += check.dump.requests - check.dump.ids.length;
        for (const at of check.dump.at) lastArrival = Math.max(lastArrival, at);
        if (check.problems.length) {
          ok = false;
          if (arrival.complete) failures.push(...check.problems.map((problem) => `${options.name}: ${problem}`));
          notes.push(...check.problems);
        }
      }
      const seconds = (lastArrival - ingested.firstAnswer) / 1000;
      notes.push(`every endpoint got every event: ${ok ? 'yes' : 'NO'} (${options.healthy.length} endpoint${options.healthy.length > 1 ? 's' : ''} × ${fmt(accepted)} events); duplicate deliveries: ${duplicates}`);
      if (options.extra?.length) {
        const counts = await ctx.receiver.counts('/');
        notes.push(`meanwhile (ignored): ${options.extra.map((p) => `${p} got ${counts[p]?.requests ?? 0} requests`).join(', ')}`);
      }
      const perSecond = delivered / seconds;
      const row: Row = {
        scenario: options.name, deliveries: delivered, seconds, perSecond, lag: percentiles(lags), ok, notes,
        ...(options.ratioTo ? { ratio: perSecond / options.ratioTo.perSecond, ratioLabel: options.ratioTo.label } : {}),
      };
      return row;
    });
  } finally {
    // The failing and hanging endpoints would keep the engine busy (retries, timeouts) in whatever
    // runs next. Deleted only after this scenario's counters were read: the delete cascades to
    // their delivery rows. The healthy endpoints stay: idle, and their org sends nothing more.
    for (const id of extraIds) await api(ctx.server.url, 'DELETE', `/v1/webhooks/${id}`, key).catch(() => {});
  }
}

async function latencyScenario(ctx: Ctx): Promise<Row> {
  const key = await createOrg(ctx.server.url, 'bench latency');
  const pathname = '/e/latency';
  await createEndpoint(ctx.server.url, key, ctx.receiver.url(pathname));
  const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
  return measured(ctx, async (markEnd) => {
      const answeredAt = new Map<string, number>();
      const ingestMs: number[] = [];
      let errors = 0;
      const count = Math.round((LATENCY_SECONDS * 1000) / LATENCY_INTERVAL_MS);
      const started = now();
      const sends: Promise<void>[] = [];
      // Open loop: the i-th event is sent at started + i × interval, whatever the previous did.
      for (let i = 0; i < count; i++) {
        const due = started + i * LATENCY_INTERVAL_MS;
        const wait = due - now();
        if (wait > 0) await sleep(wait);
        sends.push((async () => {
          const sent = now();
          const response = await ctx.ingest.request({ path: '/v1/events', method: 'POST', headers, body: JSON.stringify({ type: 'bench.latency', payload: payloadFor(i) }) });
          const text = await response.body.text();
          const at = now();
          if (response.statusCode !== 202) {
            errors++;
            return;
          }
          answeredAt.set((JSON.parse(text) as { id: string }).id, at);
          ingestMs.push(at - sent);
        })().catch(() => { errors++; }));
      }
      await Promise.all(sends);
      const firstAnswer = Math.min(...answeredAt.values());
      const arrival = await waitForArrivals(ctx.receiver, [pathname], answeredAt.size, LATENCY_TIMEOUT_MS);
      markEnd();
      const check = await checkPath(ctx.receiver, pathname, answeredAt);
      const lastArrival = Math.max(0, ...check.dump.at);
      const ok = arrival.complete && check.problems.length === 0 && errors === 0;
      const lag = percentiles(check.lags);
      const within50 = check.lags.filter((l) => l <= 50).length;
      const notes = [
        `${fmt(answeredAt.size)} events, one every ${LATENCY_INTERVAL_MS} ms${errors ? `, ${errors} NOT answered 202` : ''}; 202 latency p50 ${fmt(percentiles(ingestMs).p50, 1)} ms p99 ${fmt(percentiles(ingestMs).p99, 1)} ms`,
        `first attempt within 50 ms of the 202: ${fmt((100 * within50) / Math.max(1, check.lags.length), 1)}% (target: all, median ≤ 20 ms: ${lag.p50 <= 20 && lag.max <= 50 ? 'met' : 'not met'}); duplicates: ${check.dump.requests - check.dump.ids.length}`,
        ...check.problems,
      ];
      if (!ok) failures.push(`latency: ${errors} ingest errors; ${check.problems.join('; ') || 'incomplete'}`);
      return {
        scenario: 'latency', deliveries: check.lags.length, seconds: (lastArrival - firstAnswer) / 1000, perSecond: check.lags.length / ((lastArrival - firstAnswer) / 1000),
        lag, ok, notes,
      };
    });
}

// ---------------------------------------------------------------------------------------------
// Output

function printTable(): void {
  const baselines = rows.filter((r) => r.scenario.startsWith('baseline'));
  const reference = Math.max(...baselines.map((r) => r.perSecond));
  const header = ['scenario', 'deliveries', 'deliveries/s', 'baseline req/s', 'ratio', 'lag p50/p99 ms', 'cpu µs/delivery (delivery | http | postgres | receiver | bench)', 'pg writes/delivery', 'WAL B/delivery', 'cpu s elsewhere', 'ok'];
  const lines = rows.map((r) => {
    const isBaseline = r.scenario.startsWith('baseline');
    const c = r.cpu;
    const cpu = c
      ? [c.delivery, c.http, c.postgres, c.receiver, c.bench].map((sec) => (isBaseline && sec === 0 ? '-' : fmt(perDelivery(sec, r.deliveries)))).join(' | ')
      : '-';
    // The latency scenario is paced by its sender: its rate is not a throughput.
    const ratio = r.ratio !== undefined ? `${fmt(r.ratio, 2)} ${r.ratioLabel ?? ''}`.trim() : isBaseline || r.scenario === 'latency' ? '-' : fmt(r.perSecond / reference, 2);
    return [
      r.scenario, fmt(r.deliveries), fmt(r.perSecond), isBaseline || r.scenario === 'latency' ? '-' : fmt(reference), ratio,
      r.lag ? `${fmt(r.lag.p50, 1)} / ${fmt(r.lag.p99, 1)}` : '-',
      cpu,
      r.pg ? fmt(r.pg.writes / r.deliveries, 2) : '-',
      r.pg ? fmt(r.pg.walBytes / r.deliveries) : '-',
      c ? fmt(c.elsewhere, 1) : '-',
      r.ok ? 'yes' : 'NO',
    ];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const render = (cells: string[]) => cells.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  say('');
  say(render(header));
  for (const line of lines) say(render(line));
  say('');
  say(`ratio = deliveries/s ÷ baseline req/s, the better of the two baseline runs (isolation +hang+500: ÷ the healthy endpoint alone)`);
  say('lag = arrival − the answer (202, or the batch\'s 200) to its event; the first arrival of each event counts');
  say('cpu µs/delivery over the scenario (from the first POST to the last arrival); baseline rows: per request, "bench" = the undici client');
  say('pg writes = n_tup_ins+upd+del of the webhook*/delivery* tables; per delivery = ÷ the healthy endpoints\' distinct deliveries');
  say('  (isolation +hang+500: the attempts to the hanging and failing endpoints are in the numerators only)');
  say('cpu s elsewhere = machine busy time outside every measured process during the scenario (other load on a shared machine)');
}

// ---------------------------------------------------------------------------------------------
// Main

let cleanupStarted: Promise<void> | null = null;
let cleanupParts: { receiver?: ReceiverProcess; server?: ServerProcess; sql?: postgres.Sql; ingest?: Pool; dataDir?: string } = {};

function cleanup(): Promise<void> {
  cleanupStarted ??= (async () => {
    const { receiver, server, sql, ingest, dataDir } = cleanupParts;
    await ingest?.destroy().catch(() => {});
    await sql?.end({ timeout: 1 }).catch(() => {});
    await receiver?.stop().catch(() => {});
    await server?.stop().catch((error) => process.stderr.write(`bench:webhooks: stopping the server: ${(error as Error).message}\n`));
    if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
  })();
  return cleanupStarted;
}

async function main(): Promise<void> {
  say(`bench:webhooks on ${os.availableParallelism()} cores, node ${process.version}; server WORKERS=2${process.env.DELIVERY_WORKERS ? `, DELIVERY_WORKERS=${process.env.DELIVERY_WORKERS}` : ''}, WEBHOOK_TIMEOUT_MS=${WEBHOOK_TIMEOUT_MS}`);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'triggers-bench-webhooks-'));
  fs.chmodSync(dataDir, 0o755); // as root, Postgres runs as the "postgres" user and must reach its directory
  cleanupParts.dataDir = dataDir;

  const receiver = await ReceiverProcess.start();
  cleanupParts.receiver = receiver;
  say(`receiver (pid ${receiver.proc.pid}) on 127.0.0.1:${receiver.port}`);

  say(`baseline: ${fmt(BASELINE_REQUESTS)} POSTs from a bare undici Pool, ${BASELINE_IN_FLIGHT} in flight`);
  await runBaseline(receiver, 'baseline (start)');

  const server = ServerProcess.spawn(dataDir, await freePort());
  cleanupParts.server = server;
  const booted = Date.now();
  await server.waitReady(120_000);
  say(`server (pid ${server.proc.pid}) serving on ${server.url} after ${fmt((Date.now() - booted) / 1000, 1)} s; data dir ${dataDir}`);

  const sql = postgres({ host: server.pgDir, port: 5432, user: 'postgres', database: 'triggers', max: 1, onnotice: () => {}, idle_timeout: 0, connection: { application_name: 'bench-webhooks' } });
  cleanupParts.sql = sql;
  const ingest = new Pool(server.url, { connections: PRODUCERS * 2, pipelining: 1, keepAliveTimeout: 30_000 });
  cleanupParts.ingest = ingest;

  const roles = childrenOf(server.proc.pid!).map((pid) => `${pid}:${roleOf(pid) ?? (pid === server.postmasterPid() ? 'postmaster' : '?')}`);
  say(`server processes: primary ${server.proc.pid}, children ${roles.join(' ')}`);

  const ctx: Ctx = { server, receiver, sql, ingest, pgBefore: await settledPgCounters(sql) };

  if (SCENARIOS.includes('burst')) {
    say(`\nburst: 1 endpoint, ${fmt(BURST_EVENTS)} events in batches of ${BATCH_SIZE} from ${PRODUCERS} producers`);
    await throughputScenario(ctx, { name: 'burst', events: BURST_EVENTS, healthy: ['/e/burst'] });
  }
  if (SCENARIOS.includes('fanout')) {
    say(`\nfanout: ${FANOUT_ENDPOINTS} endpoints, ${fmt(FANOUT_EVENTS)} events`);
    await throughputScenario(ctx, { name: 'fanout', events: FANOUT_EVENTS, healthy: Array.from({ length: FANOUT_ENDPOINTS }, (_, i) => `/e/fanout-${i}`) });
  }
  if (SCENARIOS.includes('latency')) {
    say(`\nlatency: one POST /v1/events every ${LATENCY_INTERVAL_MS} ms for ${LATENCY_SECONDS} s, 1 endpoint`);
    await latencyScenario(ctx);
  }
  if (SCENARIOS.includes('isolation')) {
    // Alone, beside the bad endpoints, alone again: the reference is the mean of the two runs
    // alone, so warm-up and drift during the run do not favour either side.
    say(`\nisolation: a healthy endpoint alone, ${fmt(ISOLATION_EVENTS)} events`);
    const alone = await throughputScenario(ctx, { name: 'isolation alone', events: ISOLATION_EVENTS, healthy: ['/e/isolation-alone'] });
    say(`\nisolation: the same beside a hanging and a failing (500) endpoint of the same org`);
    const mixed = await throughputScenario(ctx, {
      name: 'isolation +hang+500', events: ISOLATION_EVENTS, healthy: ['/e/isolation-mixed'], extra: ['/hang/isolation', '/fail/isolation'],
      ratioTo: { label: 'of alone', perSecond: alone.perSecond },
    });
    say(`\nisolation: a healthy endpoint alone again, ${fmt(ISOLATION_EVENTS)} events`);
    const aloneAgain = await throughputScenario(ctx, { name: 'isolation alone again', events: ISOLATION_EVENTS, healthy: ['/e/isolation-alone-again'] });
    mixed.ratio = mixed.perSecond / ((alone.perSecond + aloneAgain.perSecond) / 2);
    mixed.notes.push(`healthy endpoint beside hang+500: ${fmt(mixed.ratio, 2)} of its rate alone (target ≥ 0.9: ${mixed.ratio! >= 0.9 ? 'met' : 'not met'})`);
    say(`  ${mixed.notes[mixed.notes.length - 1]}`);
  }

  say(`\nbaseline again, the server idle`);
  await runBaseline(receiver, 'baseline (end)');

  printTable();
  if (process.env.BENCH_JSON === '1') {
    say(JSON.stringify({ machine: { cpus: os.availableParallelism(), node: process.version }, delivery_workers: process.env.DELIVERY_WORKERS ?? null, rows }, null, 2));
  }
}

let exitCode = 0;
const deadline = setTimeout(() => {
  process.stderr.write(`bench:webhooks: FAILED: the run did not finish within ${RUN_DEADLINE_MS / 60_000} minutes; cleaning up\n`);
  void cleanup().finally(() => process.exit(1));
}, RUN_DEADLINE_MS);
deadline.unref();

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    process.stderr.write(`bench:webhooks: ${signal}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  });
}

try {
  await main();
} catch (error) {
  exitCode = 1;
  failures.push(`error: ${error instanceof Error ? error.message : String(error)}`);
  process.stderr.write(`${error instanceof Error ? error.stack : String(error)}\n`);
  const tail = cleanupParts.server?.tail(3_000);
  if (tail) process.stderr.write(`--- server output (tail) ---\n${tail}\n`);
} finally {
  await cleanup();
}
if (failures.length > 0) {
  say(`bench:webhooks: FAILED: ${failures.join('; ')}`);
  exitCode = 1;
} else {
  say('bench:webhooks: all events arrived');
}
process.exit(exitCode);
