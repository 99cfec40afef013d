import { Agent, request } from 'undici';
import { guardedLookup, isBlockedAddress, urlHost } from './ssrf.js';
import net from 'node:net';

export interface SendOutcome {
  /** HTTP status, or null when no response arrived (timeout, connection error, refused). */
  status: number | null;
  latencyMs: number;
  error: string | null;
  /** The receiver's Retry-After header, raw. */
  retryAfter: string | undefined;
}

export interface SenderOptions {
  timeoutMs: number;
  allowPrivate: boolean;
}

// The response body is not kept: read and drop at most this much so the socket can be reused.
const RESPONSE_DUMP_LIMIT = 64 * 1024;
const USER_AGENT = 'TriggersAPI-Webhooks/1';

/**
 * POSTs signed webhook bodies. One undici Agent for the process: keep-alive pools per origin,
 * and (unless WEBHOOK_ALLOW_PRIVATE) a connect-time `lookup` that only hands out public
 * addresses. Every send is bounded by WEBHOOK_TIMEOUT_MS, connect included.
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

  /** Never throws: every failure becomes an outcome to record. */
  async send(url: string, headers: Record<string, string>, body: string, abort: AbortSignal): Promise<SendOutcome> {
    const started = performance.now();
    const latency = () => Math.round(performance.now() - started);
    if (!this.options.allowPrivate) {
      // net.connect skips `lookup` for IP literals, so those are checked here.
      const host = urlHost(new URL(url));
      if (net.isIP(host) && isBlockedAddress(host)) {
        return { status: null, latencyMs: 0, error: `refused: ${host} is a private, loopback or reserved address`, retryAfter: undefined };
      }
    }
    const timeout = AbortSignal.timeout(this.options.timeoutMs);
    const signal = AbortSignal.any([timeout, abort]);
    try {
      const response = await request(url, {
        method: 'POST',
        headers: { ...headers, 'content-type': 'application/json', 'user-agent': USER_AGENT },
        body,
        dispatcher: this.agent,
        signal,
      });
      await response.body.dump({ limit: RESPONSE_DUMP_LIMIT }).catch(() => {});
      const retryAfter = response.headers['retry-after'];
      return { status: response.statusCode, latencyMs: latency(), error: null, retryAfter: Array.isArray(retryAfter) ? retryAfter[0] : retryAfter };
    } catch (error) {
      let message: string;
      if (timeout.aborted) message = `timed out after ${this.options.timeoutMs} ms`;
      else if (abort.aborted) message = 'aborted: delivery worker shutting down';
      else message = describeError(error);
      return { status: null, latencyMs: latency(), error: message, retryAfter: undefined };
    }
  }

  close(): Promise<void> {
    return this.agent.destroy();
  }
}

function describeError(error: unknown): string {
  const err = error as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const code = err.cause?.code ?? err.code;
  const message = err.cause?.message ?? err.message ?? String(error);
  return (code && !message.includes(code) ? `${code}: ${message}` : message).slice(0, 500);
}
