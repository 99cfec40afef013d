import type { Queryable, Sql } from '../db/connect.js';
import { RECEIVED_SLACK_MS } from '../delivery/event-reader.js';
import { eventJson, type EventRow } from '../event-json.js';
import { compiledFilter, rowMatches, type FilterableRow } from '../filter/filter.js';
import { isoMs, uuidv7Time } from '../ids.js';
import { timedInboxQuery } from '../inbox/channels.js';
import { readWatermark } from '../ingest/sequence.js';
import {
  changeEvents,
  expandBatches,
  insertBatch,
  insertRangeBatchFrom,
  readBatches,
  type Batch,
  type ExpandedBatch,
} from './batches.js';
import { lockGroup, typeMatcher, type Group } from './store.js';

/**
 * `receive` (API.md §4b): hands out up to `max` events to one consumer of a group, under a lease.
 *
 * First the group's batches that are due again (a lease expired, a nack's delay passed, a
 * redrive), oldest due first; a batch delivered max_deliveries times becomes dead instead. Then
 * new events above the frontier, in seq order, below the watermark read just before (the
 * inbox's rule, src/inbox/queries.ts: no event is ever skipped, however flushes commit), that
 * match the group's event_types and filter. The new ones become one leased batch row (its seq
 * range alone when every event looked at was handed out) and the frontier moves past every
 * event looked at: two writes for a page of 1 000.
 *
 * A group that takes every event (no event_types, no filter) with nothing due again, the common
 * case, has Postgres write the page's JSON, the batch row and the frontier in the same statement
 * that reads the events (receiveEveryNew): the HTTP worker then handles one string, not 1 000 rows.
 *
 * All of it runs under the group's row lock, so competing consumers of a group receive one at a
 * time and never get the same event while its lease holds.
 */

/** Payload bytes in one answer, as the inbox's page (src/inbox/queries.ts, INBOX_PAGE_MAX_BYTES). */
export const RECEIVE_MAX_BYTES = 8 * 1024 * 1024;
// A group whose filter leaves most events out looks at up to this many pages of `max` events per
// receive (each moves the frontier), so one receive's work is bounded.
const MAX_SCAN_ROUNDS = 4;
// Due batches looked at per receive.
const MAX_DUE_BATCHES = 100;
// receiveEveryNew's page comes from Postgres in values of about this size, not one: one value of
// 360 KB took 5-6 ms more to reach the HTTP worker than the same bytes in values of 18 KB
// (measured here with postgres.js over the Unix socket; docs/PERFORMANCE.md "Consumer groups").
const PAGE_PIECE_BYTES = 16 * 1024;
// A message's JSON around its payload (id, type, timestamps, lease), near enough for sizing pieces.
const MESSAGE_ENVELOPE_BYTES = 250;

export interface ReceivedMessage {
  /** The event's documented JSON, the payload spliced in as stored. */
  event: string;
  deliveryCount: number;
  leaseExpiresAt: Date;
}

export interface ReceiveRequest {
  max: number;
  visibilityTimeoutS: number | null;
  maxBytes?: number;
}

/** What one receive hands out: the messages of API.md §4b as JSON objects joined by commas. */
export interface ReceivedPage {
  count: number;
  json: string;
}

const EMPTY_PAGE: ReceivedPage = { count: 0, json: '' };

