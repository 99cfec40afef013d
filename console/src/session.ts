import { createTriggersClient, type TriggersClient } from '../../client/src/client.js';
import { orThrow } from '../../client/src/errors.js';
import type { Schemas } from '../../client/src/types.js';

/** What GET /v1/key says of the key the console signed in with. */
export type CallingKey = Schemas['CallingKey'];
export type Scope = CallingKey['scopes'][number];

/** A signed-in console: the typed client carrying the key, and what the key may do. */
export interface Session {
  client: TriggersClient;
  key: CallingKey;
}

/**
 * The key lives in this tab's sessionStorage only (API.md §9): gone when the tab closes, never in
 * a cookie, so no other site can make the browser send it (no CSRF), and no other tab sees it.
 */
const STORAGE_KEY = 'triggers-console.api-key';

/** Fired on window when the API answers 401 mid-session (a key revoked while the tab is open). */
export const SIGNED_OUT_EVENT = 'triggers-console:signed-out';

function clientFor(apiKey: string): TriggersClient {
  return createTriggersClient({
    baseUrl: location.origin,
    apiKey,
    fetch: async (request) => {
      const response = await globalThis.fetch(request);
      if (response.status === 401) window.dispatchEvent(new Event(SIGNED_OUT_EVENT));
      return response;
    },
  });
}

/** Checks a pasted key with GET /v1/key and keeps it; throws the API's error when it is refused. */
export async function signIn(pastedKey: string): Promise<Session> {
  const apiKey = pastedKey.trim();
  const client = createTriggersClient({ baseUrl: location.origin, apiKey });
  const key = orThrow(await client.GET('/v1/key'));
  sessionStorage.setItem(STORAGE_KEY, apiKey);
  return { client: clientFor(apiKey), key };
}

/** The session of this tab after a reload, if its key still works. */
export async function resumeSession(): Promise<Session | null> {
  const apiKey = sessionStorage.getItem(STORAGE_KEY);
  if (apiKey === null) return null;
  try {
    return await signIn(apiKey);
  } catch {
    signOut();
    return null;
  }
}

export function signOut(): void {
  sessionStorage.removeItem(STORAGE_KEY);
}

export function can(session: Session, scope: Scope): boolean {
  return session.key.scopes.includes(scope);
}
