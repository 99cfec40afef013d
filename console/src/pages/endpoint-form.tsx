import { cloneElement, type VNode } from 'preact';
import { TriggersApiError } from '../../../client/src/errors.js';
import { Field } from '../ui/parts.js';
import {
  type CreateBody,
  type DestinationType,
  type Endpoint,
  type Family,
  isDestination,
  type Ordering,
  TYPE_TEXT,
  type UpdateBody,
} from './endpoint-api.js';

/**
 * The fields of an endpoint as the forms hold them (text, as typed), and the request bodies made
 * from them: all of them on create, only what changed on edit. Destination credentials are never
 * shown back by the API, so on edit their fields start empty and an empty field is not sent.
 */
export interface Draft {
  url: string;
  description: string;
  eventTypes: string;
  filter: string;
  rateLimit: string;
  ordering: Ordering;
  maxInFlight: string;
  type: DestinationType;
  /** rabbitmq and redis_stream: the broker URL, without its password (that is `password`). */
  brokerUrl: string;
  password: string;
  exchange: string;
  routingKey: string;
  servers: string;
  subject: string;
  credentials: string;
  stream: string;
  maxlen: string;
}

export const EMPTY_DRAFT: Draft = {
  url: '',
  description: '',
  eventTypes: '',
  filter: '',
  rateLimit: '',
  ordering: 'none',
  maxInFlight: '',
  type: 'redis_stream',
  brokerUrl: '',
  password: '',
  exchange: '',
  routingKey: '',
  servers: '',
  subject: '',
  credentials: '',
  stream: '',
  maxlen: '',
};

/** The edit form's starting point: the endpoint as GET shows it, config fields empty. */
export function draftOf(endpoint: Endpoint): Draft {
  return {
    ...EMPTY_DRAFT,
    url: isDestination(endpoint) ? '' : endpoint.url,
    description: endpoint.description ?? '',
    eventTypes: endpoint.event_types.join(', '),
    filter: endpoint.filter === null ? '' : JSON.stringify(endpoint.filter, null, 2),
    rateLimit: endpoint.rate_limit_per_sec === null ? '' : String(endpoint.rate_limit_per_sec),
    ordering: endpoint.ordering,
    maxInFlight: endpoint.max_in_flight === null ? '' : String(endpoint.max_in_flight),
    type: isDestination(endpoint) ? endpoint.type : EMPTY_DRAFT.type,
  };
}

/** A problem found before sending, shown like the API's 422 (nothing was sent). */
function localProblems(details: { field: string; message: string }[]): TriggersApiError {
  return new TriggersApiError(422, 'validation_failed', 'Some fields are not valid (nothing was sent).', null, details, null);
}

function typesOf(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((part) => part.trim())
    .filter((part) => part !== '');
}

/** An empty box is `null`; anything else goes as typed when it is not a number, so the API names the field. */
function numberOrNull(text: string): number | null | string {
  if (text.trim() === '') return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : text;
}

function parseFilter(text: string, problems: { field: string; message: string }[]): unknown {
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    problems.push({ field: 'filter', message: `is not JSON: ${(error as Error).message}` });
    return undefined;
  }
}

/** The password typed apart from the URL, put into it (percent-encoded) as the URL's password. */
function urlWithPassword(url: string, password: string, problems: { field: string; message: string }[]): string {
  if (password === '') return url.trim();
  try {
    const parsed = new URL(url.trim());
    parsed.password = password;
    return parsed.toString();
  } catch {
    problems.push({ field: 'config.url', message: 'is not a valid URL' });
    return url.trim();
  }
}

/** The config fields of the draft's type that are filled in (all of them on create). */
function configOf(draft: Draft, problems: { field: string; message: string }[]): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  const put = (name: string, value: string) => {
    if (value.trim() !== '') config[name] = value.trim();
  };
  if (draft.type === 'nats') {
    if (draft.servers.trim() !== '') config.servers = typesOf(draft.servers);
    put('subject', draft.subject);
    if (draft.credentials.trim() !== '') config.credentials = draft.credentials;
    return config;
  }
  if (draft.brokerUrl.trim() !== '') config.url = urlWithPassword(draft.brokerUrl, draft.password, problems);
  else if (draft.password !== '')
    problems.push({ field: 'config.url', message: 'give the URL again with a new password: it is stored as one value' });
  if (draft.type === 'rabbitmq') {
    // The exchange may be the empty string (the default exchange), so it is sent even when empty on create.
    config.exchange = draft.exchange.trim();
    put('routing_key', draft.routingKey);
  } else {
    put('stream', draft.stream);
    if (draft.maxlen.trim() !== '') config.maxlen = numberOrNull(draft.maxlen);
  }
  return config;
}

