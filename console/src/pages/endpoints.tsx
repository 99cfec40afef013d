import type { PageProps } from '../pages.js';

/** Placeholder: webhooks and destinations. */
export function EndpointsPage({ family }: PageProps & { family: 'webhooks' | 'destinations' }) {
  return <h1 tabIndex={-1}>{family === 'webhooks' ? 'Webhooks' : 'Destinations'}</h1>;
}
