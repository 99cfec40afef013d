import type { TriggersClient } from './client.js';
import { orThrow } from './errors.js';
import { retrying, type RetryOptions } from './retry.js';
import type { paths } from './schema.js';

export type InboxQuery = NonNullable<paths['/v1/inbox']['get']['parameters']['query']>;
export type InboxPage = paths['/v1/inbox']['get']['responses'][200]['content']['application/json'];
export type InboxEvent = InboxPage['events'][number];

/**
 * The inbox page by page, from `query.cursor` (or the start) to where it ends for now
 * (`has_more: false`). Acknowledging a page while reading is fine: acks never move a cursor.
 * The last page's `next_cursor` is where to poll next for events that arrive later.
 * 429 and 503 are waited out (see `retrying`); `retry: false` throws them instead.
 */
export async function* inboxPages(
  client: TriggersClient,
  query: InboxQuery = {},
  retry: RetryOptions | false = {},
): AsyncGenerator<InboxPage, void> {
  let cursor = query.cursor;
  for (;;) {
    const read = async () => orThrow(await client.GET('/v1/inbox', { params: { query: { ...query, cursor } } }));
    const page = retry === false ? await read() : await retrying(read, retry);
    yield page;
    if (!page.has_more || !page.next_cursor) return;
    cursor = page.next_cursor;
  }
}
