/**
 * Metrics hook for webhook deliveries (`webhook_deliveries_total{status}` in API.md §8). The
 * metrics module replaces the observer in the delivery worker; by default nothing is counted.
 * `outcome` is what the attempt led to: succeeded, failed (will retry) or dead.
 */
export interface DeliveryObserver {
  attempted(outcome: 'succeeded' | 'failed' | 'dead', latencySeconds: number): void;
}

export let deliveryObserver: DeliveryObserver = { attempted() {} };

export function setDeliveryObserver(observer: DeliveryObserver): void {
  deliveryObserver = observer;
}
