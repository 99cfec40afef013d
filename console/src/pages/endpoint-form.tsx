import { cloneElement, type VNode } from 'preact';
import { Field } from '../ui/parts.js';
import { type DestinationType, type Endpoint, type Family, isDestination, TYPE_TEXT } from './endpoint-api.js';
import type { Draft } from './endpoint-draft.js';

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
        <Labelled
          id={id('url')}
          label="URL"
          field="url"
          problems={problems}
          hint="https:// where the events are POSTed."
        >
          <input
            type="url"
            required
            value={draft.url}
            placeholder="https://hooks.example.com/triggers"
            onInput={set('url')}
          />
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
            field="config.servers|config"
            problems={problems}
            hint={`nats:// or tls:// URLs, separated by commas.${keepHint}`}
          >
            <input
              value={draft.servers}
              placeholder={shown('servers') ?? 'nats://nats.internal:4222'}
              onInput={set('servers')}
            />
          </Labelled>
          <Labelled
            id={id('subject')}
            label="Subject"
            field="config.subject"
            problems={problems}
            hint={keepHint.trim() || undefined}
          >
            <input value={draft.subject} placeholder={shown('subject') ?? 'events.orders'} onInput={set('subject')} />
          </Labelled>
          <Labelled
            id={id('credentials')}
            label="Credentials"
            field="config.credentials"
            problems={problems}
            hint={`The text of a .creds file, pasted or chosen below; optional. Masked here, stored encrypted, never shown again.${keepHint}`}
          >
            <textarea
              rows={3}
              class="secret"
              spellcheck={false}
              autocomplete="off"
              value={draft.credentials}
              onInput={set('credentials')}
            />
          </Labelled>
          <Field id={id('credentials-file')} label="Credentials file">
            {/* Read in the browser and put in the box above: the file's text is what is sent. */}
            <input
              id={id('credentials-file')}
              type="file"
              accept=".creds,text/plain"
              onChange={async (event) => {
                const file = event.currentTarget.files?.[0];
                if (file) set('credentials')({ currentTarget: { value: await file.text() } });
              }}
            />
          </Field>
        </>
      ) : (
        <>
          <Labelled
            id={id('broker-url')}
            label="Broker URL"
            field="config.url|config"
            problems={problems}
            hint={`${draft.type === 'rabbitmq' ? 'amqp[s]://user@host:port/vhost' : 'redis[s]://host:port'}, without the password: type it below.${keepHint}`}
          >
            <input
              type="url"
              value={draft.brokerUrl}
              placeholder={
                shown('url') ??
                (draft.type === 'rabbitmq' ? 'amqps://triggers@mq.internal:5671/prod' : 'redis://redis.internal:6379')
              }
              onInput={set('brokerUrl')}
            />
          </Labelled>
          <Labelled
            id={id('password')}
            label="Password"
            field="config.password"
            problems={problems}
            hint={`Optional. Stored encrypted and never shown again.${mode === 'edit' ? ' To change it, type the new one: it goes into the stored URL, or into the URL above if you give one.' : ''}`}
          >
            <input type="password" autocomplete="new-password" value={draft.password} onInput={set('password')} />
          </Labelled>
          {draft.type === 'rabbitmq' ? (
            <>
              <Labelled
                id={id('exchange')}
                label="Exchange"
                field="config.exchange"
                problems={problems}
                hint={keepHint.trim() || undefined}
              >
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
              <Labelled
                id={id('stream')}
                label="Stream"
                field="config.stream"
                problems={problems}
                hint={keepHint.trim() || undefined}
              >
                <input
                  value={draft.stream}
                  placeholder={shown('stream') ?? 'triggers:events'}
                  onInput={set('stream')}
                />
              </Labelled>
              <Labelled
                id={id('maxlen')}
                label="Max length"
                field="config.maxlen"
                problems={problems}
                hint={`Optional: trim the stream to about this many entries.${keepHint}`}
              >
                <input
                  type="number"
                  min={1}
                  step={1}
                  value={draft.maxlen}
                  placeholder={shown('maxlen')}
                  onInput={set('maxlen')}
                />
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
  /** The API's field name; `config.url|config` shows the first of them that has a problem. */
  field: string;
  problems: Map<string, string>;
  children: VNode;
}) {
  const shownField = field.split('|').find((name) => problems.has(name)) ?? field;
  const problem = problems.get(shownField);
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
          {shownField}: {problem}
        </small>
      )}
    </Field>
  );
}
