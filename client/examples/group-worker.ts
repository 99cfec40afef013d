import { createTriggersClient, orThrow, runGroupWorker, type GroupMessage } from '../src/index.js';
import { clientEnv, intEnv, run, stringEnv } from './env.js';

/**
 * A consumer-group worker: handles the group's events CONCURRENCY at a time with runGroupWorker
 * (long-poll receive, lease extension while a handler runs, ack on success, nack with backoff on
 * failure) until SIGINT/SIGTERM, then lets the handlers under way finish and prints its totals.
 * Start several for competing consumers: each event goes to one of them at a time.
 *
 *   TRIGGERS_BASE_URL=http://localhost:8080 TRIGGERS_API_KEY=zt_… GROUP=billing node group-worker.js
 *
 * GROUP is created (`start: earliest`) if it does not exist. HANDLE_MS is how long each "handler"
 * takes (default 0). FAIL_EVERY=n makes the handler fail the first delivery of every n-th event
 * (by its payload's `i`), to show the nack and the redelivery. Prints
 * `group-worker: 200 received, 200 acked, 20 nacked; order.paid=200`.
 */
run('group-worker', async () => {
  const client = createTriggersClient(clientEnv());
  const group = stringEnv('GROUP');
  const concurrency = intEnv('CONCURRENCY', 10, 1, 1000);
  const handleMs = intEnv('HANDLE_MS', 0, 0, 600_000);
  const failEvery = intEnv('FAIL_EVERY', 0, 0, 1_000_000);

  const existing = await client.GET('/v1/consumer-groups/{name}', { params: { path: { name: group } } });
  if (existing.response.status === 404) {
    const created = await client.POST('/v1/consumer-groups', { body: { name: group, start: 'earliest' } });
    // Another worker may have created it at the same moment: that is fine.
    if (created.response.status !== 409) orThrow(created);
  } else {
    orThrow(existing);
  }

  const byType = new Map<string, number>();
  // The work this worker exists for; here it counts (and fails on purpose when asked).
  const handler = async (message: GroupMessage) => {
    if (handleMs > 0) await new Promise((resolve) => setTimeout(resolve, handleMs));
    const i = (message.event.payload as { i?: unknown }).i;
    if (failEvery > 0 && typeof i === 'number' && i % failEvery === 0 && message.delivery_count === 1)
      throw new Error(`event ${i} fails its first delivery`);
    byType.set(message.event.type, (byType.get(message.event.type) ?? 0) + 1);
  };

  const stop = new AbortController();
  process.once('SIGINT', () => stop.abort()).once('SIGTERM', () => stop.abort());
  process.stdout.write('group-worker: ready\n');
  const totals = await runGroupWorker(client, {
    group,
    handler,
    concurrency,
    signal: stop.signal,
    nackDelayS: () => 1,
  });
  const types = [...byType].map(([type, n]) => `${type}=${n}`).join(' ');
  process.stdout.write(
    `group-worker: ${totals.received} received, ${totals.acked} acked, ${totals.nacked} nacked; ${types}\n`,
  );
});
