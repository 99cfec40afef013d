import { TriggersApiError } from '../../../client/src/errors.js';
import {
  type CreateBody,
  type Destination,
  type DestinationType,
  type Endpoint,
  type Family,
  isDestination,
  type Ordering,
  type UpdateBody,
} from './endpoint-api.js';

/** How the API shows a stored credential (src/destinations/config.ts). */
const MASK = '****';

/**
 * The fields of an endpoint as the forms hold them (text, as typed), and the request bodies made
 * from them: all of them on create, only what changed on edit. Destination credentials are never
 * shown back by the API, so on edit their fields start empty and an empty field is not sent.
 */
export interface Draft {
  url: string;
  description: string;
  eventTypes: string;
  filter: string;
  rateLimit: string;
  ordering: Ordering;
  maxInFlight: string;
  type: DestinationType;
  /** rabbitmq and redis_stream: the broker URL, without its password (that is `password`). */
  brokerUrl: string;
  password: string;
  exchange: string;
  routingKey: string;
  servers: string;
  subject: string;
  credentials: string;
  stream: string;
  maxlen: string;
}

export const EMPTY_DRAFT: Draft = {
  url: '',
  description: '',
  eventTypes: '',
  filter: '',
  rateLimit: '',
  ordering: 'none',
  maxInFlight: '',
  type: 'redis_stream',
  brokerUrl: '',
  password: '',
  exchange: '',
  routingKey: '',
  servers: '',
  subject: '',
  credentials: '',
  stream: '',
  maxlen: '',
};

/** The edit form's starting point: the endpoint as GET shows it, config fields empty. */
export function draftOf(endpoint: Endpoint): Draft {
  return {
    ...EMPTY_DRAFT,
    url: isDestination(endpoint) ? '' : endpoint.url,
    description: endpoint.description ?? '',
    eventTypes: endpoint.event_types.join(', '),
    filter: endpoint.filter === null ? '' : JSON.stringify(endpoint.filter, null, 2),
    rateLimit: endpoint.rate_limit_per_sec === null ? '' : String(endpoint.rate_limit_per_sec),
    ordering: endpoint.ordering,
    maxInFlight: endpoint.max_in_flight === null ? '' : String(endpoint.max_in_flight),
    type: isDestination(endpoint) ? endpoint.type : EMPTY_DRAFT.type,
  };
}

/** A problem found before sending, shown like the API's 422 (nothing was sent). */
function localProblems(details: { field: string; message: string }[]): TriggersApiError {
  return new TriggersApiError(
    422,
    'validation_failed',
    'Some fields are not valid (nothing was sent).',
    null,
    details,
    null,
  );
}

function typesOf(text: string): string[] {
  return text
    .split(/[\s,]+/)
    .map((part) => part.trim())
    .filter((part) => part !== '');
}

/** An empty box is `null`; anything else goes as typed when it is not a number, so the API names the field. */
function numberOrNull(text: string): number | null | string {
  if (text.trim() === '') return null;
  const value = Number(text);
  return Number.isFinite(value) ? value : text;
}

function parseFilter(text: string, problems: { field: string; message: string }[]): unknown {
  if (text.trim() === '') return null;
  try {
    return JSON.parse(text);
  } catch (error) {
    problems.push({ field: 'filter', message: `is not JSON: ${(error as Error).message}` });
    return undefined;
  }
}

/** The password typed apart from the URL, put into it (percent-encoded) as the URL's password. */
function urlWithPassword(url: string, password: string, problems: { field: string; message: string }[]): string {
  if (password === '') return url.trim();
  try {
    const parsed = new URL(url.trim());
    parsed.password = password;
    return parsed.toString();
  } catch {
    problems.push({ field: 'config.url', message: 'is not a valid URL' });
    return url.trim();
  }
}

/** The config fields of the draft's type that are filled in (all of them on create). */
function configOf(draft: Draft, problems: { field: string; message: string }[]): Record<string, unknown> {
  const config: Record<string, unknown> = {};
  const put = (name: string, value: string) => {
    if (value.trim() !== '') config[name] = value.trim();
  };
  if (draft.type === 'nats') {
    if (draft.servers.trim() !== '') config.servers = typesOf(draft.servers);
    put('subject', draft.subject);
    if (draft.credentials.trim() !== '') config.credentials = draft.credentials;
    return config;
  }
  if (draft.brokerUrl.trim() !== '') config.url = urlWithPassword(draft.brokerUrl, draft.password, problems);
  else if (draft.password !== '')
    problems.push({
      field: 'config.url',
      message: 'give the broker URL with the new token or password (a stored token shows no user to keep)',
    });
  if (draft.type === 'rabbitmq') {
    // The exchange may be the empty string (the default exchange), so it is sent even when empty on create.
    config.exchange = draft.exchange.trim();
    put('routing_key', draft.routingKey);
  } else {
    put('stream', draft.stream);
    if (draft.maxlen.trim() !== '') config.maxlen = numberOrNull(draft.maxlen);
  }
  return config;
}

