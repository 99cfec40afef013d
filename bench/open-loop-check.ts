import { spawn, type ChildProcess } from 'node:child_process';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../test/helpers/server.js';
import { openLoop, type OpenLoopResult } from './open-loop.js';
import { ResponseParser } from './open-loop-http.js';
import { cpuSeconds, descendantsOf, machineBusySeconds } from './proc-stats.js';

/**
 * Proof for the raw-socket open-loop generator: what it costs in CPU next to the node:http one it
 * replaced, at the same rate against the same server, and that it still counts right.
 *
 *   npx tsc -p . && node dist/bench/open-loop-check.js
 *   CHECK_RATE=5000 CHECK_SECONDS=10 CHECK_ROUNDS=2 node dist/bench/open-loop-check.js
 *   CHECK_ONLY=compare | correctness
 *
 * compare:     bare uWS (bench/bare-uws, 1 worker) at CHECK_RATE for CHECK_SECONDS, old then new
 *              generator, CHECK_ROUNDS times; prints each generator's own CPU seconds, the server's,
 *              the whole machine's and the rest (other_cpu_s: other processes on a shared machine),
 *              with sent/ok/errors and p50/p99.
 * correctness: parser cases (split reads, chunked, 1xx, Connection: close), then the generator
 *              against a node:http server: chunked answers, Connection: close answers, answers
 *              slower than the connection cap (requests queue), answers that never come (drain
 *              timeout), a port nobody listens on.
 */
const RATE = Number(process.env.CHECK_RATE || 5000);
const SECONDS = Number(process.env.CHECK_SECONDS || 10);
const ROUNDS = Number(process.env.CHECK_ROUNDS || 1);
const ONLY = process.env.CHECK_ONLY;
const here = path.dirname(fileURLToPath(import.meta.url));
const EVENT = JSON.stringify({
  type: 'bench.event',
  payload: {
    user_id: 12345,
    email: 'someone@example.com',
    plan: 'pro',
    tags: ['a', 'b', 'c'],
    amount: 49.5,
    note: 'x'.repeat(120),
  },
});
const HEADERS = { 'Content-Type': 'application/json', Authorization: 'Bearer not-a-real-key' };