export async function receive(sql: Sql, orgId: string, name: string, request: ReceiveRequest): Promise<ReceivedPage> {
  return timedInboxQuery(
    'group_receive',
    () =>
      sql.begin('isolation level read committed', async (tx) => {
        // One round trip: statements of a transaction run in the order they are sent, so the due
        // batches and the watermark are read once the lock is held (the watermark only has to be read
        // before the events are, in a statement of its own).
        const [group, due, watermark] = await Promise.all([
          lockGroup(tx, orgId, name),
          readBatches(
            tx,
            orgId,
            tx`(select id from consumer_groups where org_id = ${orgId} and name = ${name})`,
            tx`and state <> 'dead' and visible_at <= now()`,
            MAX_DUE_BATCHES,
            tx`order by visible_at, first_seq`,
            true,
          ),
          readWatermark(tx),
        ]);
        const leaseEnd = new Date(
          group.now.getTime() + (request.visibilityTimeoutS ?? group.visibilityTimeoutS) * 1000,
        );
        const budget = { events: request.max, bytes: request.maxBytes ?? RECEIVE_MAX_BYTES };
        if (due.length === 0 && group.eventTypes.length === 0 && group.filter === null) {
          return receiveEveryNew(tx, orgId, group, watermark, leaseEnd, budget);
        }
        const messages = due.length === 0 ? [] : await receiveDue(tx, orgId, group, due, leaseEnd, budget);
        if (budget.events > 0 && budget.bytes > 0)
          messages.push(...(await receiveNew(tx, orgId, group, watermark, leaseEnd, budget)));
        return messages.length === 0 ? EMPTY_PAGE : { count: messages.length, json: messagesJson(messages) };
      }) as Promise<ReceivedPage>,
  );
}

function messagesJson(messages: ReceivedMessage[]): string {
  let json = '';
  for (let i = 0; i < messages.length; i++) {
    const message = messages[i]!;
    json +=
      (i === 0 ? '' : ',') +
      '{"event":' +
      message.event +
      ',"delivery_count":' +
      message.deliveryCount +
      ',"lease_expires_at":"' +
      isoMs(message.leaseExpiresAt.getTime()) +
      '"}';
  }
  return json;
}

interface Budget {
  events: number;
  bytes: number;
}

async function receiveDue(
  tx: Queryable,
  orgId: string,
  group: Group,
  batches: Batch[],
  leaseEnd: Date,
  budget: Budget,
): Promise<ReceivedMessage[]> {
  const dying = batches.filter((batch) => batch.deliveryCount >= group.maxDeliveries);
  if (dying.length > 0) {
    await tx`update consumer_group_batches set state = 'dead'
             where org_id = ${orgId} and group_id = ${group.id} and first_seq = any(${dying.map((batch) => batch.firstSeq)}::bigint[])`;
  }
  const live = await expandBatches(
    tx,
    orgId,
    batches
      .filter((batch) => batch.deliveryCount < group.maxDeliveries)
      .sort((a, b) => (BigInt(a.firstSeq) < BigInt(b.firstSeq) ? -1 : 1)),
  );
  const wanted: string[] = [];
  for (const batch of live) {
    for (const id of batch.ids) {
      if (wanted.length === budget.events) break;
      wanted.push(id);
    }
  }
  if (wanted.length === 0) return [];
  const found = await readEventsInOrder(tx, orgId, wanted, budget.bytes);
  // Handed out: the wanted events found within the byte budget, up to the first that is not.
  const taken = new Set<string>();
  for (const id of wanted) {
    const row = found.get(id);
    if (row === undefined) continue;
    if (row.payload === null) break;
    taken.add(id);
  }
  // Wanted and not found: the event's partition was dropped (retention); the batch forgets it.
  const wantedSet = new Set(wanted);
  const gone = (batch: ExpandedBatch, i: number) => wantedSet.has(batch.ids[i]!) && !found.has(batch.ids[i]!);
  await changeEvents(
    tx,
    orgId,
    group.id,
    live,
    (batch, i) => taken.has(batch.ids[i]!),
    (batch) => ({ state: 'leased', deliveryCount: batch.deliveryCount + 1, visibleAt: leaseEnd }),
    gone,
  );
  const messages: ReceivedMessage[] = [];
  for (const batch of live) {
    for (const id of batch.ids) {
      if (!taken.has(id)) continue;
      const row = found.get(id)!;
      messages.push({ event: eventJson(row, false), deliveryCount: batch.deliveryCount + 1, leaseExpiresAt: leaseEnd });
      // Taken rows all carry their payload: the loop above stopped at the first without one.
      budget.bytes -= row.payload!.length;
    }
  }
  budget.events -= messages.length;
  return messages;
}

