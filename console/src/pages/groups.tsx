import { useState } from 'preact/hooks';
import { orThrow } from '../../../client/src/errors.js';
import type { Schemas } from '../../../client/src/types.js';
import type { PageProps } from '../page-props.js';
import { href } from '../router.js';
import type { Session } from '../session.js';
import { useAction, useInterval, useLoad } from '../ui/hooks.js';
import { DoneNote, ErrorNote, Field, Loading } from '../ui/parts.js';
import { GroupDetail } from './group-detail.js';
import { GroupSettingsFields, OldestPending, REFRESH_MS } from './group-parts.js';
import { FormError, listOf, names, numberOf, parseJsonObject } from './json-input.js';
import { unaddressable, unaddressableNote } from './url-names.js';
import './groups.css';

type Group = Schemas['ConsumerGroup'];
type GroupFilter = Schemas['ConsumerGroupCreate']['filter'];

/** The inbox's first page: enough to say "this many waiting" without reading the whole inbox. */
const INBOX_PAGE = 100;
/**
 * A page of the inbox carries its payloads (up to 8 MiB), unlike a group's counts: it is read
 * again less often than the groups, and at once with its Refresh button.
 */
const INBOX_REFRESH_MS = 30_000;

/** `#/groups`: the inbox and the org's consumer groups; `#/groups/<name>`: one group. */
export function GroupsPage({ session, path }: PageProps) {
  if (path[0] !== undefined) return <GroupDetail session={session} name={path[0]} />;
  return (
    <section aria-labelledby="groups-title">
      <h1 id="groups-title" tabIndex={-1}>
        Inbox &amp; groups
      </h1>
      <InboxSummary session={session} />
      <GroupList session={session} />
    </section>
  );
}

/** The inbox (API.md §4) is read only here: acknowledging is the consumer's job, not the console's. */
function InboxSummary({ session }: { session: Session }) {
  const inbox = useLoad(
    async () => orThrow(await session.client.GET('/v1/inbox', { params: { query: { limit: INBOX_PAGE } } })),
    [],
  );
  useInterval(inbox.reload, INBOX_REFRESH_MS);
  const page = inbox.data;
  return (
    <section aria-labelledby="inbox-title">
      <h2 id="inbox-title">Inbox</h2>
      <p class="muted">
        The inbox is the org's one built-in queue: every event waits there until a consumer acknowledges it (
        <code>GET /v1/inbox</code>, <code>POST /v1/ack</code>). It is independent of the consumer groups below, and read
        only here: the console never acknowledges.
      </p>
      <ErrorNote error={inbox.error} />
      {page === undefined ? (
        inbox.loading && <Loading what="the inbox" />
      ) : (
        <div class="cards">
          <div class="card">
            <div class="value" data-testid="inbox-count">
              {page.has_more ? `${page.events.length}+` : page.events.length}
            </div>
            <div class="label">unacknowledged{page.has_more ? ` (first page of ${INBOX_PAGE}; more wait)` : ''}</div>
          </div>
          <div class="card">
            <div class="value value-small">
              {page.events[0] ? <OldestPending iso={page.events[0].received_at} /> : <span class="muted">none</span>}
            </div>
            <div class="label">oldest unacknowledged</div>
          </div>
        </div>
      )}
      <button type="button" class="secondary small" disabled={inbox.loading} onClick={inbox.reload}>
        Refresh inbox
      </button>
    </section>
  );
}

