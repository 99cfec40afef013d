import { useEffect, useRef, useState } from 'preact/hooks';
import { go, href } from '../router.js';
import { useAction, useConfirmStep, useLoad } from '../ui/hooks.js';
import { DoneNote, ErrorNote, JsonView, Loading, Time } from '../ui/parts.js';
import { controlsText, EnabledBadge } from './endpoint-badges.js';
import { type Endpoint, type EndpointApi, FAMILY_TEXT, isDestination, targetOf, TYPE_TEXT } from './endpoint-api.js';
import { DeliveriesPanel } from './endpoint-deliveries.js';
import { changedBody, type Draft, draftOf, fieldProblems } from './endpoint-draft.js';
import { EndpointFields } from './endpoint-form.js';
import { SecretOnce } from './endpoint-secret.js';
import { EndpointStatsPanel } from './endpoint-stats.js';

/**
 * What the list says once after a delete sent it there (the detail page is gone by then, and the
 * focus with it): read and cleared by the list when it opens.
 */
let deletedNotice: string | null = null;

export function takeDeletedNotice(): string | null {
  const notice = deletedNotice;
  deletedNotice = null;
  return notice;
}

/** `#/webhooks/<id>`: one endpoint's settings and their edit form, its actions, its last hour, its deliveries. */
export function EndpointDetail({ api, id }: { api: EndpointApi; id: string }) {
  const text = FAMILY_TEXT[api.family];
  const endpoint = useLoad(() => api.get(id), [api, id]);
  const heading = useRef<HTMLHeadingElement>(null);
  // Opened from the list (same page name), the shell does not move focus: do it here.
  useEffect(() => heading.current?.focus(), []);

  const title = endpoint.data ? targetOf(endpoint.data) : id;
  return (
    <section aria-labelledby="endpoint-title">
      <p>
        <a href={href(api.family)}>← All {text.title.toLowerCase()}</a>
      </p>
      <h1 id="endpoint-title" tabIndex={-1} ref={heading}>
        <span class="muted">{text.title.slice(0, -1)}</span> <span class="id">{title}</span>
      </h1>
      <ErrorNote error={endpoint.error} />
      {endpoint.data === undefined ? (
        endpoint.loading && <Loading what={text.one} />
      ) : (
        <>
          <Settings endpoint={endpoint.data} />
          <Actions api={api} endpoint={endpoint.data} onChanged={endpoint.reload} />
          <EndpointStatsPanel api={api} id={id} />
          <EditForm api={api} endpoint={endpoint.data} onSaved={endpoint.reload} />
          <DeliveriesPanel api={api} id={id} />
        </>
      )}
    </section>
  );
}

function Settings({ endpoint }: { endpoint: Endpoint }) {
  return (
    <dl class="settings">
      <dt>Id</dt>
      <dd>
        <code class="id">{endpoint.id}</code>
      </dd>
      {isDestination(endpoint) && (
        <>
          <dt>Type</dt>
          <dd>{TYPE_TEXT[endpoint.type]}</dd>
          <dt>Config</dt>
          <dd>
            <JsonView value={endpoint.config} label="Config (credentials masked)" />
          </dd>
        </>
      )}
      <dt>State</dt>
      <dd>
        <EnabledBadge endpoint={endpoint} />
      </dd>
      <dt>Event types</dt>
      <dd>{endpoint.event_types.length === 0 ? 'all' : endpoint.event_types.join(', ')}</dd>
      <dt>Filter</dt>
      <dd>{endpoint.filter === null ? 'none' : <JsonView value={endpoint.filter} label="Filter" />}</dd>
      <dt>Controls</dt>
      <dd>{controlsText(endpoint)}</dd>
      {endpoint.description && (
        <>
          <dt>Description</dt>
          <dd>{endpoint.description}</dd>
        </>
      )}
      <dt>Created</dt>
      <dd>
        <Time iso={endpoint.created_at} />
      </dd>
      <dt>Updated</dt>
      <dd>
        <Time iso={endpoint.updated_at} />
      </dd>
    </dl>
  );
}