/** The generator as it was before (node:http with a keep-alive Agent), kept verbatim as the baseline. */
async function openLoopNodeHttp(
  url: string,
  body: string,
  headers: Record<string, string>,
  rps: number,
  seconds: number,
): Promise<OpenLoopResult> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: 512 });
  const target = new URL(url);
  const latencies: number[] = [];
  const statuses: Record<string, number> = {};
  let sent = 0;
  let ok = 0;
  let errors = 0;
  const inFlight = new Set<Promise<void>>();
  const start = performance.now();
  const total = Math.round(rps * seconds);
  const fire = (scheduledAt: number) => {
    sent++;
    const done = new Promise<void>((resolve) => {
      const req = http.request(
        {
          host: target.hostname,
          port: target.port,
          path: target.pathname,
          method: 'POST',
          agent,
          headers: { ...headers, 'content-length': Buffer.byteLength(body) },
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            latencies.push(performance.now() - scheduledAt);
            statuses[res.statusCode!] = (statuses[res.statusCode!] ?? 0) + 1;
            if (res.statusCode! < 300) ok++;
            else errors++;
            resolve();
          });
        },
      );
      req.on('error', (error: NodeJS.ErrnoException) => {
        errors++;
        statuses[error.code ?? 'error'] = (statuses[error.code ?? 'error'] ?? 0) + 1;
        resolve();
      });
      req.end(body);
    });
    inFlight.add(done);
    void done.then(() => inFlight.delete(done));
  };
  await new Promise<void>((resolve) => {
    const tick = () => {
      const elapsed = performance.now() - start;
      const due = Math.min(total, Math.floor((elapsed / 1000) * rps));
      while (sent < due) fire(start + (sent / rps) * 1000);
      if (sent >= total) return resolve();
      setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(inFlight);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return {
    offeredRps: rps,
    sent,
    ok,
    errors,
    statuses,
    latencyMs: { p50: pct(50), p95: pct(95), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 },
  };
}

let failures = 0;
function expect(condition: boolean, what: string): void {
  process.stdout.write(`${condition ? 'ok  ' : 'FAIL'} ${what}\n`);
  if (!condition) failures++;
}

/** Feeds the parser the response cut into the given pieces, through one reused buffer like the sockets do. */
function parse(pieces: string[]): { results: number[]; closeAfter: boolean } {
  const parser = new ResponseParser();
  const shared = Buffer.alloc(4096, 0x7a);
  const results: number[] = [];
  for (const piece of pieces) {
    shared.fill(0x7a);
    const length = shared.write(piece, 'latin1');
    results.push(parser.feed(shared, length));
  }
  return { results, closeAfter: parser.closeAfter };
}

function parserCases(): void {
  const plain = 'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello';
  expect(parse([plain]).results.join() === '202', 'parser: whole response in one read');
  expect(
    parse([plain.slice(0, 7), plain.slice(7, 40), plain.slice(40, 80), plain.slice(80)]).results.join() === '0,0,0,202',
    'parser: response split across four reads',
  );
  expect(parse([plain, plain]).results.join() === '202,202', 'parser: two responses in two reads on one connection');
  expect(parse([plain + plain]).closeAfter, 'parser: bytes past the response mark the connection unusable');
  expect(
    parse(['HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n']).results.join() === '200',
    'parser: empty body, lower-case header',
  );
  const chunked = 'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;x=1\r\nabc\r\n0\r\n\r\n';
  expect(parse([chunked]).results.join() === '200', 'parser: chunked in one read');
  expect(
    parse([chunked.slice(0, 50), chunked.slice(50, 60), chunked.slice(60)]).results.join() === '0,0,200',
    'parser: chunked split',
  );
  expect(
    parse(['HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok']).results.join() ===
      '201',
    'parser: 100 Continue then the answer',
  );
  const closing = parse(['HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n']);
  expect(closing.results.join() === '503' && closing.closeAfter, 'parser: Connection: close is honoured');
  expect(parse(['HTTP/1.1 204 No Content\r\n\r\n']).results.join() === '204', 'parser: 204 has no body');
  expect(parse(['garbage garbage\r\n\r\n']).results.join() === '-1', 'parser: not HTTP');
  const untilClose = new ResponseParser();
  const head = Buffer.from('HTTP/1.0 200 OK\r\n\r\nbody');
  expect(
    untilClose.feed(head, head.length) === 0 && untilClose.finishOnClose() === 200,
    'parser: body delimited by close',
  );
}

/** node:http server for the odd cases; listens on `port`, prints 'ready'. */
const ODD_SERVER = `
const http = require('node:http');
http.createServer((req, res) => {
  req.resume();
  req.on('end', () => {
    if (req.url === '/chunked') { res.writeHead(200); res.write('a'); res.end('b'); }
    else if (req.url === '/close') { res.writeHead(503, { 'Connection': 'close', 'Content-Length': '0' }); res.end(); }
    else if (req.url === '/slow') setTimeout(() => { res.writeHead(202, { 'Content-Length': '2' }); res.end('ok'); }, 1500);
    else if (req.url === '/hang') {}
    else { res.writeHead(404, { 'Content-Length': '0' }); res.end(); }
  });
}).listen(Number(process.env.PORT), '127.0.0.1', () => process.stdout.write('ready\\n'));
`;

async function startChild(args: string[], env: Record<string, string>): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`server exited with ${code}`)));
    child.stdout!.on('data', (d) => {
      if (String(d).includes('ready')) resolve();
    });
  });
  return child;
}

