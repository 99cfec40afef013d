import { createRequire } from 'node:module';
import type { ChannelModel, ConfirmChannel, Message, Options } from 'amqplib';
import type { OutgoingMessage, SendOutcome } from '../delivery/transport.js';
import { ConnectionKeeper } from './connection-keeper.js';
import { InFlightPublishes, type PendingPublish } from './in-flight.js';
import type { Publisher, PublisherOptions, RabbitMqConfig } from './types.js';
import { errorText, type Scrub, secretScrubber, urlPassword } from './redact.js';

const require = createRequire(import.meta.url);

/**
 * RabbitMQ over AMQP 0-9-1 (amqplib): one connection and one confirm channel per destination.
 * A publish succeeds on the broker's confirm (basic.ack). Published `mandatory`, so a message the
 * exchange routes to no queue comes back (basic.return, sent before its ack) and counts as failed
 * rather than silently dropped. Confirms are asynchronous: any number of publishes are in flight
 * on the channel, each settled by its own confirm.
 *
 * The channel closes on a channel-level error (a missing exchange: 404; no permission: 403); the
 * publishes in flight on it fail with that reason and the next publish opens a new channel on the
 * same connection.
 */

/** One confirm channel and what happened to it. */
class ChannelState {
  /** Why the broker closed it (its channel.close), once it has. */
  closeReason: string | null = null;
  /** Event ids the broker returned as unroutable, with the reply text, until their confirm arrives. */
  readonly returned = new Map<string, string>();

  constructor(readonly channel: ConfirmChannel) {}
}

/** One AMQP connection and its current channel. */
class RabbitConnection {
  channel: ChannelState | null = null;
  channelOpening: Promise<ChannelState> | null = null;
  /** Why the connection closed, once it has (amqplib closes channels before it says why). */
  lostReason: string | null = null;
  /** The broker's connection.blocked reason (a resource alarm), while it lasts. */
  blocked: string | null = null;

  private corked = false;
  private readonly socket: { cork(): void; uncork(): void } | null;

  constructor(readonly model: ChannelModel) {
    // amqplib writes each message to the socket on its own (its Mux, in a setImmediate): at
    // thousands a second that is a syscall and a TCP segment per message, which costs the broker
    // more than the message itself. Corked for the tick, they leave in one write.
    const stream = (model as unknown as { connection?: { stream?: unknown } }).connection?.stream;
    this.socket =
      stream !== null && typeof stream === 'object' && 'cork' in stream && 'uncork' in stream
        ? (stream as { cork(): void; uncork(): void })
        : null;
  }

  /** Holds this tick's writes together; released after amqplib's Mux has written them (its own setImmediate). */
  batchWrites(): void {
    if (this.corked || this.socket === null) return;
    this.corked = true;
    this.socket.cork();
    setImmediate(uncorkLater, this);
  }

  uncork(): void {
    this.corked = false;
    this.socket?.uncork();
  }
}

// Two turns: amqplib schedules its Mux's flush from a 'readable' event (process.nextTick) with
// setImmediate, after ours was queued; the second turn runs after that flush.
function uncorkLater(connection: RabbitConnection): void {
  setImmediate(uncorkNow, connection);
}

function uncorkNow(connection: RabbitConnection): void {
  connection.uncork();
}

export function createRabbitMqPublisher(config: RabbitMqConfig, options: PublisherOptions): Publisher {
  return new RabbitMqPublisher(config, options);
}

class RabbitMqPublisher implements Publisher {
  private readonly inFlight: InFlightPublishes;
  private readonly keeper: ConnectionKeeper<RabbitConnection>;
  private readonly scrub: Scrub;
  private readonly exchange: string;
  private readonly routingKey: string | undefined;
  private readonly connectUrl: string;
  private closed = false;

  constructor(config: RabbitMqConfig, options: PublisherOptions) {
    this.exchange = config.exchange;
    this.routingKey = config.routing_key;
    this.connectUrl = withFrameLimit(config.url);
    this.inFlight = new InFlightPublishes(options.timeoutMs, 'no publisher confirm', () => this.keeper.timedOut());
    this.scrub = secretScrubber([urlPassword(config.url)]);
    this.keeper = new ConnectionKeeper<RabbitConnection>(
      {
        open: (dropped) => this.open(dropped, options.timeoutMs),
        close: (connection, reason) => {
          connection.lostReason ??= reason;
          return connection.model.close();
        },
        describeOpenError: (error) => this.describeConnectionError(error),
      },
      options.timeoutMs,
    );
  }

  publish(message: OutgoingMessage): Promise<SendOutcome> {
    const pending = this.inFlight.begin();
    const connection = this.closed ? 'closed' : this.keeper.get();
    if (typeof connection === 'string') {
      this.inFlight.fail(pending, connection);
    } else if (connection instanceof RabbitConnection) {
      this.publishOn(connection, message, pending);
    } else {
      connection.then(
        (opened) => this.publishOn(opened, message, pending),
        (error: Error) => this.inFlight.fail(pending, error.message),
      );
    }
    return pending.outcome;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.inFlight.failAll('closed');
    await this.keeper.close();
  }

  private publishOn(connection: RabbitConnection, message: OutgoingMessage, pending: PendingPublish): void {
    if (pending.settled) return;
    if (connection.blocked !== null) {
      // Published now, it would wait in the socket until the alarm clears: fail it instead.
      this.inFlight.fail(pending, `broker blocks publishing: ${this.scrub(connection.blocked)}`);
      return;
    }
    const state = connection.channel;
    if (state !== null) {
      connection.batchWrites();
      this.send(state, message, pending);
      return;
    }
    connection.channelOpening ??= this.openChannel(connection);
    connection.channelOpening.then(
      (opened) => this.send(opened, message, pending),
      (error: unknown) => this.inFlight.fail(pending, `cannot open a channel: ${this.scrub(errorText(error))}`),
    );
  }

