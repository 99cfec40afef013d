import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createContext, endRequest, type RequestContext } from '../src/http/context.js';
import { send } from '../src/http/respond.js';
import { RequestTracker } from '../src/http/tracker.js';
import type { HttpRequest, HttpResponse } from '../src/http/uws.js';

/**
 * The request count a drain waits on (src/http/tracker.ts): begun once per request, ended once by
 * endRequest, whichever comes first of its answer and the client going away before a handler.
 */

function fakeRequest(): { ctx: RequestContext; abort(): void; written: () => number } {
  let onAborted = () => {};
  let ends = 0;
  const res = {
    onAborted(handler: () => void) {
      onAborted = handler;
    },
    cork(write: () => void) {
      write();
    },
    writeStatus() {},
    writeHeader() {},
    end() {
      ends++;
    },
  } as unknown as HttpResponse;
  const req = { getHeader: () => '', getParameter: () => '', getQuery: () => '' } as unknown as HttpRequest;
  return { ctx: createContext(res, req, 'POST /test', 0), abort: () => onAborted(), written: () => ends };
}

test('an answer ends the count once, however many times it is sent', async () => {
  const tracker = new RequestTracker();
  const { ctx, written } = fakeRequest();
  tracker.begin(ctx);
  assert.equal(tracker.inFlight, 1);
  send(ctx, 200, '{}');
  send(ctx, 500, null);
  endRequest(ctx);
  assert.equal(tracker.inFlight, 0);
  assert.equal(written(), 1);
  await tracker.idle();
});

test('a client gone before a handler has the request (mid-body) ends the count at once', () => {
  const tracker = new RequestTracker();
  const { ctx, abort } = fakeRequest();
  tracker.begin(ctx);
  abort();
  assert.equal(tracker.inFlight, 0);
  send(ctx, 401, null); // a late answer (a key refused after the abort) changes nothing
  assert.equal(tracker.inFlight, 0);
});

test("a client gone while the handler runs: the count ends with the handler's answer, not before", async () => {
  const tracker = new RequestTracker();
  const { ctx, abort, written } = fakeRequest();
  tracker.begin(ctx);
  ctx.handling = true;
  abort();
  assert.equal(tracker.inFlight, 1, 'a drain still waits for the handler (a flush in progress, say)');
  let idle = false;
  const drained = tracker.idle().then(() => {
    idle = true;
  });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(idle, false);
  send(ctx, 202, '{}');
  await drained;
  assert.equal(tracker.inFlight, 0);
  assert.equal(written(), 0, 'nothing is written to a socket that is gone');
});

test('many requests, each ended by one path or the other, bring the count back to zero', async () => {
  const tracker = new RequestTracker();
  for (let i = 0; i < 100; i++) {
    const { ctx, abort } = fakeRequest();
    tracker.begin(ctx);
    if (i % 3 === 0) abort();
    if (i % 3 === 1) ctx.handling = true;
    if (i % 2 === 0) abort();
    send(ctx, 200, null);
  }
  assert.equal(tracker.inFlight, 0);
  await tracker.idle();
});
