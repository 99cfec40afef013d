import { Fragment } from 'preact';
import { useState } from 'preact/hooks';
import { orThrow } from '../../../client/src/errors.js';
import type { Schemas } from '../../../client/src/types.js';
import { go, href } from '../router.js';
import type { Session } from '../session.js';
import { useAction, useConfirmStep, useCursorPages, useInterval, useLoad } from '../ui/hooks.js';
import { DoneNote, ErrorNote, Field, JsonView, Loading, localInputToIso } from '../ui/parts.js';
import { GroupSettingsFields, OldestPending, REFRESH_MS, type SettingsDraft } from './group-parts.js';
import { FormError, listOf, numberOf, parseJsonObject } from './json-input.js';
import { unaddressable, unaddressableNote } from './url-names.js';

type Group = Schemas['ConsumerGroup'];
type GroupFilter = Schemas['ConsumerGroupPatch']['filter'];
type DeadLetter = { event: Schemas['InboxEvent']; delivery_count: number };

/** `#/groups/<name>`: one group's counts, settings, seek, dead letters and deletion. */
export function GroupDetail({ session, name }: { session: Session; name: string }) {
  if (unaddressable(name))
    return (
      <section aria-labelledby="group-title">
        <h1 id="group-title" tabIndex={-1}>
          Group <code>{name}</code>
        </h1>
        <ErrorNote error={new Error(unaddressableNote('group', name))} />
      </section>
    );
  return <AddressableGroup session={session} name={name} />;
}

function AddressableGroup({ session, name }: { session: Session; name: string }) {
  const group = useLoad(
    async () => orThrow(await session.client.GET('/v1/consumer-groups/{name}', { params: { path: { name } } })),
    [name],
  );
  useInterval(group.reload, REFRESH_MS);
  // Dead letters are read again after each redrive or seek (a change of this number).
  const [deadVersion, setDeadVersion] = useState(0);
  const changed = () => {
    group.reload();
    setDeadVersion((version) => version + 1);
  };

  return (
    <section aria-labelledby="group-title">
      <p class="crumbs">
        <a href={href('groups')}>Inbox &amp; groups</a>
      </p>
      <h1 id="group-title" tabIndex={-1}>
        Group <code>{name}</code>
      </h1>
      <ErrorNote error={group.error} />
      {group.data === undefined ? (
        group.loading && <Loading what="the group" />
      ) : (
        <>
          <Counts group={group.data} />
          <Settings session={session} group={group.data} onSaved={group.reload} />
          <Seek session={session} name={name} onSought={changed} />
          <DeadLetters session={session} name={name} version={deadVersion} onRedriven={changed} />
          <DeleteGroup session={session} name={name} />
        </>
      )}
    </section>
  );
}

function Counts({ group }: { group: Group }) {
  return (
    // biome-ignore lint/a11y/useSemanticElements: a named set of figures, not form controls (no fieldset)
    <div class="cards" aria-label="Counts" role="group">
      <div class="card">
        <div class="value">{group.pending}</div>
        <div class="label">pending</div>
      </div>
      <div class="card">
        <div class="value">{group.leased}</div>
        <div class="label">leased</div>
      </div>
      <div class="card">
        <div class="value">{group.dead}</div>
        <div class="label">dead</div>
      </div>
      <div class="card">
        <div class="value value-small">
          <OldestPending iso={group.oldest_pending_at} />
        </div>
        <div class="label">oldest pending</div>
      </div>
    </div>
  );
}

function draftOf(group: Group): SettingsDraft {
  return {
    eventTypes: group.event_types.join(', '),
    filter: group.filter === null ? '' : JSON.stringify(group.filter, null, 2),
    visibility: String(group.visibility_timeout_s),
    maxDeliveries: String(group.max_deliveries),
  };
}

/** PATCH of the settings; the draft starts from the group as loaded and is not reset by refreshes. */
function Settings({ session, group, onSaved }: { session: Session; group: Group; onSaved(): void }) {
  const [draft, setDraft] = useState<SettingsDraft>(() => draftOf(group));
  const action = useAction();
  const submit = (event: Event) => {
    event.preventDefault();
    void action.run(async () => {
      const filter = parseJsonObject(draft.filter, 'filter', true);
      const saved = orThrow(
        await session.client.PATCH('/v1/consumer-groups/{name}', {
          params: { path: { name: group.name } },
          body: {
            event_types: listOf(draft.eventTypes),
            filter: filter as GroupFilter,
            visibility_timeout_s: numberOf(draft.visibility),
            max_deliveries: numberOf(draft.maxDeliveries),
          },
        }),
      );
      setDraft(draftOf(saved));
      onSaved();
      return 'Settings saved. They apply to events not yet handed out.';
    });
  };
  return (
    <form class="group-form" aria-labelledby="settings-title" onSubmit={submit} noValidate>
      <h2 id="settings-title">Settings</h2>
      <p class="muted">
        Start: <code>{group.start}</code>. A change of event types or filter applies to events not yet handed out.
      </p>
      <GroupSettingsFields
        prefix="settings"
        error={action.error}
        draft={draft}
        onChange={(change) => setDraft({ ...draft, ...change })}
      />
      <div class="actions">
        <button type="submit" disabled={action.running}>
          Save settings
        </button>
      </div>
      <ErrorNote error={action.error} />
      <DoneNote text={action.done} />
    </form>
  );
}

