import { useState } from 'preact/hooks';
import { orThrow } from '../../../client/src/errors.js';
import type { EventType, Schemas } from '../../../client/src/types.js';
import type { PageProps } from '../page-props.js';
import { go, href } from '../router.js';
import type { Session } from '../session.js';
import { useAction, useConfirmStep, useLoad } from '../ui/hooks.js';
import { DoneNote, ErrorNote, Field, JsonView, Loading, Time } from '../ui/parts.js';
import { FormError, names, parseJsonObject } from './json-input.js';
import { unaddressable, unaddressableNote } from './url-names.js';
import './groups.css';

type TypeSchema = Schemas['EventTypeInput']['schema'];

/** `#/event-types`: the org's event types and a form to register one; `#/event-types/<type>`: one type. */
export function EventTypesPage({ session, path }: PageProps) {
  if (path[0] !== undefined) return <EventTypeDetail session={session} type={path[0]} />;
  return <EventTypeList session={session} />;
}

function EventTypeList({ session }: { session: Session }) {
  const types = useLoad(async () => orThrow(await session.client.GET('/v1/event-types')).event_types, []);
  return (
    <section aria-labelledby="event-types-title">
      <h1 id="event-types-title" tabIndex={-1}>
        Event types
      </h1>
      <p class="muted">
        An event type's JSON Schema is checked against every event of that type before the 202: events that do not match
        are refused with 422.
      </p>
      <ErrorNote error={types.error} />
      {types.data === undefined ? (
        types.loading && <Loading what="event types" />
      ) : types.data.length === 0 ? (
        <p class="empty">No event types registered.</p>
      ) : (
        <table class="list">
          <caption>Event types</caption>
          <thead>
            <tr>
              <th scope="col">Type</th>
              <th scope="col">Version</th>
              <th scope="col">Deprecated</th>
              <th scope="col">Updated</th>
            </tr>
          </thead>
          <tbody>
            {types.data.map((type) => (
              <tr key={type.type}>
                <th scope="row">
                  <a href={href('event-types', type.type)}>{type.type}</a>
                </th>
                <td>{type.version}</td>
                <td>{type.deprecated ? <span class="badge warn">deprecated</span> : <span class="muted">no</span>}</td>
                <td>
                  <Time iso={type.updated_at} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <RegisterForm session={session} onSaved={types.reload} />
    </section>
  );
}

interface TypeDraft {
  schema: string;
  description: string;
  deprecated: boolean;
}

const STARTER_SCHEMA = '{\n  "type": "object",\n  "properties": {},\n  "required": []\n}';

/** PUT /v1/event-types/{type}, after checking the schema text is a JSON object. */
async function putType(
  session: Session,
  type: string,
  draft: TypeDraft,
): Promise<{ saved: EventType; created: boolean }> {
  const schema = parseJsonObject(draft.schema, 'schema', false);
  const result = await session.client.PUT('/v1/event-types/{type}', {
    params: { path: { type } },
    body: {
      schema: schema as TypeSchema,
      description: draft.description.trim() === '' ? null : draft.description.trim(),
      deprecated: draft.deprecated,
    },
  });
  return { saved: orThrow(result), created: result.response.status === 201 };
}

function RegisterForm({ session, onSaved }: { session: Session; onSaved(): void }) {
  const [type, setType] = useState('');
  const [draft, setDraft] = useState<TypeDraft>({ schema: STARTER_SCHEMA, description: '', deprecated: false });
  const [savedType, setSavedType] = useState<string | null>(null);
  const action = useAction();
  const submit = (event: Event) => {
    event.preventDefault();
    setSavedType(null);
    void action.run(async () => {
      if (type.trim() === '') throw new FormError('type', 'Type: required.');
      if (unaddressable(type.trim())) throw new FormError('type', unaddressableNote('event type', type.trim()));
      const { saved, created } = await putType(session, type.trim(), draft);
      setSavedType(saved.type);
      setType('');
      setDraft({ schema: STARTER_SCHEMA, description: '', deprecated: false });
      onSaved();
      return `${created ? 'Registered' : 'Replaced'} ${saved.type}: version ${saved.version}.`;
    });
  };
  return (
    <form class="type-form" aria-labelledby="register-title" onSubmit={submit} noValidate>
      <h2 id="register-title">Register an event type</h2>
      <p class="muted">An existing type of that name is replaced (its version rises).</p>
      <Field id="type-name" label="Type" hint="1–128 characters of A–Z a–z 0–9 . _ : -, as an event's type.">
        <input
          id="type-name"
          aria-describedby="type-name-hint"
          aria-invalid={names(action.error, 'type')}
          value={type}
          onInput={(event) => setType(event.currentTarget.value)}
        />
      </Field>
      <TypeFields
        prefix="new-type"
        draft={draft}
        error={action.error}
        onChange={(change) => setDraft({ ...draft, ...change })}
      />
      <div class="actions">
        <button type="submit" disabled={action.running}>
          Register
        </button>
      </div>
      <ErrorNote error={action.error} />
      <DoneNote text={action.done} />
      {savedType !== null && action.done !== null && (
        <p>
          <a href={href('event-types', savedType)}>Open {savedType}</a>
        </p>
      )}
    </form>
  );
}

/** The schema, description and deprecated flag: what a PUT sends, for a new type or an edit. */
function TypeFields({
  prefix,
  draft,
  error,
  onChange,
}: {
  prefix: string;
  draft: TypeDraft;
  error: unknown;
  onChange(change: Partial<TypeDraft>): void;
}) {
  return (
    <>
      <Field
        id={`${prefix}-schema`}
        label="JSON Schema"
        hint="JSON Schema 2020-12 for the events' payload; $ref only inside the schema; at most 64 KiB."
      >
        <textarea
          id={`${prefix}-schema`}
          aria-describedby={`${prefix}-schema-hint`}
          aria-invalid={names(error, 'schema')}
          rows={12}
          spellcheck={false}
          value={draft.schema}
          onInput={(event) => onChange({ schema: event.currentTarget.value })}
        />
      </Field>
      <Field id={`${prefix}-description`} label="Description" hint="Optional, up to 1000 characters.">
        <input
          id={`${prefix}-description`}
          aria-describedby={`${prefix}-description-hint`}
          aria-invalid={names(error, 'description')}
          value={draft.description}
          onInput={(event) => onChange({ description: event.currentTarget.value })}
        />
      </Field>
      <div class="field">
        <label>
          <input
            type="checkbox"
            checked={draft.deprecated}
            onChange={(event) => onChange({ deprecated: event.currentTarget.checked })}
          />{' '}
          Deprecated <span class="muted">(events of the type are still accepted)</span>
        </label>
      </div>
    </>
  );
}

function draftOf(type: EventType): TypeDraft {
  return {
    schema: JSON.stringify(type.schema, null, 2),
    description: type.description ?? '',
    deprecated: type.deprecated,
  };
}

function EventTypeDetail({ session, type }: { session: Session; type: string }) {
  if (unaddressable(type))
    return (
      <section aria-labelledby="event-type-title">
        <h1 id="event-type-title" tabIndex={-1}>
          Event type <code>{type}</code>
        </h1>
        <ErrorNote error={new Error(unaddressableNote('event type', type))} />
      </section>
    );
  return <AddressableType session={session} type={type} />;
}

function AddressableType({ session, type }: { session: Session; type: string }) {
  const loaded = useLoad(
    async () => orThrow(await session.client.GET('/v1/event-types/{type}', { params: { path: { type } } })),
    [type],
  );
  return (
    <section aria-labelledby="event-type-title">
      <p class="crumbs">
        <a href={href('event-types')}>Event types</a>
      </p>
      <h1 id="event-type-title" tabIndex={-1}>
        Event type <code>{type}</code>
      </h1>
      <ErrorNote error={loaded.error} />
      {loaded.data === undefined ? (
        loaded.loading && <Loading what="the event type" />
      ) : (
        <>
          <dl class="facts">
            <dt>Version</dt>
            <dd data-testid="type-version">{loaded.data.version}</dd>
            <dt>Deprecated</dt>
            <dd>{loaded.data.deprecated ? <span class="badge warn">deprecated</span> : 'no'}</dd>
            <dt>Description</dt>
            <dd>{loaded.data.description ?? <span class="muted">none</span>}</dd>
            <dt>Registered</dt>
            <dd>
              <Time iso={loaded.data.created_at} />
            </dd>
            <dt>Updated</dt>
            <dd>
              <Time iso={loaded.data.updated_at} />
            </dd>
          </dl>
          <h2>Schema</h2>
          <JsonView value={loaded.data.schema} label={`Schema of ${type}`} />
          <EditForm session={session} current={loaded.data} onSaved={loaded.reload} />
          <DeleteType session={session} type={type} />
        </>
      )}
    </section>
  );
}

function EditForm({ session, current, onSaved }: { session: Session; current: EventType; onSaved(): void }) {
  const [draft, setDraft] = useState<TypeDraft>(() => draftOf(current));
  const action = useAction();
  const submit = (event: Event) => {
    event.preventDefault();
    void action.run(async () => {
      const { saved } = await putType(session, current.type, draft);
      // The form goes on from what the API now holds (its schema as stored, key order kept).
      setDraft(draftOf(saved));
      onSaved();
      return saved.version === current.version
        ? `Nothing changed: still version ${saved.version}.`
        : `Saved: now version ${saved.version}.`;
    });
  };
  return (
    <form class="type-form" aria-labelledby="edit-type-title" onSubmit={submit} noValidate>
      <h2 id="edit-type-title">Edit</h2>
      <TypeFields
        prefix="edit-type"
        draft={draft}
        error={action.error}
        onChange={(change) => setDraft({ ...draft, ...change })}
      />
      <div class="actions">
        <button type="submit" disabled={action.running}>
          Save
        </button>
      </div>
      <ErrorNote error={action.error} />
      <DoneNote text={action.done} />
    </form>
  );
}

function DeleteType({ session, type }: { session: Session; type: string }) {
  const { value: confirming, open, close, cancel, confirmButton, opener } = useConfirmStep<true>();
  const action = useAction();
  const remove = () =>
    action.run(async () => {
      orThrow(await session.client.DELETE('/v1/event-types/{type}', { params: { path: { type } } }));
      go('event-types');
    });
  return (
    <section aria-labelledby="delete-type-title">
      <h2 id="delete-type-title">Delete the event type</h2>
      <div class="actions">
        <button
          type="button"
          class="danger"
          ref={opener}
          aria-expanded={confirming !== null}
          onClick={() => (confirming ? close() : open(true))}
        >
          Delete event type…
        </button>
      </div>
      {confirming && (
        <fieldset class="confirm" aria-labelledby="delete-type-text">
          <p id="delete-type-text">
            Delete <code>{type}</code>? Its events are accepted without a check from then on; registered again, it
            starts at version 1.
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
