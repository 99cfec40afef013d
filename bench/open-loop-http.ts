/**
 * The little HTTP/1.1 the open-loop generator needs: one request serialised once into a Buffer, and
 * a response parser that finds only the status code and where the response ends. It assumes at
 * most one request in flight per connection, so a read never legitimately holds the start of a
 * second response.
 */

/** The whole request (request line, Host, the given headers, Content-Length, body) as one Buffer, written as is for every request. */
export function buildRequest(method: string, target: URL, headers: Record<string, string>, body: string): Buffer {
  const bodyBytes = Buffer.from(body, 'utf8');
  let head = `${method} ${target.pathname}${target.search} HTTP/1.1\r\nHost: ${target.host}\r\n`;
  for (const [name, value] of Object.entries(headers)) {
    const lower = name.toLowerCase();
    if (lower === 'host' || lower === 'content-length' || lower === 'transfer-encoding') continue;
    if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error(`header ${name} contains a line break`);
    head += `${name}: ${value}\r\n`;
  }
  head += `Content-Length: ${bodyBytes.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), bodyBytes]);
}

const CR = 13;
const LF = 10;
/** A response head larger than this is treated as garbage rather than buffered forever. */
const MAX_HEAD_BYTES = 64 * 1024;

const enum Phase {
  Head,
  Length,
  Chunked,
  UntilClose,
}

/**
 * Feeds reads of one connection; `feed` answers 0 while the response is incomplete, its status code
 * once it has ended, or -1 for something that is not an HTTP/1.x response.
 */
export class ResponseParser {
  /** Set with a completed response when the connection must not be reused (Connection: close, HTTP/1.0, bytes past the end). */
  closeAfter = false;
  private phase = Phase.Head;
  private status = 0;
  private remaining = 0;
  /** Bytes kept across reads: a partial head, or a chunked body so far (both rare; the common response arrives in one read). */
  private kept: Buffer | null = null;

  /** `buffer` may be shared and reused after this returns: only bytes [0, length) are valid and nothing keeps a reference. */
  feed(buffer: Buffer, length: number): number {
    switch (this.phase) {
      case Phase.Head:
        return this.feedHead(buffer, length);
      case Phase.Length:
        this.remaining -= length;
        return this.remaining > 0 ? 0 : this.complete(this.remaining < 0);
      case Phase.Chunked:
        this.kept = Buffer.concat([this.kept!, buffer.subarray(0, length)]);
        return this.feedChunked();
      case Phase.UntilClose:
        return 0;
    }
  }

  /** The connection closed: a response delimited by the close ends here (its status), anything else was cut short (0). */
  finishOnClose(): number {
    if (this.phase !== Phase.UntilClose) return 0;
    this.closeAfter = true;
    return this.complete(false);
  }

  private feedHead(buffer: Buffer, length: number): number {
    let data = buffer;
    let end = length;
    if (this.kept) {
      data = Buffer.concat([this.kept, buffer.subarray(0, length)]);
      end = data.length;
      this.kept = null;
    }
    let start = 0;
    // Interim 1xx responses (e.g. 100 Continue) precede the real one in the same stream.
    for (;;) {
      const headEnd = findHeadEnd(data, start, end);
      if (headEnd < 0) {
        if (end - start > MAX_HEAD_BYTES) return -1;
        this.kept = Buffer.from(data.subarray(start, end));
        return 0;
      }
      const status = this.parseHead(data, start, headEnd);
      if (status < 0) return -1;
      const bodyStart = headEnd + 4;
      if (status >= 100 && status < 200 && status !== 101) {
        start = bodyStart;
        this.phase = Phase.Head;
        this.closeAfter = false;
        if (start === end) return 0;
        continue;
      }
      this.status = status;
      const bodyBytes = end - bodyStart;
      if (status === 204 || status === 304 || status === 101) return this.complete(bodyBytes > 0);
      if (this.phase === Phase.Chunked) {
        this.kept = Buffer.from(data.subarray(bodyStart, end));
        return this.feedChunked();
      }
      if (this.phase === Phase.UntilClose) return 0;
      this.remaining -= bodyBytes;
      if (this.remaining > 0) {
        this.phase = Phase.Length;
        return 0;
      }
      return this.complete(this.remaining < 0);
    }
  }

  /** Reads the status and the framing headers of a head spanning [start, headEnd); sets phase/remaining/closeAfter. */
  private parseHead(data: Buffer, start: number, headEnd: number): number {
    // "HTTP/1.x NNN"
    if (
      headEnd - start < 12 ||
      data[start] !== 0x48 ||
      data[start + 1] !== 0x54 ||
      data[start + 2] !== 0x54 ||
      data[start + 3] !== 0x50 ||
      data[start + 4] !== 0x2f
    )
      return -1;
    const status = digit(data[start + 9]!) * 100 + digit(data[start + 10]!) * 10 + digit(data[start + 11]!);
    if (!(status >= 100 && status <= 999)) return -1;
    let keepAlive = data[start + 7] === 0x31; // HTTP/1.1 keeps the connection unless told otherwise
    let contentLength = -1;
    let chunked = false;
    let line = indexOfCrlf(data, start, headEnd) + 2;
    while (line < headEnd) {
      let lineEnd = indexOfCrlf(data, line, headEnd);
      if (lineEnd < 0) lineEnd = headEnd;
      let colon = line;
      while (colon < lineEnd && data[colon] !== 0x3a) colon++;
      let value = colon + 1;
      while (value < lineEnd && (data[value] === 0x20 || data[value] === 0x09)) value++;
      if (nameIs(data, line, colon, 'content-length')) {
        contentLength = 0;
        for (let i = value; i < lineEnd && data[i]! >= 0x30 && data[i]! <= 0x39; i++)
          contentLength = contentLength * 10 + data[i]! - 0x30;
      } else if (nameIs(data, line, colon, 'transfer-encoding')) {
        chunked = data.toString('latin1', value, lineEnd).toLowerCase().includes('chunked');
      } else if (nameIs(data, line, colon, 'connection')) {
        const token = data.toString('latin1', value, lineEnd).toLowerCase();
        if (token.includes('close')) keepAlive = false;
        else if (token.includes('keep-alive')) keepAlive = true;
      }
      line = lineEnd + 2;
    }
    this.closeAfter = !keepAlive;
    if (chunked) this.phase = Phase.Chunked;
    else if (contentLength >= 0) {
      this.phase = Phase.Head;
      this.remaining = contentLength;
    } else this.phase = Phase.UntilClose;
    return status;
  }

  /** Walks the chunked body kept so far; complete once the last chunk and the trailers have arrived. */
  private feedChunked(): number {
    const data = this.kept!;
    let pos = 0;
    for (;;) {
      const lineEnd = indexOfCrlf(data, pos, data.length);
      if (lineEnd < 0) return 0;
      const size = parseInt(data.toString('latin1', pos, lineEnd), 16);
      if (Number.isNaN(size)) return -1;
      if (size === 0) {
        // Trailers, if any, end with an empty line.
        let trailer = lineEnd + 2;
        for (;;) {
          const trailerEnd = indexOfCrlf(data, trailer, data.length);
          if (trailerEnd < 0) return 0;
          if (trailerEnd === trailer) return this.complete(trailerEnd + 2 < data.length);
          trailer = trailerEnd + 2;
        }
      }
      const next = lineEnd + 2 + size + 2;
      if (next > data.length) return 0;
      pos = next;
    }
  }

  private complete(extraBytes: boolean): number {
    if (extraBytes) this.closeAfter = true;
    const status = this.status;
    this.phase = Phase.Head;
    this.kept = null;
    this.remaining = 0;
    this.status = 0;
    return status;
  }
}

function digit(byte: number): number {
  return byte >= 0x30 && byte <= 0x39 ? byte - 0x30 : NaN;
}

function findHeadEnd(data: Buffer, from: number, end: number): number {
  for (let i = from; i + 3 < end; i++) {
    if (data[i] === CR && data[i + 1] === LF && data[i + 2] === CR && data[i + 3] === LF) return i;
  }
  return -1;
}

function indexOfCrlf(data: Buffer, from: number, end: number): number {
  for (let i = from; i + 1 < end; i++) if (data[i] === CR && data[i + 1] === LF) return i;
  return -1;
}

/** Case-insensitive comparison of the header name in [from, to) with a lower-case ASCII name. */
function nameIs(data: Buffer, from: number, to: number, lowerName: string): boolean {
  if (to - from !== lowerName.length) return false;
  for (let i = 0; i < lowerName.length; i++) if ((data[from + i]! | 0x20) !== lowerName.charCodeAt(i)) return false;
  return true;
}