function GroupList({ session }: { session: Session }) {
  const groups = useLoad(async () => orThrow(await session.client.GET('/v1/consumer-groups')).groups, []);
  useInterval(groups.reload, REFRESH_MS);
  return (
    <section aria-labelledby="groups-list-title">
      <h2 id="groups-list-title">Consumer groups</h2>
      <ErrorNote error={groups.error} />
      {groups.data === undefined ? (
        groups.loading && <Loading what="groups" />
      ) : groups.data.length === 0 ? (
        <p class="empty">No consumer groups yet.</p>
      ) : (
        <table class="list">
          <caption>Consumer groups (refreshed every {REFRESH_MS / 1000} s)</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Pending</th>
              <th scope="col">Leased</th>
              <th scope="col">Dead</th>
              <th scope="col">Oldest pending</th>
              <th scope="col">Event types and filter</th>
            </tr>
          </thead>
          <tbody>
            {groups.data.map((group) => (
              <tr key={group.name}>
                <th scope="row">
                  <a href={href('groups', group.name)}>{group.name}</a>
                </th>
                <td>{group.pending}</td>
                <td>{group.leased}</td>
                <td>{group.dead > 0 ? <span class="badge bad">{group.dead}</span> : group.dead}</td>
                <td>
                  <OldestPending iso={group.oldest_pending_at} />
                </td>
                <td>
                  <Selection group={group} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <CreateGroup session={session} onCreated={groups.reload} />
    </section>
  );
}

/** Which events a group takes: its types (all when none) and its filter, if any. */
function Selection({ group }: { group: Group }) {
  return (
    <span>
      {group.event_types.length === 0 ? (
        <span class="muted">all types</span>
      ) : (
        <code>{group.event_types.join(', ')}</code>
      )}
      {group.filter !== null && (
        <>
          {' '}
          <span class="muted">where</span> <code class="filter-inline">{JSON.stringify(group.filter)}</code>
        </>
      )}
    </span>
  );
}

interface NewGroupDraft {
  name: string;
  start: 'latest' | 'earliest';
  eventTypes: string;
  filter: string;
  visibility: string;
  maxDeliveries: string;
}

const EMPTY_DRAFT: NewGroupDraft = {
  name: '',
  start: 'latest',
  eventTypes: '',
  filter: '',
  visibility: '30',
  maxDeliveries: '10',
};

function CreateGroup({ session, onCreated }: { session: Session; onCreated(): void }) {
  const [draft, setDraft] = useState<NewGroupDraft>(EMPTY_DRAFT);
  const action = useAction();
  const set = (change: Partial<NewGroupDraft>) => setDraft({ ...draft, ...change });

  const submit = (event: Event) => {
    event.preventDefault();
    void action.run(async () => {
      if (unaddressable(draft.name.trim())) throw new FormError('name', unaddressableNote('group', draft.name.trim()));
      const filter = parseJsonObject(draft.filter, 'filter', true);
      const created = orThrow(
        await session.client.POST('/v1/consumer-groups', {
          body: {
            name: draft.name.trim(),
            start: draft.start,
            event_types: listOf(draft.eventTypes),
            filter: filter as GroupFilter,
            visibility_timeout_s: numberOf(draft.visibility),
            max_deliveries: numberOf(draft.maxDeliveries),
          },
        }),
      );
      setDraft(EMPTY_DRAFT);
      onCreated();
      return `Group ${created.name} created.`;
    });
  };

  return (
    <form class="group-form" aria-labelledby="create-group-title" onSubmit={submit} noValidate>
      <h2 id="create-group-title">Create a group</h2>
      <Field id="group-name" label="Name" hint="1–64 characters of A–Z a–z 0–9 . _ -, unique in the org.">
        <input
          id="group-name"
          aria-describedby="group-name-hint"
          aria-invalid={names(action.error, 'name')}
          value={draft.name}
          onInput={(event) => set({ name: event.currentTarget.value })}
        />
      </Field>
      <Field
        id="group-start"
        label="Start"
        hint="Latest: events committed from now on. Earliest: every retained event."
      >
        <select
          id="group-start"
          aria-describedby="group-start-hint"
          value={draft.start}
          onChange={(event) => set({ start: event.currentTarget.value as NewGroupDraft['start'] })}
        >
          <option value="latest">latest</option>
          <option value="earliest">earliest</option>
        </select>
      </Field>
      <GroupSettingsFields prefix="group" error={action.error} draft={draft} onChange={(change) => set(change)} />
      <div class="actions">
        <button type="submit" disabled={action.running}>
          Create group
        </button>
      </div>
      <ErrorNote error={action.error} />
      <DoneNote text={action.done} />
    </form>
  );
}