  private send(state: ChannelState, message: OutgoingMessage, pending: PendingPublish): void {
    if (pending.settled) return;
    const eventId = message.eventId;
    const properties: Options.Publish = {
      persistent: true,
      mandatory: true,
      contentType: 'application/json',
      messageId: eventId,
      type: message.eventType,
      headers: message.headers,
    };
    try {
      state.channel.publish(
        this.exchange,
        this.routingKey ?? message.eventType,
        Buffer.from(message.body),
        properties,
        (error: unknown) => {
          if (error === null || error === undefined) {
            if (state.returned.size !== 0 && state.returned.has(eventId)) {
              const reply = state.returned.get(eventId)!;
              state.returned.delete(eventId);
              this.inFlight.fail(pending, `unroutable: ${reply}`);
              return;
            }
            this.keeper.working();
            this.inFlight.succeed(pending);
          } else if (errorText(error) === 'message nacked') {
            this.inFlight.fail(pending, 'rejected by the broker (basic.nack)');
          } else {
            // The channel or connection closed: amqplib calls back before it says why, so the
            // reason is read once the close has been handled (same tick, a microtask later).
            queueMicrotask(() => this.inFlight.fail(pending, this.channelLostReason(state)));
          }
        },
      );
    } catch (error) {
      // amqplib throws on a closed channel (and on oversized headers).
      this.inFlight.fail(pending, state.closeReason ?? this.scrub(errorText(error)));
    }
  }

  private channelLostReason(state: ChannelState): string {
    return state.closeReason ?? 'connection lost';
  }

  private async open(dropped: (reason: string) => void, timeoutMs: number): Promise<RabbitConnection> {
    const amqp = require('amqplib') as typeof import('amqplib');
    const model = await amqp.connect(this.connectUrl, {
      // The keeper bounds the open to timeoutMs and says so; the client's own bound is a backstop.
      timeout: timeoutMs + 1000,
      clientProperties: { connection_name: 'triggers-api' },
    });
    const connection = new RabbitConnection(model);
    model.on('error', (error: Error) => {
      connection.lostReason = this.describeConnectionError(error);
    });
    model.on('close', (error?: Error) => {
      const reason = connection.lostReason ?? (error ? this.describeConnectionError(error) : 'closed by the broker');
      connection.lostReason = reason;
      dropped(reason);
    });
    model.on('blocked', (reason: string) => {
      connection.blocked = reason || 'blocked';
    });
    model.on('unblocked', () => {
      connection.blocked = null;
    });
    try {
      connection.channel = await this.openChannel(connection);
    } catch (error) {
      await model.close().catch(() => undefined);
      throw error;
    }
    return connection;
  }

  private async openChannel(connection: RabbitConnection): Promise<ChannelState> {
    try {
      const channel = await connection.model.createConfirmChannel();
      const state = new ChannelState(channel);
      channel.on('error', (error: Error) => {
        state.closeReason = this.describeChannelError(error);
      });
      channel.on('close', () => {
        if (state.closeReason === null && connection.lostReason !== null) {
          state.closeReason = `connection lost: ${connection.lostReason}`;
        }
        if (connection.channel === state) connection.channel = null;
        state.returned.clear();
      });
      channel.on('return', (returned: Message) => {
        const id = returned.properties.messageId as string | undefined;
        if (id === undefined) return;
        const fields = returned.fields as Message['fields'] & { replyCode?: number; replyText?: string };
        state.returned.set(
          id,
          `${fields.replyText ?? 'returned'} (exchange '${fields.exchange}', routing key '${fields.routingKey}')`,
        );
      });
      connection.channel = state;
      return state;
    } finally {
      connection.channelOpening = null;
    }
  }

  private describeChannelError(error: Error): string {
    const code = (error as Error & { code?: number }).code;
    const text = this.scrub(error.message.replace(/^Channel closed by server: /, ''));
    if (code === 404) return `exchange '${this.exchange}' not found: ${text}`;
    if (code === 403) return `access refused: ${text}`;
    return `channel closed: ${text}`;
  }

  private describeConnectionError(error: unknown): string {
    const text = errorText(error);
    if (text.includes('ACCESS_REFUSED') || text.includes('ACCESS-REFUSED')) {
      return 'authentication failed (ACCESS_REFUSED: wrong user name or password)';
    }
    const code = (error as { code?: unknown } | null)?.code;
    const prefix = typeof code === 'string' && !text.includes(code) ? `${code}: ` : '';
    return this.scrub(`${prefix}${text}`);
  }
}

const MAX_FRAME_BYTES = 1 << 20;

/**
 * The URL with amqplib's bound on frames from the broker (`maxFrameSize`, 64 MiB by default, or
 * none if the URL says 0): a broker the tenant controls must not make the delivery worker buffer
 * huge frames. 1 MiB is 8 times the frame size amqplib negotiates (128 KiB) and 4 times the
 * largest event (API.md §3: 256 KiB), which a conforming broker splits into frames anyway.
 */
function withFrameLimit(url: string): string {
  const parsed = new URL(url);
  parsed.searchParams.set('maxFrameSize', String(MAX_FRAME_BYTES));
  return parsed.toString();
}
