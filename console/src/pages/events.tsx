import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { orThrow } from '../../../client/src/errors.js';
import type { Schemas } from '../../../client/src/types.js';
import type { PageProps } from '../page-props.js';
import { useCursorPages } from '../ui/hooks.js';
import {
  CopyButton,
  ErrorNote,
  Field,
  isoToLocalInput,
  JsonView,
  Loading,
  localInputToIso,
  Time,
} from '../ui/parts.js';

type StoredEvent = Schemas['Event'];

interface Filters {
  type: string;
  since: string;
  until: string;
}

const PAGE_SIZE = 50;

/** GET /v1/events: the org's events newest first, by type and time, each payload one click away. */
export function EventsPage({ session }: PageProps) {
  const [draft, setDraft] = useState<Filters>({
    type: '',
    since: isoToLocalInput(new Date(Date.now() - 86_400_000)),
    until: '',
  });
  const [filters, setFilters] = useState<Filters>(draft);
  const [open, setOpen] = useState<string | null>(null);

  const fetchPage = async (cursor?: string) => {
    const page = orThrow(
      await session.client.GET('/v1/events', {
        params: {
          query: {
            limit: PAGE_SIZE,
            ...(filters.type.trim() ? { type: filters.type.trim() } : {}),
            ...(localInputToIso(filters.since) ? { since: localInputToIso(filters.since) } : {}),
            ...(localInputToIso(filters.until) ? { until: localInputToIso(filters.until) } : {}),
            ...(cursor ? { cursor } : {}),
          },
        },
      }),
    );
    return { items: page.events, cursor: page.next_cursor };
  };
  const pages = useCursorPages<StoredEvent>(fetchPage, [filters]);
  const events = pages.items;

  return (
    <section aria-labelledby="events-title">
      <h1 id="events-title" tabIndex={-1}>
        Events
      </h1>
      <form
        class="filters"
        aria-label="Filter events"
        onSubmit={(event) => {
          event.preventDefault();
          setFilters({ ...draft });
        }}
      >
        <Field id="events-type" label="Type" hint="Exact, a prefix ending in * (user.*), or empty for all.">
          <input
            id="events-type"
            aria-describedby="events-type-hint"
            value={draft.type}
            placeholder="user.*"
            onInput={(event) => setDraft({ ...draft, type: event.currentTarget.value })}
          />
        </Field>
        <Field id="events-since" label="Received from">
          <input
            id="events-since"
            type="datetime-local"
            value={draft.since}
            onInput={(event) => setDraft({ ...draft, since: event.currentTarget.value })}
          />
        </Field>
        <Field id="events-until" label="Received before">
          <input
            id="events-until"
            type="datetime-local"
            value={draft.until}
            onInput={(event) => setDraft({ ...draft, until: event.currentTarget.value })}
          />
        </Field>
        <button type="submit">Show events</button>
      </form>
      <ErrorNote error={pages.error} />
      {pages.loading && !pages.loaded ? (
        <Loading what="events" />
      ) : events.length === 0 ? (
        <p class="empty">No events in this window.</p>
      ) : (
        <table class="list">
          <caption>Events, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Received</th>
              <th scope="col">Type</th>
              <th scope="col">Id</th>
              <th scope="col">Payload</th>
            </tr>
          </thead>
          <tbody>
            {events.map((event) => (
              <Fragment key={event.id}>
                <tr>
                  <td>
                    <Time iso={event.received_at} />
                  </td>
                  <td>
                    <code>{event.type}</code>
                  </td>
                  <td>
                    <code class="id">{event.id}</code> <CopyButton text={event.id} label={`Copy id ${event.id}`} />
                  </td>
                  <td>
                    <button
                      type="button"
                      class="small secondary"
                      aria-expanded={open === event.id}
                      aria-controls={`payload-${event.id}`}
                      onClick={() => setOpen(open === event.id ? null : event.id)}
                    >
                      {open === event.id ? 'Hide' : 'View'}
                    </button>
                  </td>
                </tr>
                {open === event.id && (
                  <tr id={`payload-${event.id}`} class="detail">
                    <td colSpan={4}>
                      <JsonView value={event} label={`Event ${event.id}`} />
                    </td>
                  </tr>
                )}
              </Fragment>
            ))}
          </tbody>
        </table>
      )}
      <ErrorNote error={pages.moreError} />
      {pages.hasMore && (
        <button type="button" class="secondary" disabled={pages.loadingMore} onClick={pages.loadMore}>
          Load older events
        </button>
      )}
    </section>
  );
}
