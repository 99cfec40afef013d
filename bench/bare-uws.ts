import cluster from 'node:cluster';
import { randomUUID } from 'node:crypto';
import { loadUws, UwsUnavailableError } from '../src/http/uws.js';

/**
 * The baseline for the load benchmark: the same uWS build, the same number of processes
 * (SO_REUSEPORT), reading the body, parsing the JSON and answering 202 - and nothing else:
 * no auth, no validation, no database. The full server's req/s is reported as a ratio to this.
 */
const port = Number(process.env.PORT);
const workers = Number(process.env.WORKERS || 2);
// BARE_HEADERS (bench/bare-headers.ts): also answer the server's five contract headers
// (X-Request-Id, X-Response-Time, RateLimit-*), one writeHeader call each or joined in one call;
// 'strings' and 'encoded' also read the six request headers the server reads, and pass every
// constant to uWS as a string or as bytes encoded once (src/http/context.ts, respond.ts).
const headers = process.env.BARE_HEADERS || 'none';
const READ = ['x-request-id', 'authorization', 'x-api-key', 'content-type', 'content-length', 'idempotency-key'];
const READ_ENCODED = READ.map((name) => Buffer.from(name));
const ENCODED = {
  status: Buffer.from('202 Accepted'),
  requestId: Buffer.from('X-Request-Id'),
  contentType: Buffer.from('Content-Type'),
  json: Buffer.from('application/json'),
};
const STRINGS = {
  status: '202 Accepted',
  requestId: 'X-Request-Id',
  contentType: 'Content-Type',
  json: 'application/json',
};

if (cluster.isPrimary) {
  // The same build choice as the server, checked before forking (src/main.ts does the same).
  try {
    loadUws();
  } catch (error) {
    if (!(error instanceof UwsUnavailableError)) throw error;
    process.stderr.write(`${error.message}\n`);
    process.exit(1);
  }
  for (let i = 0; i < workers; i++) cluster.fork();
  let ready = 0;
  cluster.on('message', () => {
    if (++ready === workers) process.stdout.write('bare uWS ready\n');
  });
  process.on('SIGTERM', () => {
    for (const worker of Object.values(cluster.workers ?? {})) worker?.kill();
    process.exit(0);
  });
} else {
  const uws = loadUws();
  uws
    .App()
    .post('/v1/events', (res, req) => {
      const started = performance.now();
      let requestId = '';
      if (headers === 'strings' || headers === 'encoded') {
        const names = headers === 'strings' ? READ : READ_ENCODED;
        const read = names.map((name) => req.getHeader(name));
        requestId = read[0] || randomUUID();
      } else if (headers !== 'none') {
        requestId = req.getHeader('x-request-id') || randomUUID();
      }
      let aborted = false;
      res.onAborted(() => {
        aborted = true;
      });
      let body = Buffer.alloc(0);
      res.onData((chunk, isLast) => {
        body = Buffer.concat([body, Buffer.from(chunk)]);
        if (!isLast || aborted) return;
        const event = JSON.parse(body.toString('utf8'));
        res.cork(() => {
          if (headers === 'strings' || headers === 'encoded') {
            const constants = headers === 'strings' ? STRINGS : ENCODED;
            const time = (performance.now() - started).toFixed(2) + 'ms';
            res
              .writeStatus(constants.status)
              .writeHeader(
                constants.requestId,
                requestId +
                  '\r\nX-Response-Time: ' +
                  time +
                  '\r\nRateLimit-Limit: 1000\r\nRateLimit-Remaining: 999\r\nRateLimit-Reset: 0',
              )
              .writeHeader(constants.contentType, constants.json)
              .end('{"id":"00000000-0000-7000-8000-000000000000","status":"accepted","type":"' + event.type + '"}');
            return;
          }
          res.writeStatus('202 Accepted');
          const time = (performance.now() - started).toFixed(2) + 'ms';
          if (headers === 'separate') {
            res
              .writeHeader('X-Request-Id', requestId)
              .writeHeader('X-Response-Time', time)
              .writeHeader('RateLimit-Limit', '1000')
              .writeHeader('RateLimit-Remaining', '999')
              .writeHeader('RateLimit-Reset', '0');
          } else if (headers === 'joined') {
            res.writeHeader(
              'X-Request-Id',
              requestId +
                '\r\nX-Response-Time: ' +
                time +
                '\r\nRateLimit-Limit: 1000\r\nRateLimit-Remaining: 999\r\nRateLimit-Reset: 0',
            );
          }
          res
            .writeHeader('Content-Type', 'application/json')
            .end('{"id":"00000000-0000-7000-8000-000000000000","status":"accepted","type":"' + event.type + '"}');
        });
      });
    })
    .listen('127.0.0.1', port, (token) => {
      if (!token) throw new Error(`bare uWS cannot listen on ${port}`);
      process.send?.('ready');
    });
}
