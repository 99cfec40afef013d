import type { ApiKeyVerifier } from '../auth/verifier.js';
import { setResponseObserver } from '../http/respond.js';
import type { EventBatcher } from '../ingest/batcher.js';
import { batcherObserver, observeHttpResponse, verifierObserver, watchEventQueue } from './metrics.js';

/** Connects one HTTP worker's moving parts to its metrics; called once at start. */
export function instrumentHttpWorker(parts: { verifier: ApiKeyVerifier; batcher: EventBatcher }): void {
  setResponseObserver(observeHttpResponse);
  parts.verifier.observer = verifierObserver;
  parts.batcher.observer = batcherObserver;
  watchEventQueue(parts.batcher);
}
