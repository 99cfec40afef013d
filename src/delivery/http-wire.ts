import type { SendTarget, WebhookSender } from './sender.js';
import type { OutgoingMessage, SendOutcome, Wire, Wires } from './transport.js';

/** Webhook endpoints' wires: the process's one WebhookSender (keep-alive pools per origin) and each endpoint's parsed URL. */
export function httpWires(sender: WebhookSender): Wires {
  return { open: (target) => new HttpWire(sender, sender.target(target.url)) };
}

class HttpWire implements Wire {
  constructor(
    private readonly sender: WebhookSender,
    private readonly target: SendTarget,
  ) {}

  send(message: OutgoingMessage, onAbortable: (abort: () => void) => void): Promise<SendOutcome> {
    return this.sender.send(this.target, message.headers, message.body, onAbortable);
  }

  // The sender's connection pools are per origin and shared by every endpoint: nothing to release.
  retire(): void {}
}
