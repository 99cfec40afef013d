import http from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The webhook receiver of `npm run bench:webhooks`, run as its own child process (forked with an
 * IPC channel) so that its CPU can be measured apart from the server's and the bench's.
 *
 * A node:http server on 127.0.0.1:0 with keep-alive. Every request is recorded under its path
 * (one path per endpoint): the number of requests, and for each distinct `webhook-id` the time
 * of its first arrival (performance.timeOrigin + performance.now(), the same clock as the
 * parent's). What it answers depends on the path:
 *   /hang/…  never answers (the socket stays open until the sender gives up)
 *   /fail/…  500 at once
 *   else     200 at once, with a 2-byte body
 *
 * IPC: it sends {type: 'ready', port} once listening; the parent sends {seq, cmd, …} and gets
 * {seq, …} back:
 *   counts {prefix}  per path starting with prefix: {requests, distinct, duplicates, last}
 *   dump {path}      {ids, at, requests, duplicates}: every distinct webhook-id and its first arrival
 *   close            closes every connection (hung ones too) and exits
 */

interface PathLog {
  requests: number;
  duplicates: number;
  /** webhook-id → first arrival (ms since the epoch, fractional). */
  first: Map<string, number>;
  last: number;
}

export interface PathCounts {
  requests: number;
  distinct: number;
  duplicates: number;
  last: number;
}

export interface PathDump {
  ids: string[];
  at: number[];
  requests: number;
  duplicates: number;
}

const now = () => performance.timeOrigin + performance.now();
const logs = new Map<string, PathLog>();
const hung = new Set<http.ServerResponse>();

const server = http.createServer((req, res) => {
  const at = now();
  const path = req.url ?? '/';
  let log = logs.get(path);
  if (!log) logs.set(path, (log = { requests: 0, duplicates: 0, first: new Map(), last: 0 }));
  log.requests++;
  log.last = at;
  const header = req.headers['webhook-id'];
  const id = Array.isArray(header) ? (header[0] ?? '') : (header ?? '');
  if (log.first.has(id)) log.duplicates++;
  else log.first.set(id, at);

  if (path.startsWith('/hang/')) {
    req.resume();
    hung.add(res);
    res.on('close', () => hung.delete(res));
    return;
  }
  const status = path.startsWith('/fail/') ? 500 : 200;
  req.on('end', () => {
    res.writeHead(status, { 'content-type': 'text/plain', 'content-length': '2' });
    res.end('ok');
  });
  req.resume();
});
// Keep idle connections open longer than any sender's own keep-alive; never time a request out
// (a hung request ends when the sender gives up).
server.keepAliveTimeout = 120_000;
server.headersTimeout = 0;
server.requestTimeout = 0;

server.listen(0, '127.0.0.1', () => {
  process.send!({ type: 'ready', port: (server.address() as AddressInfo).port });
});

process.on('message', (message: { seq: number; cmd: string; prefix?: string; path?: string }) => {
  const reply = (body: object) => process.send!({ seq: message.seq, ...body });
  switch (message.cmd) {
    case 'counts': {
      const paths: Record<string, PathCounts> = {};
      for (const [path, log] of logs) {
        if (path.startsWith(message.prefix ?? '')) {
          paths[path] = {
            requests: log.requests,
            distinct: log.first.size,
            duplicates: log.duplicates,
            last: log.last,
          };
        }
      }
      reply({ paths });
      break;
    }
    case 'dump': {
      const log = logs.get(message.path ?? '');
      const dump: PathDump = { ids: [], at: [], requests: log?.requests ?? 0, duplicates: log?.duplicates ?? 0 };
      for (const [id, at] of log?.first ?? []) {
        dump.ids.push(id);
        dump.at.push(at);
      }
      reply(dump);
      break;
    }
    case 'close': {
      for (const res of hung) res.destroy();
      server.closeAllConnections();
      server.close(() => {
        reply({ closed: true });
        process.disconnect();
      });
      break;
    }
    default:
      reply({ error: `unknown command ${message.cmd}` });
  }
});

// The parent went away (crash, Ctrl-C): do not outlive it.
process.on('disconnect', () => process.exit(0));
