import net from 'node:net';
import tls from 'node:tls';
import type { DatabaseTarget } from './database-url.js';

/**
 * Opens the socket a Postgres session runs on, TLS negotiated as the target's sslmode says. Both
 * the `postgres` client (connect.ts, through its `socket` option, with its own `ssl` off) and the
 * COPY connections (wire.ts) connect through here: one TLS policy, by construction.
 *
 * - disable: plain. prefer: SSLRequest; TLS if the server says S, plain if N.
 * - require, verify-ca, verify-full: SSLRequest; N is an error. Verification is in target.tls
 *   (built once at start by database-url.ts), checked on every new connection.
 * TCP sockets get TCP_NODELAY (measured without it: every COPY stalls ~88 ms, Nagle + delayed ACK)
 * and keepalive. `connectTimeoutMs` bounds the connect and the TLS handshake together.
 */
export function openTransport(target: DatabaseTarget): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    let current: net.Socket = target.path
      ? net.connect({ path: target.path })
      : net.connect({
          host: target.host,
          port: target.port,
          noDelay: true,
          keepAlive: true,
          keepAliveInitialDelay: 60_000,
        });
    const where = target.path ?? `${target.host}:${target.port}`;
    const timer = setTimeout(
      () => fail(new Error(`connect to Postgres at ${where} timed out after ${target.connectTimeoutMs} ms`)),
      target.connectTimeoutMs,
    );
    const fail = (error: Error) => {
      clearTimeout(timer);
      current.destroy();
      reject(error);
    };
    const done = (socket: net.Socket) => {
      clearTimeout(timer);
      socket.removeListener('error', fail);
      resolve(socket);
    };
    current.once('error', fail);
    current.once('connect', () => {
      if (!target.tls) return done(current);
      const plain = current;
      // SSLRequest: length 8, code 80877103.
      plain.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
      const closedEarly = () =>
        fail(new Error(`Postgres at ${where} closed the connection before answering the TLS request`));
      const onAnswer = (answer: Buffer) => {
        plain.removeListener('data', onAnswer);
        plain.removeListener('close', closedEarly);
        // Bytes after the one-byte answer were sent before the handshake, so no one vouches for
        // them (CVE-2021-23222): refuse rather than read them as the server's.
        if (answer.length > 1)
          return fail(
            new Error('Postgres sent unexpected data after its answer to the TLS request; connection refused'),
          );
        if (answer[0] === 0x4e) {
          // N
          if (target.sslmode === 'prefer') return done(plain);
          return fail(new Error(`Postgres at ${where} does not offer TLS, and sslmode=${target.sslmode} requires it`));
        }
        if (answer[0] !== 0x53) return fail(new Error(`unexpected answer to the TLS request from ${where}`));
        const secure = tls.connect({ ...target.tls, socket: plain });
        current = secure;
        const handshakeFailed = (error: Error) =>
          fail(new Error(`TLS to Postgres at ${where} (sslmode=${target.sslmode}): ${error.message}`));
        secure.once('error', handshakeFailed);
        secure.once('secureConnect', () => {
          plain.removeListener('error', fail);
          secure.removeListener('error', handshakeFailed);
          done(secure);
        });
      };
      plain.on('data', onAnswer);
      plain.once('close', closedEarly);
    });
  });
}
