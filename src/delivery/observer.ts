/**
 * What the delivery side reports for metrics (API.md §8, docs/METRICS.md). The metrics module
 * installs its implementation in every worker; by default nothing is counted. No endpoint,
 * org or URL ever reaches a label.
 */
export interface DeliveryObserver {
  /** A first attempt started, `lagSeconds` after the event was received. */
  started(lagSeconds: number): void;
  /** An attempt finished; `outcome` is what it led to: succeeded, failed (will retry) or dead. */
  attempted(outcome: 'succeeded' | 'failed' | 'dead', latencySeconds: number): void;
  /** Sends in flight from this process now. */
  inFlight(count: number): void;
}

export let deliveryObserver: DeliveryObserver = { started() {}, attempted() {}, inFlight() {} };

export function setDeliveryObserver(observer: DeliveryObserver): void {
  deliveryObserver = observer;
}
