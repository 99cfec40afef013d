import type { Session } from './session.js';

/**
 * What every page is given: the session, and the rest of the fragment after the page's name
 * (`#/webhooks/<id>` gives the webhooks page `path = [id]`). Its own module, so pages need not
 * import the registry that imports them (pages.tsx).
 */
export interface PageProps {
  session: Session;
  path: string[];
}
