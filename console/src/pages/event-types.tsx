import type { PageProps } from '../pages.js';

/** Placeholder: the event types page. */
export function EventTypesPage(_props: PageProps) {
  return <h1 tabIndex={-1}>Event types</h1>;
}