async function stopChild(child: ChildProcess): Promise<void> {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

async function correctness(): Promise<void> {
  parserCases();
  const port = await freePort();
  const server = await startChild(['-e', ODD_SERVER], { PORT: String(port) });
  try {
    const base = `http://127.0.0.1:${port}`;
    const chunked = await openLoop(`${base}/chunked`, EVENT, HEADERS, 500, 2);
    expect(
      chunked.sent === 1000 && chunked.ok === 1000 && chunked.errors === 0,
      `chunked answers: ${JSON.stringify(chunked.statuses)} sent ${chunked.sent}`,
    );
    const closing = await openLoop(`${base}/close`, EVENT, HEADERS, 300, 2);
    expect(
      closing.sent === 600 && closing.statuses['503'] === 600 && closing.errors === 600 && closing.ok === 0,
      `Connection: close answers: ${JSON.stringify(closing.statuses)}`,
    );
    // 1 000 req/s answered after 1.5 s: ~1 500 in flight against a cap of 512 connections, so most wait in the queue.
    const slow = await openLoop(`${base}/slow`, EVENT, HEADERS, 1000, 2);
    expect(
      slow.sent === 2000 && slow.ok === 2000 && slow.latencyMs.p99 > 2500,
      `answers slower than the connection cap: ok ${slow.ok}, p50 ${slow.latencyMs.p50.toFixed(0)} ms, p99 ${slow.latencyMs.p99.toFixed(0)} ms (queued requests keep their scheduled time)`,
    );
    const began = performance.now();
    const hang = await openLoop(`${base}/hang`, EVENT, HEADERS, 100, 1);
    const took = (performance.now() - began) / 1000;
    expect(
      hang.sent === 100 && hang.statuses.timeout === 100 && hang.errors === 100 && took < 13,
      `answers that never come: ${JSON.stringify(hang.statuses)} after ${took.toFixed(1)} s`,
    );
  } finally {
    await stopChild(server);
  }
  const nobody = await openLoop(`http://127.0.0.1:${await freePort()}/v1/events`, EVENT, HEADERS, 200, 1);
  expect(
    nobody.sent === 200 && nobody.errors === 200 && nobody.statuses.ECONNREFUSED === 200,
    `nobody listening: ${JSON.stringify(nobody.statuses)}`,
  );
}

type Generator = typeof openLoop;

async function measure(name: string, generator: Generator, url: string, server: ChildProcess) {
  const serverPids = () => [server.pid!, ...descendantsOf(server.pid!)];
  const serverCpu = () => serverPids().reduce((sum, pid) => sum + cpuSeconds(pid), 0);
  const cpuBefore = process.cpuUsage();
  const serverBefore = serverCpu();
  const machineBefore = machineBusySeconds();
  const began = performance.now();
  const result = await generator(url, EVENT, HEADERS, RATE, SECONDS);
  const wall = (performance.now() - began) / 1000;
  const cpu = process.cpuUsage(cpuBefore);
  const generatorCpu = (cpu.user + cpu.system) / 1e6;
  const serverCpuSeconds = serverCpu() - serverBefore;
  const machineBusy = machineBusySeconds() - machineBefore;
  return {
    generator: name,
    wall_s: +wall.toFixed(1),
    generator_cpu_s: +generatorCpu.toFixed(2),
    generator_cores: +(generatorCpu / wall).toFixed(3),
    server_cpu_s: +serverCpuSeconds.toFixed(2),
    machine_busy_s: +machineBusy.toFixed(2),
    // Whatever else ran (other processes on a shared machine, softirq): well above ~1 s means the figures are disturbed.
    other_cpu_s: +Math.max(0, machineBusy - generatorCpu - serverCpuSeconds).toFixed(2),
    sent: result.sent,
    ok: result.ok,
    errors: result.errors,
    p50_ms: +result.latencyMs.p50.toFixed(2),
    p99_ms: +result.latencyMs.p99.toFixed(2),
    max_ms: +result.latencyMs.max.toFixed(1),
  };
}

async function compare(): Promise<void> {
  const port = await freePort();
  const server = await startChild([path.join(here, 'bare-uws.js')], { PORT: String(port), WORKERS: '1' });
  const url = `http://127.0.0.1:${port}/v1/events`;
  try {
    // Warm both the server and the generator's JIT so the first measured run is not penalised.
    await openLoop(url, EVENT, HEADERS, 1000, 1);
    await openLoopNodeHttp(url, EVENT, HEADERS, 1000, 1);
    const rows = [];
    for (let round = 0; round < ROUNDS; round++) {
      rows.push(await measure('old node:http + Agent', openLoopNodeHttp, url, server));
      rows.push(await measure('new raw net sockets', openLoop, url, server));
    }
    process.stdout.write(`\n${RATE} req/s for ${SECONDS} s against bare uWS (1 worker), 2-core machine:\n`);
    console.table(rows);
    for (const row of rows)
      expect(
        row.sent === Math.round(RATE * SECONDS) && row.ok === row.sent && row.errors === 0,
        `${row.generator}: every request answered 2xx`,
      );
  } finally {
    await stopChild(server);
  }
}

if (ONLY !== 'compare') await correctness();
if (ONLY !== 'correctness') await compare();
process.stdout.write(failures === 0 ? '\nall checks passed\n' : `\n${failures} check(s) FAILED\n`);
process.exit(failures === 0 ? 0 : 1);
