import { createRequire } from 'node:module';
import type { ConnectionOptions, JetStreamClient, NatsConnection, PubAck } from 'nats';
import type { OutgoingMessage, SendOutcome } from '../delivery/transport.js';
import { ConnectionKeeper } from './connection-keeper.js';
import { InFlightPublishes, type PendingPublish } from './in-flight.js';
import { OVER_CAP_TEXT, UnansweredBytes } from './unanswered-bytes.js';
import type { NatsConfig, Publisher, PublisherOptions } from './types.js';
import { errorText, type Scrub, secretScrubber, withoutUserinfo } from './redact.js';

const require = createRequire(import.meta.url);

/**
 * NATS JetStream (the `nats` v2 client): a JetStream publish, which succeeds on the stream's PubAck
 * (the message is stored). The event id is the JetStream message id (Nats-Msg-Id), so the stream
 * drops a second copy published within its duplicate window (2 minutes by default): a retry after a
 * lost ack does not store the event twice. No stream bound to the subject: the publish has no
 * responder and fails saying so.
 *
 * The client's own reconnection is off: its reconnect buffer would hold publishes for a server that
 * is gone. The ConnectionKeeper reconnects instead, failing publishes at once in between.
 */

interface NatsLink {
  connection: NatsConnection;
  jetstream: JetStreamClient;
  /** Why the connection closed, once it has. */
  lostReason: string | null;
  /** Bytes received since a publish last settled, counted from the end of the handshake. */
  unanswered: UnansweredBytes;
}

/** The client's socket (nats 2.x NodeTransport keeps it there), or null if a version moves it. */
function socketOf(
  connection: NatsConnection,
): { on(event: 'data', listener: (chunk: Buffer) => void): unknown; destroy(): void } | null {
  const transport = (connection as unknown as { protocol?: { transport?: { socket?: unknown } } }).protocol?.transport;
  const socket = transport?.socket as { on?: unknown; destroy?: unknown } | undefined;
  return socket && typeof socket.on === 'function' && typeof socket.destroy === 'function'
    ? (socket as ReturnType<typeof socketOf>)
    : null;
}

type NatsModule = typeof import('nats');

export function createNatsPublisher(config: NatsConfig, options: PublisherOptions): Publisher {
  return new NatsPublisher(config, options);
}

/** Server URLs without userinfo, and the user/password (or token) found in them: the client ignores URL userinfo. */
export function natsServerAuth(servers: readonly string[]): {
  servers: string[];
  user?: string;
  pass?: string;
  token?: string;
} {
  let user: string | undefined;
  let pass: string | undefined;
  const clean = servers.map((server) => {
    const match = /^([a-z][a-z0-9+.-]*:\/\/)?([^@/]*)@(.*)$/i.exec(server);
    if (match === null) return server;
    const [name, password] = splitUserinfo(match[2]!);
    if (user === undefined) {
      user = name;
      pass = password;
    }
    return `${match[1] ?? ''}${match[3]}`;
  });
  if (user === undefined) return { servers: clean };
  // nats://token@host: a user without a password is a token, as in the other NATS clients.
  if (pass === undefined) return { servers: clean, token: user };
  return { servers: clean, user, pass };
}

function splitUserinfo(userinfo: string): [string, string | undefined] {
  const colon = userinfo.indexOf(':');
  if (colon < 0) return [safeDecode(userinfo), undefined];
  return [safeDecode(userinfo.slice(0, colon)), safeDecode(userinfo.slice(colon + 1))];
}

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

class NatsPublisher implements Publisher {
  private readonly inFlight: InFlightPublishes;
  private readonly keeper: ConnectionKeeper<NatsLink>;
  private readonly scrub: Scrub;
  private readonly subject: string;
  private readonly timeoutMs: number;
  private readonly nats: NatsModule;
  private closed = false;

  constructor(
    private readonly config: NatsConfig,
    options: PublisherOptions,
  ) {
    this.nats = require('nats') as NatsModule;
    this.subject = config.subject;
    this.timeoutMs = options.timeoutMs;
    this.inFlight = new InFlightPublishes(options.timeoutMs, 'no JetStream ack', () => this.keeper.timedOut());
    const auth = natsServerAuth(config.servers);
    this.scrub = secretScrubber([auth.pass, auth.token, ...credentialSecrets(config.credentials)]);
    this.keeper = new ConnectionKeeper<NatsLink>(
      {
        open: (dropped) => this.open(dropped),
        close: (link, reason) => {
          link.lostReason ??= reason;
          return link.connection.close();
        },
        describeOpenError: (error) => this.describeError(error),
      },
      options.timeoutMs,
    );
  }

