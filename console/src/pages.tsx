import type { FunctionComponent } from 'preact';
import { EndpointsPage } from './pages/endpoints.js';
import { EventTypesPage } from './pages/event-types.js';
import { EventsPage } from './pages/events.js';
import { GroupsPage } from './pages/groups.js';
import type { PageProps } from './page-props.js';
import type { Scope } from './session.js';

export interface Page {
  /** First part of the fragment: `#/events`. */
  name: string;
  title: string;
  /** The page shows only for keys with this scope (API.md §2); its API routes need it. */
  scope: Scope;
  component: FunctionComponent<PageProps>;
}

export const PAGES: Page[] = [
  { name: 'events', title: 'Events', scope: 'events:read', component: EventsPage },
  { name: 'groups', title: 'Inbox & groups', scope: 'events:read', component: GroupsPage },
  { name: 'event-types', title: 'Event types', scope: 'event_types:manage', component: EventTypesPage },
  {
    name: 'webhooks',
    title: 'Webhooks',
    scope: 'webhooks:manage',
    component: (props) => <EndpointsPage {...props} family="webhooks" />,
  },
  {
    name: 'destinations',
    title: 'Destinations',
    scope: 'webhooks:manage',
    component: (props) => <EndpointsPage {...props} family="destinations" />,
  },
];
