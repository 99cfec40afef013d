import { createHash } from 'node:crypto';

/**
 * The id of the delivery of one event to one endpoint: a UUIDv7 with the event id's timestamp
 * (the event's received_at, so deliveries sort by event time) and 74 bits of
 * sha256(endpoint id, event id). The same delivery always gets the same id: a send repeated after
 * a crash lands on the same primary key instead of a second row.
 */
export function deliveryId(endpointId: string, eventId: string): string {
  const hash = createHash('sha256').update(endpointId).update(eventId).digest('hex');
  return (
    eventId.slice(0, 8) +
    '-' +
    eventId.slice(9, 13) +
    '-' +
    '7' +
    hash.slice(0, 3) +
    '-' +
    ((parseInt(hash[3]!, 16) & 0x3) | 0x8).toString(16) +
    hash.slice(4, 7) +
    '-' +
    hash.slice(7, 19)
  );
}