  publish(message: OutgoingMessage): Promise<SendOutcome> {
    const pending = this.inFlight.begin();
    const link = this.closed ? 'closed' : this.keeper.get();
    if (typeof link === 'string') {
      this.inFlight.fail(pending, link);
    } else if (link instanceof Promise) {
      link.then(
        (opened) => this.send(opened, message, pending),
        (error: Error) => this.inFlight.fail(pending, error.message),
      );
    } else {
      this.send(link, message, pending);
    }
    return pending.outcome;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.inFlight.failAll('closed');
    await this.keeper.close();
  }

  private send(link: NatsLink, message: OutgoingMessage, pending: PendingPublish): void {
    if (pending.settled) return;
    try {
      this.publishOn(link, message, pending);
    } catch (error) {
      // A header the client refuses (a control character in a value…): a failure, never a throw.
      this.inFlight.fail(pending, this.describeError(error));
    }
  }

  private publishOn(link: NatsLink, message: OutgoingMessage, pending: PendingPublish): void {
    const headers = this.nats.headers();
    headers.set('content-type', 'application/json');
    headers.set('type', message.eventType);
    for (const name in message.headers) headers.set(name, message.headers[name]!);
    link.jetstream
      .publish(this.subject, Buffer.from(message.body), {
        msgID: message.eventId,
        headers,
        // Ours bounds it too; the client's own, a little later, frees its request state.
        timeout: this.timeoutMs + 1000,
      })
      .then(
        (_ack: PubAck) => {
          link.unanswered.settled();
          this.keeper.working();
          this.inFlight.succeed(pending);
        },
        (error: unknown) => {
          link.unanswered.settled();
          this.inFlight.fail(pending, this.describePublishError(error, link));
        },
      );
  }

  private describePublishError(error: unknown, link: NatsLink): string {
    // The client fails the requests in flight on a connection that closes as timed out.
    if (link.connection.isClosed()) return `connection lost${link.lostReason === null ? '' : `: ${link.lostReason}`}`;
    return this.describeError(error);
  }

  private async open(dropped: (reason: string) => void): Promise<NatsLink> {
    const auth = natsServerAuth(this.config.servers);
    const options: ConnectionOptions = {
      servers: auth.servers,
      name: 'triggers-api',
      // The keeper bounds the open to timeoutMs and says so; the client's own bound is a backstop.
      timeout: this.timeoutMs + 1000,
      reconnect: false,
      // A server that stops answering: noticed within pingInterval × maxPingOut.
      pingInterval: 10_000,
      maxPingOut: 2,
    };
    if (auth.user !== undefined) {
      options.user = auth.user;
      options.pass = auth.pass;
    }
    if (auth.token !== undefined) options.token = auth.token;
    if (this.config.credentials !== undefined) {
      options.authenticator = this.nats.credsAuthenticator(new TextEncoder().encode(this.config.credentials));
    }
    const connection = await this.nats.connect(options);
    // The client's socket is reachable only once the handshake is done: it is bounded by time alone.
    const socket = socketOf(connection);
    const link: NatsLink = {
      connection,
      jetstream: connection.jetstream({ timeout: this.timeoutMs }),
      lostReason: null,
      unanswered: new UnansweredBytes(() => {
        link.lostReason ??= `the server sent ${OVER_CAP_TEXT} without a publish settling`;
        socket?.destroy();
      }),
    };
    socket?.on('data', (chunk: Buffer) => link.unanswered.received(chunk.length));
    connection.closed().then(
      (error) => {
        link.lostReason ??= error ? this.describeError(error) : 'closed by the server';
        dropped(link.lostReason);
      },
      (error: unknown) => {
        link.lostReason ??= this.describeError(error);
        dropped(link.lostReason);
      },
    );
    return link;
  }

  private describeError(error: unknown): string {
    const code = (error as { code?: unknown } | null)?.code;
    const text = errorText(error);
    if (code === '503') return `no JetStream stream for subject '${this.subject}' (no responders)`;
    if (code === 'AUTHORIZATION_VIOLATION' || /authorization violation/i.test(text)) {
      return 'authentication failed (Authorization Violation)';
    }
    if (code === 'AUTHENTICATION_EXPIRED') return 'authentication failed (credentials expired)';
    if (code === 'TIMEOUT') return `timeout: no JetStream ack within ${this.timeoutMs} ms`;
    const prefix = typeof code === 'string' && code !== '' && !text.includes(code) ? `${code}: ` : '';
    return this.scrub(withoutUserinfo(`${prefix}${text}`));
  }
}

/** The JWT and the seed of a `.creds` file, and each of its lines: never in an error text. */
function credentialSecrets(credentials: string | undefined): string[] {
  if (credentials === undefined) return [];
  const secrets = [credentials];
  for (const line of credentials.split(/\r?\n/)) {
    const trimmed = line.trim();
    if (trimmed.length >= 16 && !trimmed.startsWith('-----') && !trimmed.startsWith('*')) secrets.push(trimmed);
  }
  return secrets;
}
