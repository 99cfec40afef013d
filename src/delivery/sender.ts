import net from 'node:net';
import { Agent, type Dispatcher } from 'undici';
import { guardedLookup, isBlockedAddress, urlHost } from './ssrf.js';
import { notSent, type SendOutcome } from './transport.js';

export type { SendOutcome } from './transport.js';

export interface SenderOptions {
  timeoutMs: number;
  allowPrivate: boolean;
}

/** An endpoint URL taken apart once, when its settings are loaded, instead of on every send. */
export interface SendTarget {
  origin: string;
  path: string;
  /** Why this URL may not be used at all (an IP literal in a blocked range), or null. */
  refused: string | null;
}

// The response body is not kept (only the status and Retry-After are): chunks are dropped as
// they come, and past this much the socket is given up rather than read to its end for reuse.
const RESPONSE_DUMP_LIMIT = 64 * 1024;
const USER_AGENT = 'TriggersAPI-Webhooks/1';
const TIMEOUT_CODES = new Set([
  'UND_ERR_HEADERS_TIMEOUT',
  'UND_ERR_BODY_TIMEOUT',
  'UND_ERR_CONNECT_TIMEOUT',
  'EWEBHOOKDEADLINE',
]);
const RETRY_AFTER = 'retry-after';

/**
 * POSTs signed webhook bodies. One undici Agent for the process: keep-alive pools per origin,
 * and (unless WEBHOOK_ALLOW_PRIVATE) a connect-time `lookup` that only hands out public
 * addresses.
 *
 * WEBHOOK_TIMEOUT_MS bounds the whole attempt, from the dispatch to the response's last byte:
 * undici's own timeouts each bound one wait (the connect, the headers, the gap between two body
 * chunks), so a receiver that answers 200 and then drips a byte a second held a send, its slot
 * and its socket for ever. A timer per send settles the attempt at the deadline as a timeout and
 * aborts the request, which destroys its socket (one timer per send: Node keeps timers of one
 * duration in one list, so arming and clearing one is a constant-time link and unlink).
 *
 * Sends go through `Agent.dispatch` with a handler that keeps only the status and Retry-After:
 * undici's `request()` builds a Readable, an abort-signal pair and a redirect interceptor for
 * every request, which measured here as most of the delivery process's CPU per send.
 */
export class WebhookSender {
  private readonly agent: Agent;

  constructor(private readonly options: SenderOptions) {
    this.agent = new Agent({
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 120_000,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      connect: {
        timeout: options.timeoutMs,
        ...(options.allowPrivate ? {} : { lookup: guardedLookup as never }),
      },
    });
  }

  target(url: string): SendTarget {
    const parsed = new URL(url);
    let refused: string | null = null;
    // net.connect skips `lookup` for IP literals, so those are checked here.
    const host = urlHost(parsed);
    if (!this.options.allowPrivate && net.isIP(host) && isBlockedAddress(host))
      refused = `refused: ${host} is a private, loopback or reserved address`;
    return { origin: parsed.origin, path: parsed.pathname + parsed.search, refused };
  }

  /**
   * Never rejects: every failure becomes an outcome to record. `onAbortable` receives a function
   * that cuts this send short (shutdown).
   */
  send(
    target: SendTarget,
    headers: Record<string, string>,
    body: string,
    onAbortable: (abort: () => void) => void,
  ): Promise<SendOutcome> {
    if (target.refused !== null) return Promise.resolve(notSent(target.refused));
    headers['content-type'] = 'application/json';
    headers['user-agent'] = USER_AGENT;
    return new Promise((resolve) => {
      const handler = new OutcomeHandler(performance.now(), this.options.timeoutMs, resolve, onAbortable);
      handler.deadline = setTimeout(expireAttempt, this.options.timeoutMs, handler);
      this.agent.dispatch({ origin: target.origin, path: target.path, method: 'POST', headers, body }, handler);
    });
  }

  close(): Promise<void> {
    return this.agent.destroy();
  }
}

const DEADLINE_PASSED = 'EWEBHOOKDEADLINE';

// The deadline's timer runs before the event loop's I/O phase: an answer that arrived by then but
// waits to be read (a busy process) is read first, so our own lag is not the receiver's timeout.
function expireAttempt(handler: OutcomeHandler): void {
  setImmediate(expireAfterIo, handler);
}

function expireAfterIo(handler: OutcomeHandler): void {
  handler.expire();
}

/** Keeps what an attempt's record needs and discards the rest of the response. */
class OutcomeHandler implements Dispatcher.DispatchHandlers {
  deadline: NodeJS.Timeout | null = null;
  private status: number | null = null;
  private retryAfter: string | undefined;
  private received = 0;
  private abort: ((reason?: Error) => void) | null = null;
  private settled = false;

  constructor(
    private readonly started: number,
    private readonly timeoutMs: number,
    private readonly resolve: (outcome: SendOutcome) => void,
    private readonly onAbortable: (abort: () => void) => void,
  ) {}

  onConnect(abort: (reason?: Error) => void): void {
    // The deadline passed while the request waited for a connection: it goes no further.
    if (this.settled) {
      abort(Object.assign(new Error('attempt deadline passed'), { code: DEADLINE_PASSED }));
      return;
    }
    this.abort = abort;
    this.onAbortable(() =>
      abort(Object.assign(new Error('aborted: delivery worker shutting down'), { code: 'EWEBHOOKABORTED' })),
    );
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[] | string[] | null): boolean {
    this.status = statusCode;
    if (rawHeaders) {
      for (let i = 0; i < rawHeaders.length; i += 2) {
        if (rawHeaders[i]!.length === RETRY_AFTER.length && rawHeaders[i]!.toString().toLowerCase() === RETRY_AFTER) {
          this.retryAfter = rawHeaders[i + 1]!.toString();
        }
      }
    }
    return true;
  }

  onData(chunk: Buffer): boolean {
    this.received += chunk.length;
    // The status is all we need: a receiver that streams megabytes back is cut off.
    if (this.received > RESPONSE_DUMP_LIMIT && this.status !== null) this.finish(null);
    return true;
  }

  onComplete(): void {
    this.finish(null);
  }

  onError(error: Error): void {
    this.finish(error);
  }

  /** WEBHOOK_TIMEOUT_MS passed with the attempt unfinished: a timeout, whatever arrived so far. */
  expire(): void {
    this.deadline = null;
    if (this.settled) return;
    const error = Object.assign(new Error('attempt deadline passed'), { code: DEADLINE_PASSED });
    this.finish(error);
    // Not sent yet (still connecting): onConnect aborts it when it comes.
    this.abort?.(error);
  }

  private finish(error: Error | null): void {
    if (this.settled) return;
    this.settled = true;
    if (this.deadline !== null) {
      clearTimeout(this.deadline);
      this.deadline = null;
    }
    const latencyMs = Math.round(performance.now() - this.started);
    if (error === null) {
      if (this.received > RESPONSE_DUMP_LIMIT) this.abort?.();
      const ok = this.status !== null && this.status >= 200 && this.status < 300;
      this.resolve({ ok, status: this.status, latencyMs, error: null, retryAfter: this.retryAfter });
      return;
    }
    const code = (error as { code?: string }).code;
    const message =
      code !== undefined && TIMEOUT_CODES.has(code) ? `timed out after ${this.timeoutMs} ms` : describeError(error);
    this.resolve(notSent(message, latencyMs));
  }
}

function describeError(error: unknown): string {
  const err = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.cause?.code ?? err.code;
  const message = err.cause?.message ?? err.message ?? String(error);
  return (code && !message.includes(code) ? `${code}: ${message}` : message).slice(0, 500);
}
