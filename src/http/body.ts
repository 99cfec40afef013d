import { isUtf8 } from 'node:buffer';
import { ApiError } from '../errors.js';
import type { RequestContext } from './context.js';

/**
 * Streams a request body, counting bytes as they arrive: a body over `limit` is refused at the
 * chunk that crosses it, never buffered whole. `onBody` receives the decoded text, synchronously
 * within uWS's data callback in the common one-chunk case (no copy of the bytes is kept). Once the
 * request is answered without its body (`ctx.done`: a 401 while the body streamed), what was kept
 * is dropped and further chunks are not kept.
 */
export function readBody(
  ctx: RequestContext,
  limit: number,
  onBody: (text: string) => void,
  onError: (error: ApiError) => void,
): void {
  let chunks: Buffer[] | null = null;
  let size = 0;
  let finished = false;
  ctx.res.onData((chunk, isLast) => {
    if (finished) return;
    if (ctx.done) {
      finished = true;
      chunks = null;
      return;
    }
    try {
      size += chunk.byteLength;
      if (size > limit) {
        finished = true;
        // Not closing: with unread bytes in flight a close turns into RST and the client may
        // lose this answer. uWS keeps reading and we drop each further chunk unbuffered.
        onError(new ApiError('payload_too_large', `Request body exceeds ${limit} bytes.`));
        return;
      }
      if (!isLast) {
        // uWS: the ArrayBuffer is only valid during this callback; keep a copy.
        chunks ??= [];
        chunks.push(Buffer.from(chunk.slice(0)));
        return;
      }
      finished = true;
      let bytes = Buffer.from(chunk);
      if (chunks !== null) {
        chunks.push(bytes);
        bytes = Buffer.concat(chunks, size);
        chunks = null;
      }
      if (!isUtf8(bytes)) {
        onError(new ApiError('invalid_json', 'Request body is not valid UTF-8.'));
        return;
      }
      onBody(bytes.toString('utf8'));
    } catch (error) {
      finished = true;
      onError(error instanceof ApiError ? error : new ApiError('internal_error', 'Internal server error.'));
    }
  });
}

/** JSON.parse with the documented error; an empty body is invalid JSON too. */
export function parseJson(text: string): unknown {
  if (text.length === 0) throw new ApiError('invalid_json', 'Request body is empty; a JSON document is required.');
  try {
    return JSON.parse(text);
  } catch (error) {
    throw new ApiError('invalid_json', `Request body is not valid JSON: ${(error as Error).message}`);
  }
}
