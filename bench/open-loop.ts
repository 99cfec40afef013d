import http from 'node:http';

export interface OpenLoopResult {
  offeredRps: number;
  sent: number;
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  latencyMs: { p50: number; p95: number; p99: number; max: number };
}

/**
 * Open-loop load: requests are sent on a fixed schedule whatever the answers, and latency is
 * measured from the scheduled send time, so a stalled server shows up in the tail instead of
 * slowing the generator down (no coordinated omission).
 */
export async function openLoop(url: string, body: string, headers: Record<string, string>, rps: number, seconds: number): Promise<OpenLoopResult> {
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
      const req = http.request({ host: target.hostname, port: target.port, path: target.pathname, method: 'POST', agent, headers: { ...headers, 'content-length': Buffer.byteLength(body) } }, (res) => {
        res.resume();
        res.on('end', () => {
          latencies.push(performance.now() - scheduledAt);
          statuses[res.statusCode!] = (statuses[res.statusCode!] ?? 0) + 1;
          if (res.statusCode! < 300) ok++;
          else errors++;
          resolve();
        });
      });
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
      // 1 ms timer, not setImmediate: a spinning generator would take a core from the server.
      setTimeout(tick, 1);
    };
    tick();
  });
  await Promise.all(inFlight);
  agent.destroy();
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? 0;
  return { offeredRps: rps, sent, ok, errors, statuses, latencyMs: { p50: pct(50), p95: pct(95), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 } };
}