/** The POST body of a new endpoint, or the problems found before sending. */
export function createBody(family: Family, draft: Draft): CreateBody {
  const problems: { field: string; message: string }[] = [];
  const filter = parseFilter(draft.filter, problems);
  const body: CreateBody = {
    ordering: draft.ordering,
    rate_limit_per_sec: numberOrNull(draft.rateLimit) as number | null,
    max_in_flight: numberOrNull(draft.maxInFlight) as number | null,
  };
  if (family === 'webhooks') body.url = draft.url.trim();
  else {
    body.type = draft.type;
    body.config = configOf(draft, problems);
  }
  const types = typesOf(draft.eventTypes);
  if (types.length > 0) body.event_types = types;
  if (filter !== null && filter !== undefined) body.filter = filter as Record<string, unknown>;
  if (draft.description.trim() !== '') body.description = draft.description.trim();
  if (problems.length > 0) throw localProblems(problems);
  return body;
}

/**
 * The broker URL a new password goes into when only the password was typed: the stored URL as the
 * API shows it, whose password is the masked part (`amqp://app:****@mq/vh`), without it. Null when
 * the mask is the user name (a token: `redis://****@host`), which only the user can give again.
 */
export function urlForNewPassword(endpoint: Destination): string | null {
  const masked = endpoint.config.url;
  if (typeof masked !== 'string') return null;
  try {
    const url = new URL(masked);
    if (url.password !== MASK) return null;
    url.password = '';
    return url.toString();
  } catch {
    return null;
  }
}

/** The draft with the stored URL filled in when a new password was typed without a URL. */
function withStoredUrl(endpoint: Destination, draft: Draft): Draft {
  if (draft.password === '' || draft.brokerUrl.trim() !== '') return draft;
  const storedUrl = urlForNewPassword(endpoint);
  return storedUrl === null ? draft : { ...draft, brokerUrl: storedUrl };
}

/** The PATCH body: only the fields that differ from the endpoint; config only where typed in. */
export function changedBody(endpoint: Endpoint, typed: Draft): UpdateBody {
  const problems: { field: string; message: string }[] = [];
  const body: UpdateBody = {};
  const draft = isDestination(endpoint) ? withStoredUrl(endpoint, typed) : typed;
  if (!isDestination(endpoint) && draft.url.trim() !== endpoint.url) body.url = draft.url.trim();
  if (isDestination(endpoint)) {
    const config = configOf(draft, problems);
    // On edit an empty exchange means "unchanged", as for every other config field.
    if (draft.type === 'rabbitmq' && draft.exchange.trim() === '') delete config.exchange;
    if (Object.keys(config).length > 0) body.config = config;
  }
  // Untouched, the box holds the description as the API stored it, spaces and all: not a change.
  const description = draft.description.trim() === '' ? null : draft.description.trim();
  if (draft.description !== (endpoint.description ?? '') && description !== endpoint.description)
    body.description = description;
  const types = typesOf(draft.eventTypes);
  if (types.join('\n') !== endpoint.event_types.join('\n')) body.event_types = types.length > 0 ? types : null;
  const filter = parseFilter(draft.filter, problems);
  if (filter !== undefined && JSON.stringify(filter) !== JSON.stringify(endpoint.filter))
    body.filter = filter as Record<string, unknown> | null;
  const rateLimit = numberOrNull(draft.rateLimit);
  if (rateLimit !== endpoint.rate_limit_per_sec) body.rate_limit_per_sec = rateLimit as number | null;
  const maxInFlight = numberOrNull(draft.maxInFlight);
  if (maxInFlight !== endpoint.max_in_flight) body.max_in_flight = maxInFlight as number | null;
  if (draft.ordering !== endpoint.ordering) body.ordering = draft.ordering;
  if (problems.length > 0) throw localProblems(problems);
  return body;
}

/** The API's 422 details by field (`filter`, `config.url`, …), to show each next to its control. */
export function fieldProblems(error: unknown): Map<string, string> {
  const problems = new Map<string, string>();
  if (error instanceof TriggersApiError && error.status === 422)
    for (const detail of error.details)
      if (detail.field && !problems.has(detail.field)) problems.set(detail.field, detail.message ?? 'invalid');
  return problems;
}
