import net from 'node:net';

/**
 * A request written by hand on its own TCP connection, for what fetch cannot do: send the head
 * and only part of the body, then wait for the answer or go away mid-body.
 */
export class RawRequest {
  private received = Buffer.alloc(0);
  private closed = false;
  bytesSent = 0;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.received = Buffer.concat([this.received, chunk]);
    });
    socket.on('close', () => {
      this.closed = true;
    });
    socket.on('error', () => {
      this.closed = true;
    });
  }

  /** Connects and writes the request head (with Content-Length `contentLength`) and `bodyStart`. */
  static async send(
    port: number,
    head: { method: string; path: string; headers: Record<string, string>; contentLength: number },
    bodyStart: Buffer | string,
  ): Promise<RawRequest> {
    const socket = net.connect(port, '127.0.0.1');
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const request = new RawRequest(socket);
    let text = `${head.method} ${head.path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: ${head.contentLength}\r\n`;
    for (const [name, value] of Object.entries(head.headers)) text += `${name}: ${value}\r\n`;
    request.write(Buffer.from(text + '\r\n'));
    if (bodyStart.length > 0) request.write(Buffer.from(bodyStart));
    return request;
  }

  write(bytes: Buffer): void {
    this.bytesSent += bytes.length;
    this.socket.write(bytes);
  }

  /** The first complete response (head and Content-Length body), or null if none came in time. */
  async response(timeoutMs: number): Promise<{ status: number; headers: Record<string, string>; body: any } | null> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const parsed = this.parse();
      if (parsed) return parsed;
      if (this.closed) return this.parse();
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    return null;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Goes away without finishing: the server sees the connection drop. */
  abort(): void {
    this.socket.destroy();
  }

  private parse() {
    const end = this.received.indexOf('\r\n\r\n');
    if (end === -1) return null;
    const lines = this.received.subarray(0, end).toString('latin1').split('\r\n');
    const status = Number(lines[0]!.split(' ')[1]);
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const length = Number(headers['content-length'] ?? 0);
    if (this.received.length < end + 4 + length) return null;
    const text = this.received.subarray(end + 4, end + 4 + length).toString('utf8');
    let body: any = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    return { status, headers, body };
  }
}
