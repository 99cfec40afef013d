import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface WrkResult {
  requests: number;
  non2xx: number;
  socketErrors: number;
  seconds: number;
  rps: number;
  latencyMs: { p50: number; p90: number; p99: number };
}

/**
 * Runs wrk with a Lua script that POSTs `body`; parses requests, errors and latency percentiles.
 * `authorizations`: Authorization values taken in turn, one per request (several orgs in one run);
 * each thread builds its requests once at init, so a request costs a table look-up.
 */
export async function wrkPost(
  url: string,
  body: string,
  headers: Record<string, string>,
  options: { connections: number; seconds: number; threads?: number; rate?: number; authorizations?: string[] },
): Promise<WrkResult> {
  const script = path.join(os.tmpdir(), `triggers-wrk-${process.pid}.lua`);
  const lua = [
    'wrk.method = "POST"',
    `wrk.body = ${luaString(body)}`,
    ...Object.entries(headers).map(([name, value]) => `wrk.headers[${luaString(name)}] = ${luaString(value)}`),
    ...(options.authorizations?.length ? rotatingAuthorization(options.authorizations) : []),
    'done = function(summary, latency, requests)',
    '  io.write(string.format("JSON{\\"p50\\":%f,\\"p90\\":%f,\\"p99\\":%f}\\n", latency:percentile(50)/1000, latency:percentile(90)/1000, latency:percentile(99)/1000))',
    'end',
  ].join('\n');
  fs.writeFileSync(script, lua);
  try {
    const args = [
      '-t',
      String(options.threads ?? 2),
      '-c',
      String(options.connections),
      '-d',
      `${options.seconds}s`,
      '--latency',
      '-s',
      script,
      url,
    ];
    const { stdout } = await run('wrk', args, { maxBuffer: 1 << 20 });
    const requests = Number(/(\d+) requests in /.exec(stdout)?.[1] ?? 0);
    const duration = /\d+ requests in ([\d.]+)(ms|s|m)/.exec(stdout);
    const seconds = duration
      ? Number(duration[1]) * (duration[2] === 'ms' ? 0.001 : duration[2] === 'm' ? 60 : 1)
      : options.seconds;
    const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
    const errors = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
    const socketErrors = errors ? errors.slice(1).reduce((sum, n) => sum + Number(n), 0) : 0;
    const latency = JSON.parse(/JSON(\{.*\})/.exec(stdout)?.[1] ?? '{"p50":0,"p90":0,"p99":0}');
    return { requests, non2xx, socketErrors, seconds, rps: requests / seconds, latencyMs: latency };
  } finally {
    fs.rmSync(script, { force: true });
  }
}

function rotatingAuthorization(values: string[]): string[] {
  return [
    'local requests = {}',
    'local turn = 0',
    'init = function(args)',
    `  for i, value in ipairs({ ${values.map(luaString).join(', ')} }) do`,
    '    wrk.headers["Authorization"] = value',
    '    requests[i] = wrk.format()',
    '  end',
    'end',
    'request = function()',
    '  turn = turn % #requests + 1',
    '  return requests[turn]',
    'end',
  ];
}

function luaString(value: string): string {
  return '"' + value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') + '"';
}
