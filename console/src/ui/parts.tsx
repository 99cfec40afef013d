import type { ComponentChildren } from 'preact';
import { useState } from 'preact/hooks';
import { describeError } from './errors.js';

/** An API error, announced to screen readers as it appears. */
export function ErrorNote({ error }: { error: unknown }) {
  if (error === undefined || error === null) return null;
  const { message, details } = describeError(error);
  return (
    <div class="note note-error" role="alert">
      <p>{message}</p>
      {details.length > 0 && (
        <ul>
          {details.map((detail) => (
            <li key={detail}>{detail}</li>
          ))}
        </ul>
      )}
    </div>
  );
}

/** A success message, read out politely. */
export function DoneNote({ text }: { text: string | null }) {
  if (text === null) return null;
  return (
    <p class="note note-done" role="status">
      {text}
    </p>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p class="muted" role="status">
      Loading {what}…
    </p>
  );
}

/** A time as the reader's local time, with the exact UTC value in the element's datetime. */
export function Time({ iso }: { iso: string | null | undefined }) {
  if (!iso) return <span class="muted">—</span>;
  const at = new Date(iso);
  return (
    <time dateTime={iso} title={iso}>
      {at.toLocaleString(undefined, { dateStyle: 'short', timeStyle: 'medium' })}
    </time>
  );
}

/** JSON, indented, in a scrollable block with a label for assistive technology. */
export function JsonView({ value, label }: { value: unknown; label: string }) {
  return (
    // A named region that takes focus: a long payload scrolls, and keyboard users scroll it from here.
    // biome-ignore lint/a11y/useSemanticElements lint/a11y/noNoninteractiveTabindex: the region is the <pre> itself (its text keeps its layout), and a scrollable region must be reachable by keyboard (WCAG 2.1.1)
    <pre class="json" role="region" aria-label={label} tabIndex={0}>
      {JSON.stringify(value, null, 2)}
    </pre>
  );
}

/** Copies `text`; says so (or why not) next to the button. */
export function CopyButton({ text, label }: { text: string; label: string }) {
  const [said, setSaid] = useState<string | null>(null);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(text);
      setSaid('Copied');
    } catch {
      setSaid('Select and copy by hand');
    }
    setTimeout(() => setSaid(null), 2000);
  };
  return (
    <span class="copy">
      <button type="button" class="small" aria-label={label} onClick={copy}>
        Copy
      </button>
      <span role="status" class="muted">
        {said ?? ''}
      </span>
    </span>
  );
}

/** A labelled form field: the label names the control, the hint describes it. */
export function Field({
  id,
  label,
  hint,
  children,
}: {
  id: string;
  label: string;
  hint?: string;
  children: ComponentChildren;
}) {
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children}
      {hint && (
        <small id={`${id}-hint`} class="muted">
          {hint}
        </small>
      )}
    </div>
  );
}

/** `datetime-local` values are the reader's local time without a zone; the API wants RFC 3339. */
export function localInputToIso(value: string): string | undefined {
  if (value === '') return undefined;
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? undefined : at.toISOString();
}

/** The other way: an instant as a `datetime-local` value in the reader's zone. */
export function isoToLocalInput(at: Date): string {
  const local = new Date(at.getTime() - at.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}
