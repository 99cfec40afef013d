import { useState } from 'preact/hooks';
import { useAction, useCursorPages, useInterval } from '../ui/hooks.js';
import { DoneNote, ErrorNote, Field, isoToLocalInput, Loading, localInputToIso, Time } from '../ui/parts.js';
import type { Delivery, DeliveryStatus, EndpointApi } from './endpoint-api.js';

const PAGE_SIZE = 25;
/** As often as the chart above it: new deliveries and attempts show without a click. */
const REFRESH_MS = 5_000;
const STATUSES: DeliveryStatus[] = ['pending', 'succeeded', 'failed', 'dead'];
const STATUS_CLASS: Record<DeliveryStatus, string> = {
  pending: 'warn',
  succeeded: 'good',
  failed: 'warn',
  dead: 'bad',
};

/**
 * GET …/{id}/deliveries: each delivery with every attempt (time, HTTP status or error, latency),
 * by status, page by page with the route's cursor; and POST …/{id}/recover since a time. The
 * newest page reads itself again every few seconds, but not once older pages are shown: the
 * reader is then looking back, and a reload would drop what they paged to.
 */
export function DeliveriesPanel({ api, id }: { api: EndpointApi; id: string }) {
  const [status, setStatus] = useState<DeliveryStatus | ''>('');
  const fetchPage = async (cursor?: string) => {
    const page = await api.deliveries(id, {
      limit: PAGE_SIZE,
      ...(status ? { status } : {}),
      ...(cursor ? { cursor } : {}),
    });
    return { items: page.deliveries, cursor: page.next_cursor };
  };
  const pages = useCursorPages<Delivery>(fetchPage, [id, status]);
  const deliveries = pages.items;
  useInterval(() => {
    if (!pages.olderLoaded && !pages.loading && !pages.loadingMore) pages.reload();
  }, REFRESH_MS);

  return (
    <section aria-labelledby="deliveries-title">
      <h2 id="deliveries-title">Deliveries</h2>
      <div class="filters">
        <Field id="deliveries-status" label="Status">
          <select
            id="deliveries-status"
            value={status}
            onChange={(event) => setStatus(event.currentTarget.value as DeliveryStatus | '')}
          >
            <option value="">all</option>
            {STATUSES.map((one) => (
              <option key={one} value={one}>
                {one}
              </option>
            ))}
          </select>
        </Field>
        <button type="button" class="secondary" onClick={pages.reload} disabled={pages.loading}>
          Refresh deliveries
        </button>
      </div>
      <ErrorNote error={pages.error} />
      {pages.loading && !pages.loaded ? (
        <Loading what="deliveries" />
      ) : deliveries.length === 0 ? (
        <p class="empty">No deliveries{status ? ` with status ${status}` : ''}.</p>
      ) : (
        <table class="list">
          <caption>Deliveries, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Event</th>
              <th scope="col">Status</th>
              <th scope="col">Attempts</th>
              <th scope="col">Next attempt</th>
            </tr>
          </thead>
          <tbody>
            {deliveries.map((delivery) => (
              <tr key={delivery.id}>
                <td>
                  <code class="id">{delivery.event_id}</code>
                </td>
                <td>
                  <span class={`badge ${STATUS_CLASS[delivery.status]}`}>{delivery.status}</span>
                </td>
                <td>
                  <Attempts delivery={delivery} />
                </td>
                <td>
                  <Time iso={delivery.next_attempt_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <ErrorNote error={pages.moreError} />
      {pages.hasMore && (
        <button type="button" class="secondary" disabled={pages.loadingMore} onClick={pages.loadMore}>
          Load older deliveries
        </button>
      )}
      <RecoverForm
        api={api}
        id={id}
        onQueued={() => {
          pages.reload();
        }}
      />
    </section>
  );
}

function Attempts({ delivery }: { delivery: Delivery }) {
  if (delivery.attempts.length === 0) return <span class="muted">none yet</span>;
  return (
    <ol class="attempts" aria-label={`Attempts of event ${delivery.event_id}`}>
      {delivery.attempts.map((attempt, i) => {
        const ok = attempt.response_status !== null && attempt.response_status >= 200 && attempt.response_status < 300;
        return (
          <li key={i}>
            <Time iso={attempt.at} />{' '}
            <span class={`badge ${ok ? 'good' : 'bad'}`}>
              {attempt.response_status !== null ? `HTTP ${attempt.response_status}` : 'no response'}
            </span>{' '}
            <span class="muted">{Math.round(attempt.latency_ms)} ms</span>
            {attempt.error && <span class="attempt-error"> {attempt.error}</span>}
          </li>
        );
      })}
    </ol>
  );
}

function RecoverForm({ api, id, onQueued }: { api: EndpointApi; id: string; onQueued(): void }) {
  const [since, setSince] = useState(isoToLocalInput(new Date(Date.now() - 3_600_000)));
  const recover = useAction();
  return (
    <form
      class="filters recover"
      aria-label="Recover deliveries"
      onSubmit={(event) => {
        event.preventDefault();
        void recover.run(async () => {
          const at = localInputToIso(since);
          if (at === undefined) throw new Error('Choose the time to recover from.');
          const queued = await api.recover(id, at);
          onQueued();
          return `Queued ${queued} ${queued === 1 ? 'delivery' : 'deliveries'} to be sent again.`;
        });
      }}
    >
      <Field
        id="recover-since"
        label="Re-send failed and dead deliveries since"
        hint="Your local time; deliveries created since then that failed or died are sent again."
      >
        <input
          id="recover-since"
          type="datetime-local"
          required
          aria-describedby="recover-since-hint"
          value={since}
          onInput={(event) => setSince(event.currentTarget.value)}
        />
      </Field>
      <button type="submit" disabled={recover.running}>
        Recover
      </button>
      <ErrorNote error={recover.error} />
      <DoneNote text={recover.done} />
    </form>
  );
}
