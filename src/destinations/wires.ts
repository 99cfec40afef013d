import { log } from '../log.js';
import {
  notSent,
  type OutgoingMessage,
  type SendOutcome,
  type Wire,
  type WireTarget,
  type Wires,
} from '../delivery/transport.js';
import { hostNotAllowed, openConfig, sealContext } from './config.js';
import { createPublisher, type Publisher } from './publisher.js';

export interface DestinationWireOptions {
  /** WEBHOOK_TIMEOUT_MS: bounds every publish as it bounds every request. */
  timeoutMs: number;
  /** DESTINATION_ALLOWED_HOSTS, checked again here: a host taken off the list stops receiving at once. */
  allowedHosts: readonly string[];
}

/**
 * Every kind of endpoint's wire (API.md §5b): webhooks through `http`, broker destinations through
 * one Publisher each (one connection per destination per delivery process, opened on the first
 * publish, reconnecting with backoff). A destination whose config cannot be opened (a SECRETS_KEY
 * missing) or whose host is no longer allowed gets a wire that fails every attempt with the reason:
 * its deliveries show why in the attempt log and follow the retry schedule, and nothing else stops.
 */
export function destinationWires(http: Wires, options: DestinationWireOptions): Wires {
  return {
    open(target: WireTarget): Wire {
      if (target.kind === 'http') return http.open(target);
      if (target.config === null) return new RefusedWire(`${target.kind} destination has no config`);
      let destination: ReturnType<typeof openConfig>;
      try {
        destination = openConfig(target.config, sealContext(target.orgId, target.id));
      } catch (error) {
        log.error({ err: error, endpoint: target.id }, "a destination's config could not be opened");
        return new RefusedWire(`the destination's config could not be opened: ${(error as Error).message}`);
      }
      const refused = hostNotAllowed(destination, options.allowedHosts);
      if (refused !== null) return new RefusedWire(`refused: ${refused} is not in DESTINATION_ALLOWED_HOSTS`);
      return new BrokerWire(createPublisher(destination, { timeoutMs: options.timeoutMs }));
    },
  };
}

/** A publisher shared by a stream's sends; closed once retired and idle. */
class BrokerWire implements Wire {
  private inFlight = 0;
  private retired = false;

  constructor(private readonly publisher: Publisher) {}

  // A publish has no abort: it settles within the publisher's timeout, and at shutdown the
  // stream ignores what settles after it stopped (the next owner publishes it again).
  send(message: OutgoingMessage): Promise<SendOutcome> {
    this.inFlight++;
    return this.publisher.publish(message).then((outcome) => {
      if (--this.inFlight === 0 && this.retired) this.close();
      return outcome;
    });
  }

  retire(): void {
    if (this.retired) return;
    this.retired = true;
    if (this.inFlight === 0) this.close();
  }

  private close(): void {
    this.publisher.close().catch((error: unknown) => log.warn({ err: error }, 'closing a broker connection failed'));
  }
}

class RefusedWire implements Wire {
  constructor(private readonly reason: string) {}
  send(): Promise<SendOutcome> {
    return Promise.resolve(notSent(this.reason));
  }
  retire(): void {}
}