type SeekMode = 'earliest' | 'latest' | 'time';

/**
 * Seek forgets acks, leases and dead marks at or after the point and counts everything before it
 * as acked (API.md §4b), so it asks once more, inline, and the confirm button takes the focus.
 */
function Seek({ session, name, onSought }: { session: Session; name: string; onSought(): void }) {
  const [mode, setMode] = useState<SeekMode>('earliest');
  const [time, setTime] = useState('');
  const { value: confirming, open, close, cancel, confirmButton, opener } = useConfirmStep<string>();
  const action = useAction();

  const ask = (event: Event) => {
    event.preventDefault();
    action.clear();
    if (mode !== 'time') return open(mode);
    const iso = localInputToIso(time);
    if (iso === undefined) {
      void action.run(async () => {
        throw new FormError('to', 'Time: pick a date and time to seek to.');
      });
      return;
    }
    open(iso);
  };
  const seek = () => {
    const to = confirming;
    if (to === null) return;
    close();
    void action.run(async () => {
      const group = orThrow(
        await session.client.POST('/v1/consumer-groups/{name}/seek', { params: { path: { name } }, body: { to } }),
      );
      onSought();
      return `Sought to ${to}: ${group.pending} pending.`;
    });
  };

  return (
    <form class="group-form" aria-labelledby="seek-title" onSubmit={ask} noValidate>
      <h2 id="seek-title">Seek</h2>
      <p class="muted">
        Moves the group's position: from then on it hands out events from that point on. Acks, leases and dead marks at
        or after the point are forgotten; everything before it counts as acknowledged.
      </p>
      <div class="filters">
        <Field id="seek-to" label="Seek to">
          <select
            id="seek-to"
            value={mode}
            onChange={(event) => {
              setMode(event.currentTarget.value as SeekMode);
              close();
            }}
          >
            <option value="earliest">earliest (every retained event)</option>
            <option value="latest">latest (only new events)</option>
            <option value="time">a time</option>
          </select>
        </Field>
        {mode === 'time' && (
          <Field id="seek-time" label="Time (events received at or after it)">
            <input
              id="seek-time"
              type="datetime-local"
              step={1}
              value={time}
              onInput={(event) => {
                setTime(event.currentTarget.value);
                close();
              }}
            />
          </Field>
        )}
        <button
          type="submit"
          class="secondary"
          ref={opener}
          disabled={action.running}
          aria-expanded={confirming !== null}
        >
          Seek…
        </button>
      </div>
      {confirming !== null && (
        <fieldset class="confirm" aria-labelledby="seek-confirm-text">
          <p id="seek-confirm-text">
            Seek group <code>{name}</code> to <code>{confirming}</code>? Acks at or after that point are forgotten.
          </p>
          <div class="actions">
            <button type="button" class="danger" ref={confirmButton} onClick={seek}>
              Confirm seek
            </button>
            <button type="button" class="secondary" onClick={cancel}>
              Cancel
            </button>
          </div>
        </fieldset>
      )}
      <ErrorNote error={action.error} />
      <DoneNote text={action.done} />
    </form>
  );
}

