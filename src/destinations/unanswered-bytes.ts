/**
 * What a broker may send while a publish waits for its answer: a Redis XADD reply is an entry id of
 * a few dozen bytes, a NATS PubAck about a hundred, the largest reply a connection reads (INFO at
 * its start) a few KiB. Past this the server is not one to trust with memory (a listed host's other
 * service, or a hostile broker announcing a reply of a gigabyte, which the client would buffer
 * whole): the publisher closes the connection, as RabbitMQ's frames are capped.
 */
export const MAX_UNANSWERED_BYTES = 1024 * 1024;

/** The bytes a connection received since a publish last settled, and the cap on them. */
export class UnansweredBytes {
  private bytes = 0;
  private tripped = false;

  /** `over` is called once, when the count first passes MAX_UNANSWERED_BYTES. */
  constructor(private readonly over: () => void) {}

  /** A chunk read from the connection's socket. */
  received(length: number): void {
    this.bytes += length;
    if (this.bytes > MAX_UNANSWERED_BYTES && !this.tripped) {
      this.tripped = true;
      this.over();
    }
  }

  /** A publish settled (answered or failed): what came before it was its answer. */
  settled(): void {
    this.bytes = 0;
  }
}

/** The cap as a reason text: "over 1 MiB". */
export const OVER_CAP_TEXT = `over ${MAX_UNANSWERED_BYTES / 1024 / 1024} MiB`;