/** The POST body of a new endpoint, or the problems found before sending. */
export function createBody(family: Family, draft: Draft): CreateBody {
  const problems: { field: string; message: string }[] = [];
  const filter = parseFilter(draft.filter, problems);
  const body: CreateBody = {
    ordering: draft.ordering,
    rate_limit_per_sec: numberOrNull(draft.rateLimit) as number | null,
    max_in_flight: numberOrNull(draft.maxInFlight) as number | null,
  };
  if (family === 'webhooks') body.url = draft.url.trim();
  else {
    body.type = draft.type;
    body.config = configOf(draft, problems);
  }
  const types = typesOf(draft.eventTypes);
  if (types.length > 0) body.event_types = types;
  if (filter !== null && filter !== undefined) body.filter = filter as Record<string, unknown>;
  if (draft.description.trim() !== '') body.description = draft.description.trim();
  if (problems.length > 0) throw localProblems(problems);
  return body;
}

/** The PATCH body: only the fields that differ from the endpoint; config only where typed in. */
export function changedBody(endpoint: Endpoint, draft: Draft): UpdateBody {
  const problems: { field: string; message: string }[] = [];
  const body: UpdateBody = {};
  if (!isDestination(endpoint) && draft.url.trim() !== endpoint.url) body.url = draft.url.trim();
  if (isDestination(endpoint)) {
    const config = configOf(draft, problems);
    // On edit an empty exchange means "unchanged", as for every other config field.
    if (draft.type === 'rabbitmq' && draft.exchange.trim() === '') delete config.exchange;
    if (Object.keys(config).length > 0) body.config = config;
  }
  const description = draft.description.trim() === '' ? null : draft.description.trim();
  if (description !== endpoint.description) body.description = description;
  const types = typesOf(draft.eventTypes);
  if (types.join('\n') !== endpoint.event_types.join('\n')) body.event_types = types.length > 0 ? types : null;
  const filter = parseFilter(draft.filter, problems);
  if (filter !== undefined && JSON.stringify(filter) !== JSON.stringify(endpoint.filter))
    body.filter = filter as Record<string, unknown> | null;
  const rateLimit = numberOrNull(draft.rateLimit);
  if (rateLimit !== endpoint.rate_limit_per_sec) body.rate_limit_per_sec = rateLimit as number | null;
  const maxInFlight = numberOrNull(draft.maxInFlight);
  if (maxInFlight !== endpoint.max_in_flight) body.max_in_flight = maxInFlight as number | null;
  if (draft.ordering !== endpoint.ordering) body.ordering = draft.ordering;
  if (problems.length > 0) throw localProblems(problems);
  return body;
}

/** The API's 422 details by field (`filter`, `config.url`, …), to show each next to its control. */
export function fieldProblems(error: unknown): Map<string, string> {
  const problems = new Map<string, string>();
  if (error instanceof TriggersApiError && error.status === 422)
    for (const detail of error.details)
      if (detail.field && !problems.has(detail.field)) problems.set(detail.field, detail.message ?? 'invalid');
  return problems;
}

interface FieldsProps {
  family: Family;
  mode: 'create' | 'edit';
  /** Prefix of the controls' ids: the create and edit forms can be on one page. */
  idPrefix: string;
  draft: Draft;
  onChange(draft: Draft): void;
  problems: Map<string, string>;
  /** On edit, the endpoint as GET shows it (config masked): shown as placeholders. */
  current?: Endpoint;
}

