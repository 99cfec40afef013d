import { createRequire } from 'node:module';
import type { Redis } from 'ioredis';
import type { OutgoingMessage, SendOutcome } from '../delivery/transport.js';
import { ConnectionKeeper } from './connection-keeper.js';
import { InFlightPublishes, type PendingPublish } from './in-flight.js';
import { OVER_CAP_TEXT, UnansweredBytes } from './unanswered-bytes.js';
import type { Publisher, PublisherOptions, RedisStreamConfig } from './types.js';
import { errorText, type Scrub, secretScrubber, urlPassword } from './redact.js';

const require = createRequire(import.meta.url);

/**
 * Redis Streams (ioredis): one `XADD stream [MAXLEN ~ n] * body … type … webhook-id …
 * webhook-timestamp … webhook-signature …` per message; the reply (the entry id) is the success.
 * Concurrent publishes share the connection, written together by auto-pipelining.
 *
 * The client's offline queue and its own reconnection are off: a command never waits for a
 * connection that may not come back. The ConnectionKeeper reconnects instead.
 */

/** One connection, and why it closed once it has. */
interface RedisLink {
  redis: Redis;
  lostReason: string | null;
  /** The last 'error' the client emitted, described. */
  lastError: string | null;
  /** Bytes received since a reply was last read whole. */
  unanswered: UnansweredBytes;
}

export function createRedisStreamPublisher(config: RedisStreamConfig, options: PublisherOptions): Publisher {
  return new RedisStreamPublisher(config, options);
}

class RedisStreamPublisher implements Publisher {
  private readonly inFlight: InFlightPublishes;
  private readonly keeper: ConnectionKeeper<RedisLink>;
  private readonly scrub: Scrub;
  private readonly stream: string;
  private readonly maxlen: string | null;
  private closed = false;

  constructor(
    private readonly config: RedisStreamConfig,
    private readonly options: PublisherOptions,
  ) {
    this.stream = config.stream;
    this.maxlen = config.maxlen === undefined ? null : String(config.maxlen);
    this.inFlight = new InFlightPublishes(options.timeoutMs, 'no XADD reply', () => this.keeper.timedOut());
    this.scrub = secretScrubber([urlPassword(config.url)]);
    this.keeper = new ConnectionKeeper<RedisLink>(
      {
        open: (dropped) => this.open(dropped),
        close: async (link, reason) => {
          link.lostReason ??= reason;
          link.redis.disconnect();
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

  private send(link: RedisLink, message: OutgoingMessage, pending: PendingPublish): void {
    if (pending.settled) return;
    const redis = link.redis;
    const headers = message.headers;
    const reply =
      this.maxlen === null
        ? redis.xadd(
            this.stream,
            '*',
            'body',
            message.body,
            'type',
            message.eventType,
            'webhook-id',
            headers['webhook-id']!,
            'webhook-timestamp',
            headers['webhook-timestamp']!,
            'webhook-signature',
            headers['webhook-signature']!,
          )
        : redis.xadd(
            this.stream,
            'MAXLEN',
            '~',
            this.maxlen,
            '*',
            'body',
            message.body,
            'type',
            message.eventType,
            'webhook-id',
            headers['webhook-id']!,
            'webhook-timestamp',
            headers['webhook-timestamp']!,
            'webhook-signature',
            headers['webhook-signature']!,
          );
    reply.then(
      () => {
        link.unanswered.settled();
        this.keeper.working();
        this.inFlight.succeed(pending);
      },
      (error: unknown) => {
        link.unanswered.settled();
        this.inFlight.fail(pending, this.describeReplyError(error, link));
      },
    );
  }

  private describeReplyError(error: unknown, link: RedisLink): string {
    // ioredis fails the commands in flight on a connection that ends with "Connection is closed.".
    if (link.lostReason !== null) return `connection lost: ${link.lostReason}`;
    // Between the socket's end and ioredis' 'end' event, a command fails with "Stream isn't writeable…".
    if (link.redis.status !== 'ready' || errorText(error).startsWith("Stream isn't writeable")) {
      return `connection lost: ${link.lastError ?? 'the socket closed'}`;
    }
    return this.describeError(error);
  }

  private open(dropped: (reason: string) => void): Promise<RedisLink> {
    const { Redis: Client } = require('ioredis') as typeof import('ioredis');
    const redis = new Client(this.config.url, {
      lazyConnect: true,
      enableOfflineQueue: false,
      enableAutoPipelining: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      // The keeper bounds the open to timeoutMs and says so; the client's own bound is a backstop.
      connectTimeout: this.options.timeoutMs + 1000,
      connectionName: 'triggers-api',
    });
    const unanswered = new UnansweredBytes(() => {
      link.lostReason ??= `the server sent ${OVER_CAP_TEXT} without ending a reply`;
      link.lastError = link.lostReason;
      redis.disconnect();
    });
    const link: RedisLink = { redis, lostReason: null, lastError: null, unanswered };
    // An 'error' nobody listens to would kill the process.
    redis.on('error', (error: unknown) => {
      link.lastError = this.describeError(error);
    });
    // Counted beside the client's own reader, which would buffer a reply of any announced size.
    redis.on('connect', () => {
      redis.stream.on('data', (chunk: Buffer) => unanswered.received(chunk.length));
    });

    redis.on('end', () => {
      link.lostReason ??= link.lastError ?? 'closed by the server';
      dropped(link.lostReason);
    });
    return redis.connect().then(
      () => {
        unanswered.settled();
        return link;
      },
      (error: unknown) => {
        redis.disconnect();
        // ioredis rejects with "Connection is closed." after it emitted the reason (WRONGPASS…).
        throw new SafeError(link.lastError ?? this.describeError(error));
      },
    );
  }

  private describeError(error: unknown): string {
    if (error instanceof SafeError) return error.message;
    const text = errorText(error);
    if (isAuthError(text)) return `authentication failed (${this.scrub(text)})`;
    if (text.startsWith('authentication failed')) return text;
    const code = (error as { code?: unknown } | null)?.code;
    const prefix = typeof code === 'string' && code !== '' && !text.includes(code) ? `${code}: ` : '';
    return this.scrub(`${prefix}${text}`);
  }
}

/** An error whose message is already described and scrubbed. */
class SafeError extends Error {}

function isAuthError(text: string): boolean {
  return text.startsWith('WRONGPASS') || text.startsWith('NOAUTH') || text.includes('invalid password');
}
