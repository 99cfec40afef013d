import createClient, { type Client, type ClientOptions } from 'openapi-fetch';
import type { paths } from './schema.js';

/** openapi-fetch's client over the Triggers API's paths: `client.GET('/v1/inbox', …)`, typed end to end. */
export type TriggersClient = Client<paths>;

export interface TriggersClientOptions {
  /** Where the API is served, e.g. `https://triggers.example.com` (the paths already start with `/v1`). */
  baseUrl: string;
  /** An API key (`zt_live_…` / `zt_test_…`), sent as `Authorization: Bearer <key>` on every request. */
  apiKey: string;
  /** Extra headers on every request. */
  headers?: Record<string, string>;
  /** A fetch to use instead of the global one (tests, proxies, instrumentation). */
  fetch?: ClientOptions['fetch'];
}

/** Checks the options once, here, so a typo fails at start and not at the first request. */
export function createTriggersClient(options: TriggersClientOptions): TriggersClient {
  let url: URL;
  try {
    url = new URL(options.baseUrl);
  } catch {
    throw new TypeError(`baseUrl must be an absolute http(s) URL, got ${JSON.stringify(options.baseUrl)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new TypeError(`baseUrl must be http(s), got ${url.protocol}`);
  if (typeof options.apiKey !== 'string' || !/^\S+$/.test(options.apiKey))
    throw new TypeError('apiKey must be a non-empty string without spaces');
  return createClient<paths>({
    baseUrl: options.baseUrl.replace(/\/+$/, ''),
    headers: { ...options.headers, authorization: `Bearer ${options.apiKey}` },
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
}