/** Events by id, with their payloads while the bytes before them are within `maxBytes` (always the first). */
async function readEventsInOrder(
  tx: Queryable,
  orgId: string,
  ids: string[],
  maxBytes: number,
): Promise<Map<string, EventRow>> {
  const rows = await tx<EventRow[]>`
    select id::text as id, type, case when upto - bytes < ${maxBytes} then payload::text end as payload, dedup_id, occurred_at, received_at, schema_version, ordering_key from (
      select id, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key, octet_length(payload::text) as bytes,
        sum(octet_length(payload::text)) over (order by array_position(${ids}::uuid[], id) rows unbounded preceding) as upto
      from events
      where org_id = ${orgId} and id = any(${ids}::uuid[]) and received_at = any(${ids.map((id) => isoMs(uuidv7Time(id)))}::timestamptz[])
    ) sized`;
  return new Map(rows.map((row) => [row.id, row]));
}

async function receiveNew(
  tx: Queryable,
  orgId: string,
  group: Group,
  watermark: string,
  leaseEnd: Date,
  budget: Budget,
): Promise<ReceivedMessage[]> {
  const matchType = typeMatcher(group);
  const filter = compiledFilter(group.filter);
  let frontier = group.frontier;
  let frontierAt = group.frontierAt;
  const seqs: string[] = [];
  const ids: string[] = [];
  const messages: ReceivedMessage[] = [];
  // Every event looked at was handed out: the batch is the org's events in its seq range.
  let everyEvent = true;
  scan: for (let round = 0; round < MAX_SCAN_ROUNDS && budget.events > 0; round++) {
    const limit = budget.events;
    const floor = new Date(frontierAt === null ? 0 : frontierAt.getTime() - RECEIVED_SLACK_MS);
    const rows = await readNewEvents(tx, orgId, frontier, floor, watermark, limit, budget.bytes);
    for (const row of rows) {
      frontier = row.seq;
      frontierAt = row.received_at;
      if (
        !matchType(row.type) ||
        (filter !== null && !rowMatches(filter, row as FilterableRow, row.received_at.getTime()))
      ) {
        everyEvent = false;
        continue;
      }
      seqs.push(row.seq);
      ids.push(row.id);
      messages.push({ event: eventJson(row, false), deliveryCount: 1, leaseExpiresAt: leaseEnd });
      budget.bytes -= (row.payload as string).length;
      if (--budget.events === 0) break scan;
    }
    if (rows.length < limit || budget.bytes <= 0) break;
  }
  const writes: Promise<unknown>[] = [];
  if (seqs.length > 0)
    writes.push(
      insertBatch(
        tx,
        orgId,
        group.id,
        { seqs, ids, state: 'leased', deliveryCount: 1, visibleAt: leaseEnd },
        everyEvent,
      ),
    );
  if (frontier !== group.frontier) {
    writes.push(tx`update consumer_groups set frontier = ${frontier}::bigint, frontier_at = ${frontierAt}
                   where org_id = ${orgId} and id = ${group.id} and name = ${group.name}`);
  }
  await Promise.all(writes);
  return messages;
}

/**
 * receiveNew for a group that takes every event: each event read is handed out (within the byte
 * budget), so the batch is always the seq range alone. One statement reads the page, writes its
 * batch and moves the frontier, and returns the messages' JSON (the same text eventJson and
 * messagesJson write; test/groups.test.ts compares them): the HTTP worker handles one string, not
 * 1 000 rows, and neither the batch's 1 000 ids nor a second round trip go between the two.
 */