/** The create and edit forms' controls; every one labelled, each API problem under its control. */
export function EndpointFields({ family, mode, idPrefix, draft, onChange, problems, current }: FieldsProps) {
  const set =
    <K extends keyof Draft>(name: K) =>
    (event: { currentTarget: { value: string } }) =>
      onChange({ ...draft, [name]: event.currentTarget.value as Draft[K] });
  const id = (name: string) => `${idPrefix}-${name}`;
  const currentConfig = current && isDestination(current) ? current.config : {};
  const keepHint = mode === 'edit' ? ' Leave empty to keep what is stored.' : '';

  return (
    <>
      {family === 'webhooks' ? (
        <Labelled id={id('url')} label="URL" field="url" problems={problems} hint="https:// where the events are POSTed.">
          <input type="url" required value={draft.url} placeholder="https://hooks.example.com/triggers" onInput={set('url')} />
        </Labelled>
      ) : (
        <DestinationConfig
          draft={draft}
          set={set}
          id={id}
          mode={mode}
          problems={problems}
          currentConfig={currentConfig}
          keepHint={keepHint}
        />
      )}
      <Labelled
        id={id('event-types')}
        label="Event types"
        field="event_types"
        problems={problems}
        hint="Exact types or prefixes ending in * (user.*), separated by commas. Empty: every event."
      >
        <input value={draft.eventTypes} placeholder="order.*, user.signed_up" onInput={set('eventTypes')} />
      </Labelled>
      <Labelled
        id={id('filter')}
        label="Filter"
        field="filter"
        problems={problems}
        hint='JSON that events must match, e.g. {"payload.amount": {"$gte": 100}}. Operators: $eq $ne $gt $gte $lt $lte $in $nin $exists $prefix, $and/$or. Empty: no filter.'
      >
        <textarea rows={4} spellcheck={false} value={draft.filter} onInput={set('filter')} />
      </Labelled>
      <div class="filters">
        <Labelled id={id('ordering')} label="Ordering" field="ordering" problems={problems}>
          <select value={draft.ordering} onChange={set('ordering')}>
            <option value="none">none: in parallel</option>
            <option value="fifo">fifo: one after another</option>
            <option value="key">key: in order per ordering key</option>
          </select>
        </Labelled>
        <Labelled
          id={id('rate-limit')}
          label="Rate limit per second"
          field="rate_limit_per_sec"
          problems={problems}
          hint="1 to 100 000; empty: none."
        >
          <input type="number" min={1} step={1} value={draft.rateLimit} onInput={set('rateLimit')} />
        </Labelled>
        <Labelled
          id={id('max-in-flight')}
          label="Max in flight"
          field="max_in_flight"
          problems={problems}
          hint="1 to 1 000; empty: adaptive."
        >
          <input type="number" min={1} step={1} value={draft.maxInFlight} onInput={set('maxInFlight')} />
        </Labelled>
      </div>
      <Labelled id={id('description')} label="Description" field="description" problems={problems}>
        <input value={draft.description} onInput={set('description')} />
      </Labelled>
    </>
  );
}