/** Enable or disable, rotate the secret, delete (after a confirm step on the page itself). */
function Actions({ api, endpoint, onChanged }: { api: EndpointApi; endpoint: Endpoint; onChanged(): void }) {
  const text = FAMILY_TEXT[api.family];
  const action = useAction();
  const [secret, setSecret] = useState<string | null>(null);
  const { value: confirming, open, close, cancel, confirmButton, opener } = useConfirmStep<true>();

  const toggle = () =>
    action.run(async () => {
      await api.update(endpoint.id, { enabled: !endpoint.enabled });
      onChanged();
      return endpoint.enabled ? `Disabled: nothing more is sent.` : `Enabled: events from now on are sent.`;
    });
  const rotate = () =>
    action.run(async () => {
      setSecret(null);
      const rotated = await api.rotate(endpoint.id);
      setSecret(rotated.secret);
      onChanged();
      return 'Secret rotated: the old one still signs, beside the new one, for 24 hours.';
    });
  const remove = () =>
    action.run(async () => {
      await api.remove(endpoint.id);
      deletedNotice = `Deleted ${text.one} ${targetOf(endpoint)}.`;
      go(api.family);
    });

  return (
    <section aria-labelledby="actions-title">
      <h2 id="actions-title">Actions</h2>
      <div class="actions">
        <button type="button" class="secondary" disabled={action.running} onClick={toggle}>
          {endpoint.enabled ? `Disable ${text.one}` : `Enable ${text.one}`}
        </button>
        <button type="button" class="secondary" disabled={action.running} onClick={rotate}>
          Rotate secret
        </button>
        <button
          type="button"
          class="danger"
          disabled={action.running}
          ref={opener}
          aria-expanded={confirming !== null}
          aria-controls="delete-confirm"
          onClick={() => (confirming ? close() : open(true))}
        >
          Delete {text.one}…
        </button>
      </div>
      {confirming && (
        <fieldset id="delete-confirm" class="note confirm">
          <legend>Delete this {text.one}?</legend>
          <p>Nothing more is sent to it, and its deliveries go with it. This cannot be undone.</p>
          <div class="actions">
            <button type="button" class="danger" ref={confirmButton} disabled={action.running} onClick={remove}>
              Yes, delete it
            </button>
            <button type="button" class="secondary" onClick={cancel}>
              Keep it
            </button>
          </div>
        </fieldset>
      )}
      <ErrorNote error={action.error} />
      <DoneNote text={action.done} />
      {secret && (
        <SecretOnce
          secret={secret}
          what={`The new signing secret of this ${text.one}.`}
          onDismiss={() => setSecret(null)}
        />
      )}
    </section>
  );
}

/** PATCH with only what changed; credentials typed in are sent, empty config fields are not. */
function EditForm({ api, endpoint, onSaved }: { api: EndpointApi; endpoint: Endpoint; onSaved(): void }) {
  const [draft, setDraft] = useState<Draft>(() => draftOf(endpoint));
  // A change saved here or by an action starts the form again from what the API now says.
  useEffect(() => setDraft(draftOf(endpoint)), [endpoint.updated_at]);
  const save = useAction();
  return (
    <section aria-labelledby="edit-title">
      <h2 id="edit-title">Settings</h2>
      <form
        class="endpoint-form"
        aria-label="Edit settings"
        noValidate
        onSubmit={(event) => {
          event.preventDefault();
          void save.run(async () => {
            const body = changedBody(endpoint, draft);
            const fields = Object.keys(body);
            if (fields.length === 0) return 'Nothing changed.';
            await api.update(endpoint.id, body);
            onSaved();
            return `Saved: ${fields.join(', ').replaceAll('_', ' ')}.`;
          });
        }}
      >
        <EndpointFields
          family={api.family}
          mode="edit"
          idPrefix="edit"
          draft={draft}
          onChange={setDraft}
          problems={fieldProblems(save.error)}
          current={endpoint}
        />
        <ErrorNote error={save.error} />
        <DoneNote text={save.done} />
        <button type="submit" disabled={save.running}>
          Save changes
        </button>
      </form>
    </section>
  );
}
