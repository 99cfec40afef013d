import net from 'node:net';
import { buildRequest, ResponseParser } from './open-loop-http.js';

export interface OpenLoopResult {
  offeredRps: number;
  sent: number;
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
}

/** Connections are opened on demand, when a request is due and none is idle. */
const MAX_CONNECTIONS = 512;
/** After the schedule ends, answers are awaited this long; what is still outstanding then counts as 'timeout'. */
const DRAIN_TIMEOUT_MS = 10_000;
/**
 * One read buffer shared by every socket: reads are handed to us synchronously one at a time and the
 * parser copies only the rare partial header it must keep, so nothing is allocated per read.
 */
const READ_BUFFER = Buffer.allocUnsafe(64 * 1024);

/** One keep-alive connection carrying at most one request at a time (no pipelining: latency per request stays honest). */
interface Connection {
  socket: net.Socket;
  parser: ResponseParser;
  /** Scheduled send time of the request in flight, NaN when idle. */
  scheduledAt: number;
  closed: boolean;
}

/**
 * Open-loop load: requests are sent on a fixed schedule whatever the answers, and latency is
 * measured from the scheduled send time, so a stalled server shows up in the tail instead of
 * slowing the generator down (no coordinated omission).
 *
 * Built on raw sockets rather than node:http because the generator shares the machine's cores
 * with the server it measures: one pre-built request Buffer written with one write, a parser that
 * only looks for the status code and the end of the response, and a 1 ms timer. At 5 000 req/s
 * node:http with an Agent took 0.5-0.9 of a core and starved the server; this takes ~0.15, about
 * one write and one read syscall per request (bench/open-loop-check compares the two).
 */
export async function openLoop(
  url: string,
  body: string,
  headers: Record<string, string>,
  rps: number,
  seconds: number,
): Promise<OpenLoopResult> {
  const target = new URL(url);
  const host = target.hostname.replace(/^\[|\]$/g, '');
  const port = Number(target.port || 80);
  const request = buildRequest('POST', target, headers, body);
  const total = Math.round(rps * seconds);
  const latencies = new Float64Array(total);
  let answered = 0;
  const statuses: Record<string, number> = {};
  let sent = 0;
  let ok = 0;
  let errors = 0;
  let outstanding = 0;
  const idle: Connection[] = [];
  const all = new Set<Connection>();
  /** Scheduled times of requests that were due while every allowed connection was busy (FIFO). */
  const queued: number[] = [];
  let queueHead = 0;
  let onSettled: (() => void) | null = null;

  const count = (key: string) => {
    statuses[key] = (statuses[key] ?? 0) + 1;
  };
  const settle = () => {
    outstanding--;
    if (outstanding === 0 && onSettled) onSettled();
  };

  const send = (conn: Connection, scheduledAt: number) => {
    conn.scheduledAt = scheduledAt;
    conn.socket.write(request);
  };

  /** The connection is free again: the oldest queued request goes first, else it waits in the idle list. */
  const takeQueued = (): number => {
    const scheduledAt = queued[queueHead++]!;
    if (queueHead === queued.length) {
      queued.length = 0;
      queueHead = 0;
    }
    return scheduledAt;
  };
  const release = (conn: Connection) => {
    conn.scheduledAt = NaN;
    if (queueHead < queued.length) send(conn, takeQueued());
    else idle.push(conn);
  };

  const lose = (conn: Connection, reason: string) => {
    if (conn.closed) return;
    conn.closed = true;
    all.delete(conn);
    const at = idle.indexOf(conn);
    if (at >= 0) idle.splice(at, 1);
    conn.socket.destroy();
    if (!Number.isNaN(conn.scheduledAt)) {
      conn.scheduledAt = NaN;
      errors++;
      count(reason);
      settle();
    }
    // Requests queued behind a lost connection must not wait for a connection that will never free up.
    if (queueHead < queued.length && all.size < MAX_CONNECTIONS) open(takeQueued());
  };

  const open = (scheduledAt: number) => {
    const conn: Connection = {
      socket: null as unknown as net.Socket,
      parser: new ResponseParser(),
      scheduledAt,
      closed: false,
    };
    conn.socket = net.connect({
      host,
      port,
      noDelay: true,
      onread: {
        buffer: READ_BUFFER,
        callback: (length) => {
          const status = conn.parser.feed(READ_BUFFER, length);
          if (status === 0) return true;
          if (status < 0) {
            lose(conn, 'bad_response');
            return false;
          }
          if (Number.isNaN(conn.scheduledAt)) {
            lose(conn, 'unsolicited_response');
            return false;
          }
          latencies[answered++] = performance.now() - conn.scheduledAt;
          conn.scheduledAt = NaN;
          count(String(status));
          if (status < 300) ok++;
          else errors++;
          settle();
          if (conn.parser.closeAfter) lose(conn, 'closed');
          else release(conn);
          return true;
        },
      },
    });
    // The first request is written before the connection completes; net queues it until then.
    conn.socket.write(request);
    conn.socket.on('error', (error: NodeJS.ErrnoException) => lose(conn, error.code ?? 'error'));
    conn.socket.on('close', () => {
      if (conn.closed) return;
      // A response delimited by the end of the connection (no Content-Length, not chunked) ends here.
      const status = conn.parser.finishOnClose();
      if (status > 0 && !Number.isNaN(conn.scheduledAt)) {
        latencies[answered++] = performance.now() - conn.scheduledAt;
        count(String(status));
        if (status < 300) ok++;
        else errors++;
        conn.scheduledAt = NaN;
        settle();
      }
      lose(conn, 'ECONNRESET');
    });
    all.add(conn);
  };

  const fire = (scheduledAt: number) => {
    sent++;
    outstanding++;
    const conn = idle.pop();
    if (conn) send(conn, scheduledAt);
    else if (all.size < MAX_CONNECTIONS) open(scheduledAt);
    else queued.push(scheduledAt);
  };

  const start = performance.now();
  await new Promise<void>((resolve) => {
    // 1 ms timer, not setImmediate: a spinning generator would take a core from the server.
    const timer = setInterval(() => {
      const due = Math.min(total, Math.floor(((performance.now() - start) / 1000) * rps));
      while (sent < due) fire(start + (sent / rps) * 1000);
      if (sent >= total) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });

  if (outstanding > 0) {
    await new Promise<void>((resolve) => {
      const deadline = setTimeout(resolve, DRAIN_TIMEOUT_MS);
      onSettled = () => {
        clearTimeout(deadline);
        resolve();
      };
    });
  }
  onSettled = null;
  if (outstanding > 0) {
    errors += outstanding;
    statuses.timeout = (statuses.timeout ?? 0) + outstanding;
    outstanding = 0;
  }
  for (const conn of all) {
    conn.closed = true;
    conn.socket.destroy();
  }
  all.clear();

  const sorted = latencies.subarray(0, answered).sort();
  const pct = (p: number) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
  return {
    offeredRps: rps,
    sent,
    ok,
    errors,
    statuses,
    latencyMs: { p50: pct(50), p95: pct(95), p99: pct(99), max: sorted[sorted.length - 1] ?? 0 },
  };
}