async function receiveEveryNew(
  tx: Queryable,
  orgId: string,
  group: Group,
  watermark: string,
  leaseEnd: Date,
  budget: Budget,
): Promise<ReceivedPage> {
  const floor = new Date(group.frontierAt === null ? 0 : group.frontierAt.getTime() - RECEIVED_SLACK_MS);
  // The count first (chunk -1), then the page's JSON in pieces of ~PAGE_PIECE_BYTES, in order.
  // The WITH's writes run once whatever the final select reads, and see what it sees: the page.
  const rows = await tx`
    with page as materialized (
      select *, sum(octet_length(payload) + ${MESSAGE_ENVELOPE_BYTES}) over (order by seq) / ${PAGE_PIECE_BYTES} as chunk
      from (${newEvents(tx, orgId, group.frontier, floor, watermark, budget.events, budget.bytes)}) events
    ),
    batch as (${insertRangeBatchFrom(tx, orgId, group.id, 'page', { state: 'leased', deliveryCount: 1, visibleAt: leaseEnd })}),
    moved as (
      update consumer_groups set frontier = last.seq, frontier_at = last.received_at
      from (select seq, received_at from page order by seq desc limit 1) last
      where org_id = ${orgId} and id = ${group.id} and name = ${group.name}
    )
    select -1::bigint as chunk, count(*)::int as count, null::text as json
    from page
    union all
    select chunk, null,
           string_agg(
             '{"event":{"id":"' || id::text || '","type":' || to_json(type)::text || ',"payload":' || payload ||
             ',"dedup_id":' || coalesce(to_json(dedup_id)::text, 'null') ||
             ',"occurred_at":' || coalesce('"' || to_char(occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"', 'null') ||
             ',"received_at":"' || to_char(received_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') || '"' ||
             coalesce(',"schema_version":' || schema_version, '') || coalesce(',"ordering_key":' || to_json(ordering_key)::text, '') ||
             '},"delivery_count":1,"lease_expires_at":"' || ${isoMs(leaseEnd.getTime())}::text || '"}',
             ',' order by seq)
    from page group by chunk
    order by chunk`;
  const count = rows[0]!.count as number;
  if (count === 0) return EMPTY_PAGE;
  const json = rows
    .slice(1)
    .map((row) => row.json as string)
    .join(',');
  return { count, json };
}

/**
 * The org's events after `frontier` and below `watermark` in seq order, acknowledged in the inbox
 * or not (two range scans, one per partial index, as src/delivery/event-reader.ts reads), while
 * the payloads before them add up to less than `maxBytes` (so always the first).
 */
function readNewEvents(
  tx: Queryable,
  orgId: string,
  frontier: string,
  floor: Date,
  watermark: string,
  limit: number,
  maxBytes: number,
) {
  return tx<(EventRow & { seq: string })[]>`
    select id::text as id, seq::text as seq, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key from (${newEvents(tx, orgId, frontier, floor, watermark, limit, maxBytes)}) page
    order by page.seq`;
}

/** readNewEvents as a fragment: columns id, seq (bigint), type, payload (text), dedup_id, occurred_at, received_at, schema_version, ordering_key. */
function newEvents(
  tx: Queryable,
  orgId: string,
  frontier: string,
  floor: Date,
  watermark: string,
  limit: number,
  maxBytes: number,
) {
  return tx`
    select id, seq, type, payload, dedup_id, occurred_at, received_at, schema_version, ordering_key from (
      select limited.*, octet_length(payload) as bytes, sum(octet_length(payload)) over (order by limited.seq rows unbounded preceding) as upto from (
        select * from (
          (select id, seq, type, payload::text as payload, dedup_id, occurred_at, received_at, schema_version, ordering_key
           from events
           where org_id = ${orgId} and acked_at is null and seq > ${frontier}::bigint and seq < ${watermark}::bigint and received_at >= ${floor}
           order by seq
           limit ${limit})
          union all
          (select id, seq, type, payload::text as payload, dedup_id, occurred_at, received_at, schema_version, ordering_key
           from events
           where org_id = ${orgId} and acked_at is not null and seq > ${frontier}::bigint and seq < ${watermark}::bigint and received_at >= ${floor}
           order by seq
           limit ${limit})
        ) both_kinds
        order by seq
        limit ${limit}
      ) limited
    ) sized
    where upto - bytes < ${maxBytes}`;
}
