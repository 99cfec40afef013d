import type { Endpoint } from './endpoint-api.js';

/** The delivery controls in a few words: `ordering fifo, 50/s, max 4 in flight`. */
export function controlsText(endpoint: Endpoint): string {
  const parts = [`ordering ${endpoint.ordering}`];
  if (endpoint.rate_limit_per_sec !== null) parts.push(`${endpoint.rate_limit_per_sec}/s`);
  if (endpoint.max_in_flight !== null) parts.push(`max ${endpoint.max_in_flight} in flight`);
  return parts.join(', ');
}

export function EnabledBadge({ endpoint }: { endpoint: Endpoint }) {
  if (endpoint.enabled) return <span class="badge good">enabled</span>;
  return (
    <>
      <span class="badge bad">disabled</span>
      {endpoint.disabled_reason && <div class="muted small-print">{endpoint.disabled_reason}</div>}
    </>
  );
}
