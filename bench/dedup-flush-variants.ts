/**
 * The encodings of the dedup statement that src/ingest/dedup-flush.ts measured and did not take
 * (bench/dedup-flush.ts, DEDUP_BENCH_METHODS=before,now,arrays,recordset). Same statement, other
 * ways to send the rows: every field as a parameter array, or the whole batch as one JSON record set.
 */
import type { Sql } from '../src/db/connect.js';
import type { FlushRow } from '../src/ingest/dedup-flush.js';

/** Seven arrays; the payloads as text[] (the client escapes each one's quotes and backslashes). */
export async function viaArrays(sql: Sql, rows: readonly FlushRow[], dedupWindowHours: number): Promise<void> {
  await sql`
    with batch as (
      select * from unnest(${rows.map((r) => r.orgId)}::uuid[], ${rows.map((r) => r.id)}::uuid[], ${rows.map((r) => r.event.type)}::text[], ${rows.map((r) => r.event.payloadJson)}::text[],
                           ${rows.map((r) => r.event.dedupId)}::text[], ${rows.map((r) => r.event.occurredAt)}::timestamptz[], ${rows.map((r) => r.receivedAt)}::timestamptz[])
        as b(org_id, id, type, payload, dedup_id, occurred_at, received_at)
    ), claims as (
      insert into event_dedup (org_id, dedup_id, event_id, received_at)
      select org_id, dedup_id, id, received_at from batch where dedup_id is not null order by org_id, dedup_id
      on conflict (org_id, dedup_id) do update
        set event_id = excluded.event_id, received_at = excluded.received_at
        where event_dedup.received_at < now() - make_interval(hours => ${dedupWindowHours})
      returning event_id
    ), stored as (
      insert into events (org_id, id, type, payload, dedup_id, occurred_at, received_at)
      select org_id, id, type, payload::json, dedup_id, occurred_at, received_at from batch
      where dedup_id is null or id in (select event_id from claims)
    )
    select event_id from claims`;
}

/** One JSON array of records through json_to_recordset; payloads spliced as serialised. */
export async function viaRecordset(sql: Sql, rows: readonly FlushRow[], dedupWindowHours: number): Promise<void> {
  let json = '[';
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    const event = row.event;
    json +=
      (i === 0 ? '{"o":"' : ',{"o":"') +
      row.orgId +
      '","i":"' +
      row.id +
      '","t":"' +
      event.type +
      '","p":' +
      event.payloadJson +
      ',"d":' +
      (event.dedupId === null ? 'null' : JSON.stringify(event.dedupId)) +
      ',"c":' +
      (event.occurredAt === null ? 'null' : '"' + event.occurredAt + '"') +
      ',"r":"' +
      row.receivedAt +
      '"}';
  }
  json += ']';
  await sql`
    with batch as (
      select * from json_to_recordset(${json}::text::json) as b(o uuid, i uuid, t text, p json, d text, c timestamptz, r timestamptz)
    ), claims as (
      insert into event_dedup (org_id, dedup_id, event_id, received_at)
      select o, d, i, r from batch where d is not null order by o, d
      on conflict (org_id, dedup_id) do update
        set event_id = excluded.event_id, received_at = excluded.received_at
        where event_dedup.received_at < now() - make_interval(hours => ${dedupWindowHours})
      returning event_id
    ), stored as (
      insert into events (org_id, id, type, payload, dedup_id, occurred_at, received_at)
      select o, i, t, p, d, c, r from batch where d is null or i in (select event_id from claims)
    )
    select event_id from claims`;
}
