import { Field, Time } from '../ui/parts.js';
import { names } from './json-input.js';

/** What the groups list and a group's page share. */

/** The inbox, the list and a group refresh this often while the tab is visible. */
export const REFRESH_MS = 5_000;

/** How long ago `iso` was, in the largest unit that is at least one: "42 s", "3 min", "2 h", "5 d". */
export function age(iso: string, now = Date.now()): string {
  const seconds = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (seconds < 60) return `${seconds} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min`;
  if (seconds < 86_400) return `${Math.floor(seconds / 3600)} h`;
  return `${Math.floor(seconds / 86_400)} d`;
}

/** The oldest pending event's time and how long it has waited, or a dash. */
export function OldestPending({ iso }: { iso: string | null }) {
  if (iso === null) return <span class="muted">none</span>;
  return (
    <span>
      <Time iso={iso} /> <span class="muted">({age(iso)} ago)</span>
    </span>
  );
}

export interface SettingsDraft {
  eventTypes: string;
  filter: string;
  visibility: string;
  maxDeliveries: string;
}

/** The settings a group is created with and a PATCH changes (API.md §4b). */
export function GroupSettingsFields({
  prefix,
  error,
  draft,
  onChange,
}: {
  prefix: string;
  error: unknown;
  draft: SettingsDraft;
  onChange(change: Partial<SettingsDraft>): void;
}) {
  return (
    <>
      <Field
        id={`${prefix}-event-types`}
        label="Event types"
        hint="Comma separated: exact types (order.paid) or prefixes ending in * (user.*). Empty: every type."
      >
        <input
          id={`${prefix}-event-types`}
          aria-describedby={`${prefix}-event-types-hint`}
          aria-invalid={names(error, 'event_types')}
          value={draft.eventTypes}
          onInput={(event) => onChange({ eventTypes: event.currentTarget.value })}
        />
      </Field>
      <Field
        id={`${prefix}-filter`}
        label="Filter"
        hint='A JSON object, e.g. {"payload.amount": {"$gte": 100}}. Empty: no filter.'
      >
        <textarea
          id={`${prefix}-filter`}
          aria-describedby={`${prefix}-filter-hint`}
          aria-invalid={names(error, 'filter')}
          rows={4}
          spellcheck={false}
          value={draft.filter}
          onInput={(event) => onChange({ filter: event.currentTarget.value })}
        />
      </Field>
      <div class="field-row">
        <Field id={`${prefix}-visibility`} label="Visibility timeout (s)" hint="1–43 200 seconds a lease lasts.">
          <input
            id={`${prefix}-visibility`}
            type="number"
            min={1}
            max={43_200}
            aria-describedby={`${prefix}-visibility-hint`}
            aria-invalid={names(error, 'visibility_timeout_s')}
            value={draft.visibility}
            onInput={(event) => onChange({ visibility: event.currentTarget.value })}
          />
        </Field>
        <Field id={`${prefix}-max-deliveries`} label="Max deliveries" hint="1–1000; then the event is dead.">
          <input
            id={`${prefix}-max-deliveries`}
            type="number"
            min={1}
            max={1000}
            aria-describedby={`${prefix}-max-deliveries-hint`}
            aria-invalid={names(error, 'max_deliveries')}
            value={draft.maxDeliveries}
            onInput={(event) => onChange({ maxDeliveries: event.currentTarget.value })}
          />
        </Field>
      </div>
    </>
  );
}
