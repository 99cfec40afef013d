import type { Sql } from '../db/connect.js';
import { ApiError, notFound } from '../errors.js';
import type { RouteSpec } from '../http/router.js';
import { timedInboxQuery } from '../inbox/channels.js';
import { isoMs } from '../ids.js';
import {
  encodeDeadCursor,
  GROUP_NAME_RE,
  parseCreateGroup,
  parseDeadCursor,
  parseExtend,
  parseGroupAck,
  parseNack,
  parsePatchGroup,
  parseReceive,
  parseRedrive,
  parseSeek,
} from './params.js';
import { receive, type ReceivedPage, type ReceiveRequest } from './receive.js';
import {
  ACK_GROUP_DOC,
  CREATE_GROUP_DOC,
  DEAD_DOC,
  DELETE_GROUP_DOC,
  EXTEND_DOC,
  GET_GROUP_DOC,
  LIST_GROUPS_DOC,
  NACK_DOC,
  PATCH_GROUP_DOC,
  RECEIVE_DOC,
  REDRIVE_DOC,
  SEEK_DOC,
} from './schemas.js';
import { ackGroup, extendGroup, listDead, nackGroup, redriveGroup, seekGroup } from './settle.js';
import {
  createGroup,
  deleteGroup,
  getGroup,
  groupCounts,
  groupJson,
  listGroups,
  patchGroup,
  type Group,
} from './store.js';
import type { GroupWaiters } from './waiters.js';

const SMALL_BODY = 16 * 1024;
const IDS_BODY = 128 * 1024; // 1000 ids of 36 chars with quotes and commas is ~40 KiB
// A new waiter reads again after this long: a flush that committed in another process before it
// learnt of the waiter was not forwarded (src/groups/wake.ts). Measured IPC round trips are well
// under a millisecond; this is generous.
const FIRST_RECHECK_MS = 25;
// And then this often, for what no wake-up covers (commits on other nodes; a lost message).
const SAFETY_RECHECK_MS = 2_000;
// Woken, and nothing to receive: the event may be above the watermark for a moment (another
// flush in flight, src/ingest/sequence.ts). Read again after these pauses.
const SETTLE_PAUSES_MS = [2, 5, 10, 20];

export interface GroupRouteDeps {
  waiters: GroupWaiters;
  /** The process is draining: waiting receives answer with what they have. */
  draining(): boolean;
}

