import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Test helpers for the webhook tests: a real HTTP receiver on 127.0.0.1 and polling. */

export interface ReceivedWebhook {
  headers: http.IncomingHttpHeaders;
  method: string;
  body: string;
  at: number;
}

/** What the receiver answers to its n-th request (0-based); `hang` never answers. */
export type Behaviour = (
  n: number,
  request: ReceivedWebhook,
) => { status: number; headers?: Record<string, string>; hang?: boolean; delayMs?: number };

export class Receiver {
  readonly requests: ReceivedWebhook[] = [];
  behaviour: Behaviour;

  private constructor(
    private readonly server: http.Server,
    behaviour: Behaviour,
  ) {
    this.behaviour = behaviour;
  }

  static async start(behaviour: Behaviour = () => ({ status: 200 })): Promise<Receiver> {
    let receiver: Receiver;
    const server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        const request: ReceivedWebhook = {
          headers: req.headers,
          method: req.method ?? '',
          body: Buffer.concat(chunks).toString('utf8'),
          at: Date.now(),
        };
        const n = receiver.requests.length;
        receiver.requests.push(request);
        const answer = receiver.behaviour(n, request);
        if (answer.hang) return; // keep the socket open and never answer
        const reply = () => {
          res.writeHead(answer.status, answer.headers);
          res.end('ok');
        };
        if (answer.delayMs) setTimeout(reply, answer.delayMs);
        else reply();
      });
    });
    receiver = new Receiver(server, behaviour);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    return receiver;
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }

  /** Distinct event ids (webhook-id) received so far. */
  ids(): Set<string> {
    return new Set(this.requests.map((request) => String(request.headers['webhook-id'])));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}

/** Polls `check` until it returns a truthy value or the timeout passes (then throws with `what`). */
export async function waitFor<T>(
  what: string,
  check: () => T | Promise<T>,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value) return value as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** The Standard Webhooks signature, computed independently of the server's code. */
export function expectedSignature(secret: string, id: string, timestamp: string, body: string): string {
  const key = Buffer.from(secret.slice('whsec_'.length), 'base64');
  return 'v1,' + createHmac('sha256', key).update(`${id}.${timestamp}.${body}`).digest('base64');
}
