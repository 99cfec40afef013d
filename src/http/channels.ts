import diagnostics_channel from 'node:diagnostics_channel';
import type { UnavailableCause } from '../errors.js';

/**
 * What the HTTP layer reports, for whoever listens (src/metrics). Subscribers run synchronously
 * inside `publish`, on the request path: they must be cheap. Publishers test `hasSubscribers`
 * first, so nothing is built while nobody listens.
 */

/** One answer to a request (also when the client had already gone and nothing was written). */
export interface ResponseSent {
  /** The route pattern ("POST /v1/events", "not_found"), never a URL. */
  route: string;
  status: number;
  /** Request start to the answer. */
  seconds: number;
}

export const responseSentChannel = diagnostics_channel.channel('triggers:http:response-sent');

/** A 503 answer and why (published beside its ResponseSent). */
export interface UnavailableSent {
  cause: UnavailableCause;
}

export const unavailableSentChannel = diagnostics_channel.channel('triggers:http:unavailable-sent');