function DestinationConfig({
  draft,
  set,
  id,
  mode,
  problems,
  currentConfig,
  keepHint,
}: {
  draft: Draft;
  set: <K extends keyof Draft>(name: K) => (event: { currentTarget: { value: string } }) => void;
  id(name: string): string;
  mode: 'create' | 'edit';
  problems: Map<string, string>;
  currentConfig: Record<string, unknown>;
  keepHint: string;
}) {
  const shown = (name: string) => {
    const value = currentConfig[name];
    if (value === undefined) return undefined;
    return Array.isArray(value) ? value.join(', ') : String(value);
  };
  return (
    <>
      {mode === 'create' ? (
        <Labelled id={id('type')} label="Type" field="type" problems={problems}>
          <select value={draft.type} onChange={set('type')}>
            {(Object.keys(TYPE_TEXT) as DestinationType[]).map((type) => (
              <option key={type} value={type}>
                {TYPE_TEXT[type]}
              </option>
            ))}
          </select>
        </Labelled>
      ) : (
        <p>
          Type: <strong>{TYPE_TEXT[draft.type]}</strong> <span class="muted">(fixed once created)</span>
        </p>
      )}
      {draft.type === 'nats' ? (
        <>
          <Labelled
            id={id('servers')}
            label="Servers"
            field="config.servers"
            problems={problems}
            hint={`nats:// or tls:// URLs, separated by commas.${keepHint}`}
          >
            <input value={draft.servers} placeholder={shown('servers') ?? 'nats://nats.internal:4222'} onInput={set('servers')} />
          </Labelled>
          <Labelled id={id('subject')} label="Subject" field="config.subject" problems={problems} hint={keepHint.trim() || undefined}>
            <input value={draft.subject} placeholder={shown('subject') ?? 'events.orders'} onInput={set('subject')} />
          </Labelled>
          <Labelled
            id={id('credentials')}
            label="Credentials"
            field="config.credentials"
            problems={problems}
            hint={`The text of a .creds file; optional. Stored encrypted, never shown again.${keepHint}`}
          >
            <textarea rows={3} spellcheck={false} autocomplete="off" value={draft.credentials} onInput={set('credentials')} />
          </Labelled>
        </>
      ) : (
        <>
          <Labelled
            id={id('broker-url')}
            label="Broker URL"
            field="config.url"
            problems={problems}
            hint={`${draft.type === 'rabbitmq' ? 'amqp[s]://user@host:port/vhost' : 'redis[s]://host:port'}, without the password: type it below.${keepHint}`}
          >
            <input
              type="url"
              value={draft.brokerUrl}
              placeholder={shown('url') ?? (draft.type === 'rabbitmq' ? 'amqps://triggers@mq.internal:5671/prod' : 'redis://redis.internal:6379')}
              onInput={set('brokerUrl')}
            />
          </Labelled>
          <Labelled
            id={id('password')}
            label="Password"
            field="config.password"
            problems={problems}
            hint={`Optional. Stored encrypted and never shown again.${mode === 'edit' ? ' To change it, give the URL too.' : ''}`}
          >
            <input type="password" autocomplete="new-password" value={draft.password} onInput={set('password')} />
          </Labelled>
          {draft.type === 'rabbitmq' ? (
            <>
              <Labelled id={id('exchange')} label="Exchange" field="config.exchange" problems={problems} hint={keepHint.trim() || undefined}>
                <input value={draft.exchange} placeholder={shown('exchange') ?? 'events'} onInput={set('exchange')} />
              </Labelled>
              <Labelled
                id={id('routing-key')}
                label="Routing key"
                field="config.routing_key"
                problems={problems}
                hint={`Optional; default: the event type.${keepHint}`}
              >
                <input value={draft.routingKey} placeholder={shown('routing_key')} onInput={set('routingKey')} />
              </Labelled>
            </>
          ) : (
            <>
              <Labelled id={id('stream')} label="Stream" field="config.stream" problems={problems} hint={keepHint.trim() || undefined}>
                <input value={draft.stream} placeholder={shown('stream') ?? 'triggers:events'} onInput={set('stream')} />
              </Labelled>
              <Labelled
                id={id('maxlen')}
                label="Max length"
                field="config.maxlen"
                problems={problems}
                hint={`Optional: trim the stream to about this many entries.${keepHint}`}
              >
                <input type="number" min={1} step={1} value={draft.maxlen} placeholder={shown('maxlen')} onInput={set('maxlen')} />
              </Labelled>
            </>
          )}
        </>
      )}
    </>
  );
}

/**
 * `Field` with the API's problem for `field` under the control, and the control wired to its
 * label, hint and problem (id, aria-describedby, aria-invalid).
 */
function Labelled({
  id,
  label,
  hint,
  field,
  problems,
  children,
}: {
  id: string;
  label: string;
  hint?: string;
  field: string;
  problems: Map<string, string>;
  children: VNode;
}) {
  const problem = problems.get(field);
  const describedBy = [hint ? `${id}-hint` : '', problem ? `${id}-problem` : ''].filter(Boolean).join(' ');
  const control = cloneElement(children, {
    id,
    ...(describedBy ? { 'aria-describedby': describedBy } : {}),
    ...(problem ? { 'aria-invalid': 'true' } : {}),
  });
  return (
    <Field id={id} label={label} hint={hint}>
      {control}
      {problem && (
        <small id={`${id}-problem`} class="problem">
          {field}: {problem}
        </small>
      )}
    </Field>
  );
}
