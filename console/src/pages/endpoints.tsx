import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { PageProps } from '../page-props.js';
import { href } from '../router.js';
import { useAction, useLoad } from '../ui/hooks.js';
import { DoneNote, ErrorNote, Loading } from '../ui/parts.js';
import {
  type Endpoint,
  endpointApi,
  FAMILY_TEXT,
  type Family,
  isDestination,
  targetOf,
  TYPE_TEXT,
} from './endpoint-api.js';
import { controlsText, EnabledBadge } from './endpoint-badges.js';
import { EndpointDetail, takeDeletedNotice } from './endpoint-detail.js';
import { createBody, EMPTY_DRAFT, fieldProblems } from './endpoint-draft.js';
import { EndpointFields } from './endpoint-form.js';
import { SecretOnce } from './endpoint-secret.js';
import './endpoints.css';

/**
 * `#/webhooks` and `#/destinations`: the org's endpoints and a form for a new one;
 * `#/webhooks/<id>`: one endpoint (EndpointDetail).
 */
export function EndpointsPage({ session, path, family }: PageProps & { family: Family }) {
  const api = useMemo(() => endpointApi(session, family), [session, family]);
  const id = path[0];
  if (id !== undefined) {
    // The fragment is anyone's link: only an id goes into an API path (never `..` or `.`).
    if (!ENDPOINT_ID.test(id)) return <NoSuchEndpoint family={family} />;
    return <EndpointDetail key={id} api={api} id={id} />;
  }
  return <EndpointList api={api} />;
}

const ENDPOINT_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function NoSuchEndpoint({ family }: { family: Family }) {
  const text = FAMILY_TEXT[family];
  return (
    <section aria-labelledby="endpoints-title">
      <h1 id="endpoints-title" tabIndex={-1}>
        {text.title}
      </h1>
      <p class="note note-error" role="alert">
        This link does not name a {text.one}. <a href={href(family)}>All {text.title.toLowerCase()}</a>
      </p>
    </section>
  );
}

function EndpointList({ api }: { api: ReturnType<typeof endpointApi> }) {
  const text = FAMILY_TEXT[api.family];
  const endpoints = useLoad(() => api.list(), [api]);
  const [deleted] = useState(takeDeletedNotice);
  const heading = useRef<HTMLHeadingElement>(null);
  // Back from a detail page (same page name, so the shell keeps focus where it was): focus the heading.
  useEffect(() => heading.current?.focus(), []);
  return (
    <section aria-labelledby="endpoints-title">
      <h1 id="endpoints-title" tabIndex={-1} ref={heading}>
        {text.title}
      </h1>
      <p class="muted">{text.scopeNote}</p>
      <DoneNote text={deleted} />
      <ErrorNote error={endpoints.error} />
      {endpoints.loading && endpoints.data === undefined ? (
        <Loading what={text.title.toLowerCase()} />
      ) : (endpoints.data ?? []).length === 0 ? (
        <p class="empty">No {text.one}s yet: create one below.</p>
      ) : (
        <EndpointTable family={api.family} endpoints={endpoints.data ?? []} />
      )}
      <CreateForm api={api} onCreated={endpoints.reload} />
    </section>
  );
}

function EndpointTable({ family, endpoints }: { family: Family; endpoints: Endpoint[] }) {
  const text = FAMILY_TEXT[family];
  return (
    <table class="list">
      <caption>
        {text.title}, oldest first ({endpoints.length})
      </caption>
      <thead>
        <tr>
          <th scope="col">{family === 'webhooks' ? 'URL' : 'Target'}</th>
          <th scope="col">State</th>
          <th scope="col">Event types</th>
          <th scope="col">Filter</th>
          <th scope="col">Controls</th>
        </tr>
      </thead>
      <tbody>
        {endpoints.map((endpoint) => (
          <tr key={endpoint.id}>
            <td>
              {isDestination(endpoint) && <span class="badge">{TYPE_TEXT[endpoint.type]}</span>}{' '}
              <a href={href(family, endpoint.id)} class="id">
                {targetOf(endpoint)}
              </a>
              {endpoint.description && <div class="muted small-print">{endpoint.description}</div>}
            </td>
            <td>
              <EnabledBadge endpoint={endpoint} />
            </td>
            <td>
              {endpoint.event_types.length === 0 ? <span class="muted">all</span> : endpoint.event_types.join(', ')}
            </td>
            <td>{endpoint.filter === null ? <span class="muted">none</span> : 'yes'}</td>
            <td class="small-print">{controlsText(endpoint)}</td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}

function CreateForm({ api, onCreated }: { api: ReturnType<typeof endpointApi>; onCreated(): void }) {
  const text = FAMILY_TEXT[api.family];
  const [draft, setDraft] = useState(EMPTY_DRAFT);
  const [created, setCreated] = useState<{ id: string; secret: string; target: string } | null>(null);
  const create = useAction();
  return (
    <section aria-labelledby="create-title">
      <h2 id="create-title">New {text.one}</h2>
      {created && (
        <>
          <p>
            Created <a href={href(api.family, created.id)}>{created.target}</a>.
          </p>
          <SecretOnce
            secret={created.secret}
            what={`The signing secret of the new ${text.one}.`}
            onDismiss={() => setCreated(null)}
          />
        </>
      )}
      <form
        class="endpoint-form"
        aria-label={`New ${text.one}`}
        noValidate
        onSubmit={(event) => {
          event.preventDefault();
          void create.run(async () => {
            setCreated(null);
            const endpoint = await api.create(createBody(api.family, draft));
            setCreated({ id: endpoint.id, secret: endpoint.secret, target: targetOf(endpoint) });
            setDraft(EMPTY_DRAFT);
            onCreated();
            return `Created ${text.one} ${targetOf(endpoint)}.`;
          });
        }}
      >
        <EndpointFields
          family={api.family}
          mode="create"
          idPrefix="create"
          draft={draft}
          onChange={setDraft}
          problems={fieldProblems(create.error)}
        />
        <ErrorNote error={create.error} />
        <DoneNote text={create.done} />
        <button type="submit" disabled={create.running}>
          Create {text.one}
        </button>
      </form>
    </section>
  );
}
