/**
 * The seam between an endpoint's stream (stream.ts: leases, windows, retries, ordering, the
 * attempt log) and the wire that carries one message: an HTTP POST (sender.ts) or a publish to a
 * broker (src/destinations/). The stream decides when and what to send; a transport only sends
 * and says how it went. Every kind of destination shares one delivery engine this way.
 */

/** What one attempt came to. Never an exception: every failure is an outcome to record. */
export interface SendOutcome {
  /** The receiver took the message: a 2xx answer, or the broker's confirm (publisher confirm, JetStream ack, XADD reply). */
  ok: boolean;
  /** HTTP status, or null: no response arrived (timeout, connection error), or a broker destination. */
  status: number | null;
  latencyMs: number;
  /** Why it failed (shown in the attempt log), or null. */
  error: string | null;
  /** An HTTP receiver's Retry-After header, raw. */
  retryAfter: string | undefined;
}

/** One message as every transport sends it (API.md §5 and §5b). */
export interface OutgoingMessage {
  eventId: string;
  eventType: string;
  /** The Standard Webhooks values: webhook-id, webhook-timestamp, webhook-signature. */
  headers: Record<string, string>;
  /** The webhook body (API.md §5), JSON text. */
  body: string;
}

/** A failed outcome that no request or publish was made for (a refused target, a broker not reachable). */
export function notSent(error: string, latencyMs = 0): SendOutcome {
  return { ok: false, status: null, latencyMs, error, retryAfter: undefined };
}

/** The wire to one endpoint: opened by its stream, retired when the stream lets it go or its target changes. */
export interface Wire {
  /** Never rejects. `onAbortable` receives a function that cuts this send short (shutdown), where the wire can. */
  send(message: OutgoingMessage, onAbortable: (abort: () => void) => void): Promise<SendOutcome>;
  /** No more sends: release the connection once those in flight have settled. */
  retire(): void;
}

/** Where an endpoint's deliveries go, as its settings say (webhook_endpoints.kind, url and config). */
export interface WireTarget {
  id: string;
  orgId: string;
  kind: 'http' | 'rabbitmq' | 'nats' | 'redis_stream';
  url: string;
  /** A broker destination's stored config (src/destinations/config.ts); null for a webhook. */
  config: { masked: Record<string, unknown>; sealed: string } | null;
}

/** Opens wires: one per endpoint stream. The delivery worker composes the kinds it serves. */
export interface Wires {
  open(target: WireTarget): Wire;
}

/** Whether two settings of one endpoint need different wires (its URL or its broker config changed). */
export function sameWire(a: WireTarget, b: WireTarget): boolean {
  return a.kind === b.kind && a.url === b.url && a.config?.sealed === b.config?.sealed;
}