/** GET …/dead a page at a time (cursor), each payload one click away; redrive selected or all. */
function DeadLetters({
  session,
  name,
  version,
  onRedriven,
}: {
  session: Session;
  name: string;
  version: number;
  onRedriven(): void;
}) {
  const [selected, setSelected] = useState<ReadonlySet<string>>(new Set());
  const fetchPage = async (cursor?: string) => {
    // A fresh first page (opened, reloaded, after a redrive or seek) starts with nothing selected.
    if (!cursor) setSelected(new Set());
    const page = orThrow(
      await session.client.GET('/v1/consumer-groups/{name}/dead', {
        params: { path: { name }, query: cursor ? { cursor } : {} },
      }),
    );
    return { items: page.dead, cursor: page.next_cursor };
  };
  const pages = useCursorPages<DeadLetter>(fetchPage, [name, version]);
  const redrive = useAction();
  const dead = pages.items;

  const toggle = (id: string, on: boolean) => {
    const next = new Set(selected);
    if (on) next.add(id);
    else next.delete(id);
    setSelected(next);
  };
  const redriveIds = (ids: string[] | undefined) =>
    redrive.run(async () => {
      const answer = orThrow(
        await session.client.POST('/v1/consumer-groups/{name}/redrive', {
          params: { path: { name } },
          body: ids === undefined ? {} : { ids },
        }),
      );
      onRedriven();
      return `Redriven: ${answer.redriven} event${answer.redriven === 1 ? '' : 's'} back in the group with delivery count 0.`;
    });

  return (
    <section aria-labelledby="dead-title">
      <h2 id="dead-title">Dead letters</h2>
      <p class="muted">
        Events delivered max deliveries times without an ack. This list is read when the page opens and after a redrive
        or seek; the dead count above is live.
      </p>
      <ErrorNote error={pages.error} />
      {!pages.loaded ? (
        pages.loading && <Loading what="dead letters" />
      ) : (
        <>
          <div class="actions">
            {dead.length > 0 && (
              <>
                <button
                  type="button"
                  disabled={redrive.running || selected.size === 0}
                  onClick={() => redriveIds([...selected])}
                >
                  Redrive selected ({selected.size})
                </button>
                <button
                  type="button"
                  class="secondary"
                  disabled={redrive.running}
                  onClick={() => redriveIds(undefined)}
                >
                  Redrive all
                </button>
              </>
            )}
            <button type="button" class="secondary" disabled={pages.loading} onClick={pages.reload}>
              Reload dead letters
            </button>
          </div>
          {dead.length === 0 ? (
            <p class="empty">No dead letters.</p>
          ) : (
            <DeadTable dead={dead} selected={selected} onToggle={toggle} />
          )}
        </>
      )}
      <ErrorNote error={pages.moreError} />
      {pages.hasMore && (
        <button type="button" class="secondary" disabled={pages.loadingMore} onClick={pages.loadMore}>
          Load more dead letters
        </button>
      )}
      <ErrorNote error={redrive.error} />
      <DoneNote text={redrive.done} />
    </section>
  );
}

/** The dead letters shown so far, each with a labelled checkbox and its event one click away. */
function DeadTable({
  dead,
  selected,
  onToggle,
}: {
  dead: DeadLetter[];
  selected: ReadonlySet<string>;
  onToggle(id: string, on: boolean): void;
}) {
  const [open, setOpen] = useState<string | null>(null);
  return (
    <table class="list">
      <caption>Dead letters, oldest first ({dead.length} shown)</caption>
      <thead>
        <tr>
          <th scope="col">Select</th>
          <th scope="col">Id</th>
          <th scope="col">Type</th>
          <th scope="col">Deliveries</th>
          <th scope="col">Payload</th>
        </tr>
      </thead>
      <tbody>
        {dead.map(({ event, delivery_count }) => (
          <Fragment key={event.id}>
            <tr>
              <td>
                <input
                  type="checkbox"
                  id={`dead-${event.id}`}
                  aria-label={`Select ${event.id}`}
                  checked={selected.has(event.id)}
                  onChange={(change) => onToggle(event.id, change.currentTarget.checked)}
                />
              </td>
              <td>
                <code class="id">{event.id}</code>
              </td>
              <td>
                <code>{event.type}</code>
              </td>
              <td>{delivery_count}</td>
              <td>
                <button
                  type="button"
                  class="small secondary"
                  aria-label={`${open === event.id ? 'Hide' : 'View'} payload of ${event.id}`}
                  aria-expanded={open === event.id}
                  aria-controls={`dead-payload-${event.id}`}
                  onClick={() => setOpen(open === event.id ? null : event.id)}
                >
                  {open === event.id ? 'Hide' : 'View'}
                </button>
              </td>
            </tr>
            {open === event.id && (
              <tr id={`dead-payload-${event.id}`} class="detail">
                <td colSpan={5}>
                  <JsonView value={event} label={`Dead event ${event.id}`} />
                </td>
              </tr>
            )}
          </Fragment>
        ))}
      </tbody>
    </table>
  );
}

function DeleteGroup({ session, name }: { session: Session; name: string }) {
  const { value: confirming, open, close, cancel, confirmButton, opener } = useConfirmStep<true>();
  const action = useAction();
  const remove = () =>
    action.run(async () => {
      orThrow(await session.client.DELETE('/v1/consumer-groups/{name}', { params: { path: { name } } }));
      go('groups');
    });
  return (
    <section aria-labelledby="delete-group-title">
      <h2 id="delete-group-title">Delete the group</h2>
      <div class="actions">
        <button
          type="button"
          class="danger"
          ref={opener}
          aria-expanded={confirming !== null}
          onClick={() => (confirming ? close() : open(true))}
        >
          Delete group…
        </button>
      </div>
      {confirming && (
        <fieldset class="confirm" aria-labelledby="delete-group-text">
          <p id="delete-group-text">
            Delete group <code>{name}</code>? Its position, leases and dead letters are gone; the events stay in the
            inbox and in other groups.
          </p>
          <div class="actions">
            <button type="button" class="danger" ref={confirmButton} disabled={action.running} onClick={remove}>
              Confirm delete
            </button>
            <button type="button" class="secondary" onClick={cancel}>
              Cancel
            </button>
          </div>
        </fieldset>
      )}
      <ErrorNote error={action.error} />
    </section>
  );
}
