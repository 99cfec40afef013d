import { createTriggersClient, inboxPages, orThrow, retrying, type InboxEvent } from '../src/index.js';
import { clientEnv, intEnv, stringEnv, run } from './env.js';

/**
 * A consumer: reads the inbox page by page (following `next_cursor` while `has_more`), processes
 * each page and then acknowledges it, so processed events leave the inbox. A crash between the two
 * means the page is read again next time: at-least-once, so processing should be idempotent.
 *
 *   TRIGGERS_BASE_URL=http://localhost:8080 TRIGGERS_API_KEY=zt_… node consumer.js
 *
 * EVENT_TYPE filters (`user.signup` or `user.*`), PAGE_SIZE is 1–1000 (default 100). With POLL_MS
 * set it keeps polling from its last cursor every POLL_MS until SIGINT/SIGTERM; without, it stops
 * once the inbox is empty. Prints `consumer: 2500 events in 25 pages, 2500 acked; order.paid=2500`.
 */
run('consumer', async () => {
  const client = createTriggersClient(clientEnv());
  const type = stringEnv('EVENT_TYPE', '*');
  const limit = intEnv('PAGE_SIZE', 100, 1, 1000);
  const pollMs = intEnv('POLL_MS', 0, 0, 3_600_000);
  const totals = { events: 0, pages: 0, acked: 0 };
  const byType = new Map<string, number>();

  // The work this consumer exists for; here it only counts.
  const processEvent = (event: InboxEvent) => {
    byType.set(event.type, (byType.get(event.type) ?? 0) + 1);
  };

  let stopping = false;
  let wake = () => {};
  const stop = () => {
    stopping = true;
    wake();
  };
  process.once('SIGINT', stop).once('SIGTERM', stop);

  let cursor: string | undefined;
  do {
    for await (const page of inboxPages(client, { type, limit, cursor })) {
      totals.pages++;
      if (page.events.length > 0) {
        for (const event of page.events) processEvent(event);
        totals.events += page.events.length;
        const ids = page.events.map((event) => event.id);
        const answer = await retrying(async () => orThrow(await client.POST('/v1/ack', { body: { ids } })));
        totals.acked += answer.acked;
      }
      cursor = page.next_cursor ?? cursor;
      if (stopping) break;
    }
    if (pollMs > 0 && !stopping) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, pollMs);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
  } while (pollMs > 0 && !stopping);

  const types = [...byType].map(([name, count]) => `${name}=${count}`).join(' ');
  process.stdout.write(
    `consumer: ${totals.events} events in ${totals.pages} pages, ${totals.acked} acked${types ? `; ${types}` : ''}\n`,
  );
});