/** Consumer groups (API.md §4b). Every query names the caller's org: another org's group is not found. */
export function groupRoutes(sql: Sql, deps: GroupRouteDeps): RouteSpec[] {
  const base = '/v1/consumer-groups';
  const show = async (orgId: string, group: Group) => groupJson(group, await groupCounts(sql, orgId, group));
  const nameOf = (params: string[]): string => {
    const name = params[0]!;
    if (!GROUP_NAME_RE.test(name)) throw notFound('Consumer group');
    return name;
  };

  return [
    {
      method: 'post',
      path: base,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: SMALL_BODY,
      doc: CREATE_GROUP_DOC,
      async handle(ctx, body) {
        const group = await createGroup(sql, ctx.principal!.orgId, parseCreateGroup(body));
        return { status: 201, body: await show(ctx.principal!.orgId, group) };
      },
    },
    {
      method: 'get',
      path: base,
      auth: 'key',
      scope: 'events:read',
      doc: LIST_GROUPS_DOC,
      async handle(ctx) {
        const orgId = ctx.principal!.orgId;
        const shown = await Promise.all((await listGroups(sql, orgId)).map((group) => show(orgId, group)));
        return { status: 200, body: '{"groups":[' + shown.join(',') + ']}' };
      },
    },
    {
      method: 'get',
      path: `${base}/:name`,
      auth: 'key',
      scope: 'events:read',
      doc: GET_GROUP_DOC,
      async handle(ctx) {
        const orgId = ctx.principal!.orgId;
        return { status: 200, body: await show(orgId, await getGroup(sql, orgId, nameOf(ctx.params))) };
      },
    },
    {
      method: 'patch',
      path: `${base}/:name`,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: SMALL_BODY,
      doc: PATCH_GROUP_DOC,
      async handle(ctx, body) {
        const orgId = ctx.principal!.orgId;
        const name = nameOf(ctx.params);
        return { status: 200, body: await show(orgId, await patchGroup(sql, orgId, name, parsePatchGroup(body))) };
      },
    },
    {
      method: 'del',
      path: `${base}/:name`,
      auth: 'key',
      scope: 'events:read',
      doc: DELETE_GROUP_DOC,
      async handle(ctx) {
        await deleteGroup(sql, ctx.principal!.orgId, nameOf(ctx.params));
        return { status: 204, body: null };
      },
    },
    {
      method: 'post',
      path: `${base}/:name/receive`,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: SMALL_BODY,
      bodyOptional: true,
      doc: RECEIVE_DOC,
      async handle(ctx, body) {
        const orgId = ctx.principal!.orgId;
        const name = nameOf(ctx.params);
        const params = parseReceive(body);
        const request: ReceiveRequest = { max: params.max, visibilityTimeoutS: params.visibilityTimeoutS };
        if (params.waitS === 0) return { status: 200, body: pageJson(await receive(sql, orgId, name, request)) };
        // Registered before the first read: a commit between that read and the wait still wakes it.
        const waiter = deps.waiters.register(orgId);
        if (waiter === null) {
          throw new ApiError(
            'rate_limited',
            'Too many receives of this org are waiting on this server process; retry shortly, or with a smaller wait_s.',
            undefined,
            { 'Retry-After': '1' },
          );
        }
        try {
          const deadline = performance.now() + params.waitS * 1000;
          let page = await receive(sql, orgId, name, request);
          let recheckMs = FIRST_RECHECK_MS;
          while (page.count === 0 && !ctx.aborted && !deps.draining()) {
            const left = deadline - performance.now();
            if (left <= 0) break;
            const woken = await waiter.next(Math.min(left, recheckMs));
            recheckMs = SAFETY_RECHECK_MS;
            if (ctx.aborted || deps.draining()) break;
            page = await receive(sql, orgId, name, request);
            for (let i = 0; woken && page.count === 0 && i < SETTLE_PAUSES_MS.length; i++) {
              await new Promise((resolve) => setTimeout(resolve, SETTLE_PAUSES_MS[i]));
              page = await receive(sql, orgId, name, request);
            }
          }
          return { status: 200, body: pageJson(page) };
        } finally {
          waiter.release();
        }
      },
    },
    {
      method: 'post',
      path: `${base}/:name/ack`,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: IDS_BODY,
      doc: ACK_GROUP_DOC,
      async handle(ctx, body) {
        const ids = parseGroupAck(body);
        const result = await timedInboxQuery('group_ack', () =>
          ackGroup(sql, ctx.principal!.orgId, nameOf(ctx.params), ids),
        );
        return { status: 200, body: JSON.stringify({ acked: result.count, not_found: result.notFound }) };
      },
    },
    {
      method: 'post',
      path: `${base}/:name/nack`,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: IDS_BODY,
      doc: NACK_DOC,
      async handle(ctx, body) {
        const { ids, delayS } = parseNack(body);
        const result = await timedInboxQuery('group_change', () =>
          nackGroup(sql, ctx.principal!.orgId, nameOf(ctx.params), ids, delayS),
        );
        return { status: 200, body: JSON.stringify({ nacked: result.count, not_found: result.notFound }) };
      },
    },
    {
      method: 'post',
      path: `${base}/:name/extend`,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: IDS_BODY,
      doc: EXTEND_DOC,
      async handle(ctx, body) {
        const { ids, visibilityTimeoutS } = parseExtend(body);
        const result = await timedInboxQuery('group_change', () =>
          extendGroup(sql, ctx.principal!.orgId, nameOf(ctx.params), ids, visibilityTimeoutS),
        );
        return { status: 200, body: JSON.stringify({ extended: result.count, not_found: result.notFound }) };
      },
    },
    {
      method: 'get',
      path: `${base}/:name/dead`,
      auth: 'key',
      scope: 'events:read',
      doc: DEAD_DOC,
      async handle(ctx) {
        const name = nameOf(ctx.params);
        const page = await listDead(sql, ctx.principal!.orgId, name, parseDeadCursor(ctx.query));
        let body = '{"dead":[';
        page.dead.forEach((entry, i) => {
          body += (i === 0 ? '' : ',') + '{"event":' + entry.event + ',"delivery_count":' + entry.deliveryCount + '}';
        });
        body +=
          '],"next_cursor":' + (page.nextSeq === null ? 'null' : '"' + encodeDeadCursor(page.nextSeq) + '"') + '}';
        return { status: 200, body };
      },
    },
    {
      method: 'post',
      path: `${base}/:name/redrive`,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: IDS_BODY,
      bodyOptional: true,
      doc: REDRIVE_DOC,
      async handle(ctx, body) {
        const redrive = parseRedrive(body);
        const redriven = await timedInboxQuery('group_change', () =>
          redriveGroup(sql, ctx.principal!.orgId, nameOf(ctx.params), redrive),
        );
        return { status: 200, body: JSON.stringify({ redriven }) };
      },
    },
    {
      method: 'post',
      path: `${base}/:name/seek`,
      auth: 'key',
      scope: 'events:read',
      bodyLimit: SMALL_BODY,
      doc: SEEK_DOC,
      async handle(ctx, body) {
        const orgId = ctx.principal!.orgId;
        const target = parseSeek(body);
        const group = await timedInboxQuery('group_change', () => seekGroup(sql, orgId, nameOf(ctx.params), target));
        return { status: 200, body: await show(orgId, group) };
      },
    },
  ];
}

function pageJson(page: ReceivedPage): string {
  return '{"messages":[' + page.json + ']}';
}
