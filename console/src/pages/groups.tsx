import type { PageProps } from '../pages.js';

/** Placeholder: the inbox and consumer groups page. */
export function GroupsPage(_props: PageProps) {
  return <h1 tabIndex={-1}>Inbox &amp; groups</h1>;
}
