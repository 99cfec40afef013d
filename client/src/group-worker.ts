import type { TriggersClient } from './client.js';
import { orThrow } from './errors.js';
import { retrying } from './retry.js';
import type { components } from './schema.js';

export type GroupMessage = components['schemas']['ConsumerGroupMessage'];

export interface GroupWorkerOptions {
  /** The consumer group to work for (it must exist: `POST /v1/consumer-groups`). */
  group: string;
  /** Handles one message. Resolves: acked. Throws: nacked, back after a backoff. */
  handler(message: GroupMessage): Promise<void>;
  /** Messages handled at once (default 10); receive asks for no more than there is room for. */
  concurrency?: number;
  /** The lease asked for on receive (default: the group's `visibility_timeout_s`). */
  visibilityTimeoutS?: number;
  /** Leases are extended this often while a handler runs (default: a third of the lease, at least 1 s). */
  extendEveryMs?: number;
  /** Long-poll wait of an empty receive, 0–20 s (default 20). */
  waitS?: number;
  /** Backoff of a failed message by its delivery count: `delay_s` of its nack (default 2^count s, at most 300). */
  nackDelayS?(message: GroupMessage, error: unknown): number;
  /** Stops the worker: no new receive; handlers under way finish and are acked or nacked. */
  signal?: AbortSignal;
  /** Called for each handler failure (default: nothing; the message is nacked either way). */
  onError?(message: GroupMessage, error: unknown): void;
}

export interface GroupWorkerTotals {
  received: number;
  acked: number;
  nacked: number;
}

/**
 * The loop every consumer of a group would otherwise write: receive with a long poll while there
 * is room under `concurrency`, run the handler of each message, extend its lease while the
 * handler runs (so a slow handler does not see its message handed to another consumer), ack on
 * success and nack with a backoff on failure. On `signal` it stops receiving, lets the handlers
 * under way finish, settles them, and resolves with its totals.
 *
 * At least once: a worker that dies mid-handler loses nothing, its leases expire and the events
 * come back (`delivery_count` + 1), so handlers should be idempotent (the event id is a natural
 * key). 429 and 503 are waited out (`retrying`); other errors of receive reject the worker.
 */
export async function runGroupWorker(client: TriggersClient, options: GroupWorkerOptions): Promise<GroupWorkerTotals> {
  const concurrency = options.concurrency ?? 10;
  const waitS = options.waitS ?? 20;
  const group = options.group;
  const totals: GroupWorkerTotals = { received: 0, acked: 0, nacked: 0 };
  const running = new Set<Promise<void>>();
  let roomFreed: () => void = () => {};

  const params = { path: { name: group } };
  const visibilityTimeoutS =
    options.visibilityTimeoutS ??
    (await retrying(async () => orThrow(await client.GET('/v1/consumer-groups/{name}', { params }))))
      .visibility_timeout_s;
  const extendEveryMs = options.extendEveryMs ?? Math.max(1_000, (visibilityTimeoutS * 1_000) / 3);
  const nackDelayS = options.nackDelayS ?? ((message: GroupMessage) => Math.min(300, 2 ** message.delivery_count));

  const settle = async (message: GroupMessage, error: unknown | null): Promise<void> => {
    const ids = [message.event.id];
    if (error === null) {
      // Awaited first, then added: `totals.acked += await …` reads the total before the wait and
      // loses the counts of handlers that finish meanwhile.
      const answer = await retrying(async () =>
        orThrow(await client.POST('/v1/consumer-groups/{name}/ack', { params, body: { ids } })),
      );
      totals.acked += answer.acked;
      return;
    }
    options.onError?.(message, error);
    const delay = Math.max(0, Math.min(43_200, Math.round(nackDelayS(message, error))));
    const answer = await retrying(async () =>
      orThrow(await client.POST('/v1/consumer-groups/{name}/nack', { params, body: { ids, delay_s: delay } })),
    );
    totals.nacked += answer.nacked;
  };

  const handle = async (message: GroupMessage): Promise<void> => {
    // Keep the lease while the handler runs; a failed extension only means the lease may lapse
    // (the event may then be handed out again, which at-least-once allows).
    const extender = setInterval(() => {
      void client
        .POST('/v1/consumer-groups/{name}/extend', {
          params,
          body: { ids: [message.event.id], visibility_timeout_s: visibilityTimeoutS },
        })
        .catch(() => {});
    }, extendEveryMs);
    let failure: unknown | null = null;
    try {
      await options.handler(message);
    } catch (error) {
      failure = error ?? new Error('handler failed');
    } finally {
      clearInterval(extender);
    }
    await settle(message, failure);
  };

  const start = (message: GroupMessage) => {
    const task = handle(message).finally(() => {
      running.delete(task);
      roomFreed();
    });
    running.add(task);
  };

  try {
    while (!options.signal?.aborted) {
      const room = concurrency - running.size;
      if (room <= 0) {
        await new Promise<void>((resolve) => {
          roomFreed = resolve;
        });
        continue;
      }
      const answer = await retrying(async () =>
        orThrow(
          await client.POST('/v1/consumer-groups/{name}/receive', {
            params,
            body: { max: Math.min(1_000, room), visibility_timeout_s: visibilityTimeoutS, wait_s: waitS },
            signal: options.signal,
          }),
        ),
      );
      totals.received += answer.messages.length;
      for (const message of answer.messages) start(message);
    }
  } catch (error) {
    // Aborted by the signal mid-receive: a normal stop. Anything else is the caller's to see.
    if (!options.signal?.aborted) {
      await Promise.allSettled(running);
      throw error;
    }
  }
  await Promise.allSettled(running);
  return totals;
}
