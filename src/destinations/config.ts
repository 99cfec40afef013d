import type { FieldError } from '../errors.js';
import { isPlainObject } from '../json.js';
import { endpointSecretContext, openSecret, sealSecret } from '../secrets/sealed.js';
import type { Destination, DestinationType } from './types.js';

/**
 * A broker destination's `config` (API.md §5b): checked field by field, masked for every answer,
 * sealed for storage. What is stored in `webhook_endpoints.config`:
 *
 *   { "masked": <the config as GET shows it>, "sealed": <sealSecret(JSON of the config in clear)> }
 *
 * The whole config is sealed as one value rather than field by field: credentials hide in URLs
 * (`amqp://user:pass@…`), server lists and credential files alike, and one sealed value cannot
 * leave one of them out. Only the delivery process opens it (src/destinations/wires.ts).
 */

export const DESTINATION_TYPES: readonly DestinationType[] = ['rabbitmq', 'nats', 'redis_stream'];
export const MASK = '****';
const MAX_URL = 2048;
const MAX_NAME = 255;
const MAX_SERVERS = 10;
const MAX_CREDENTIALS = 16 * 1024;
const MAX_STREAM_LEN = 1_000_000_000;

export interface StoredConfig {
  masked: Record<string, unknown>;
  sealed: string;
}

/** The sealing context of an endpoint's secrets: a sealed value copied to another row does not open. */
export const sealContext = endpointSecretContext;

export function isDestinationType(value: unknown): value is DestinationType {
  return typeof value === 'string' && (DESTINATION_TYPES as readonly string[]).includes(value);
}

/** Checks a config for `type`; problems go to `details` as `config.<field>`. */
export function checkConfig(type: DestinationType, input: unknown, details: FieldError[]): Destination | undefined {
  if (!isPlainObject(input)) {
    details.push({ field: 'config', message: 'must be a JSON object' });
    return undefined;
  }
  const before = details.length;
  const allowed = FIELDS[type];
  for (const key of Object.keys(input))
    if (!allowed.includes(key)) details.push({ field: `config.${key}`, message: 'unknown field' });
  let destination: Destination | undefined;
  if (type === 'rabbitmq') {
    const url = checkUrl(input.url, 'config.url', ['amqp:', 'amqps:'], details);
    const exchange = checkName(input.exchange, 'config.exchange', true, details);
    const routingKey =
      input.routing_key === undefined ? undefined : checkName(input.routing_key, 'config.routing_key', true, details);
    if (url !== undefined && exchange !== undefined)
      destination = {
        type,
        config: { url, exchange, ...(routingKey === undefined ? {} : { routing_key: routingKey }) },
      };
  } else if (type === 'nats') {
    const servers = checkServers(input.servers, details);
    const subject = checkSubject(input.subject, details);
    let credentials: string | undefined;
    if (input.credentials !== undefined) {
      if (
        typeof input.credentials !== 'string' ||
        input.credentials.length === 0 ||
        input.credentials.length > MAX_CREDENTIALS
      )
        details.push({
          field: 'config.credentials',
          message: `must be the text of a NATS .creds file (at most ${MAX_CREDENTIALS} characters)`,
        });
      else credentials = input.credentials;
    }
    if (servers !== undefined && subject !== undefined)
      destination = { type, config: { servers, subject, ...(credentials === undefined ? {} : { credentials }) } };
  } else {
    const url = checkUrl(input.url, 'config.url', ['redis:', 'rediss:'], details);
    const stream = checkName(input.stream, 'config.stream', false, details);
    let maxlen: number | undefined;
    if (input.maxlen !== undefined) {
      const value = input.maxlen;
      if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > MAX_STREAM_LEN)
        details.push({ field: 'config.maxlen', message: `must be an integer from 1 to ${MAX_STREAM_LEN}` });
      else maxlen = value;
    }
    if (url !== undefined && stream !== undefined)
      destination = { type, config: { url, stream, ...(maxlen === undefined ? {} : { maxlen }) } };
  }
  return details.length > before ? undefined : destination;
}

const FIELDS: Record<DestinationType, readonly string[]> = {
  rabbitmq: ['url', 'exchange', 'routing_key'],
  nats: ['servers', 'subject', 'credentials'],
  redis_stream: ['url', 'stream', 'maxlen'],
};

function checkUrl(value: unknown, field: string, schemes: string[], details: FieldError[]): string | undefined {
  const expected = schemes.map((scheme) => `${scheme}//`).join(' or ');
  if (typeof value !== 'string' || value.length === 0 || value.length > MAX_URL) {
    details.push({ field, message: `must be a ${expected} URL of at most ${MAX_URL} characters` });
    return undefined;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    details.push({ field, message: 'is not a valid URL' });
    return undefined;
  }
  if (!schemes.includes(url.protocol) || url.hostname === '') {
    details.push({ field, message: `must be a ${expected} URL with a host` });
    return undefined;
  }
  return value;
}

// AMQP short strings are at most 255 bytes; a Redis key name is bounded here to the same.
function checkName(value: unknown, field: string, emptyAllowed: boolean, details: FieldError[]): string | undefined {
  if (
    typeof value !== 'string' ||
    (!emptyAllowed && value.length === 0) ||
    Buffer.byteLength(value) > MAX_NAME ||
    hasControlCharacter(value)
  ) {
    details.push({
      field,
      message: `must be a string of ${emptyAllowed ? 0 : 1} to ${MAX_NAME} bytes without control characters`,
    });
    return undefined;
  }
  return value;
}

function hasControlCharacter(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) < 0x20) return true;
  return false;
}

function checkServers(value: unknown, details: FieldError[]): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0 || value.length > MAX_SERVERS) {
    details.push({ field: 'config.servers', message: `must be a list of 1 to ${MAX_SERVERS} nats:// or tls:// URLs` });
    return undefined;
  }
  const servers: string[] = [];
  for (const server of value) {
    const url = checkUrl(server, 'config.servers', ['nats:', 'tls:'], details);
    if (url === undefined) return undefined;
    servers.push(url);
  }
  return servers;
}

// Tokens separated by dots; no wildcards (a publish names one subject), no whitespace.
const SUBJECT_RE = /^[^\s.*>]+(\.[^\s.*>]+)*$/;

function checkSubject(value: unknown, details: FieldError[]): string | undefined {
  if (typeof value !== 'string' || Buffer.byteLength(value) > MAX_NAME || !SUBJECT_RE.test(value)) {
    details.push({
      field: 'config.subject',
      message: `must be a NATS subject of at most ${MAX_NAME} bytes: dot-separated tokens, no wildcards or spaces`,
    });
    return undefined;
  }
  return value;
}

/** A PATCH's `config`: the fields it names replace the stored ones, the others stay (credentials need not be sent again). */
export function mergeConfig(stored: Destination, patch: unknown): unknown {
  if (!isPlainObject(patch)) return patch;
  const merged: Record<string, unknown> = { ...stored.config };
  for (const [key, value] of Object.entries(patch)) {
    if (value === null) delete merged[key];
    else merged[key] = value;
  }
  return merged;
}

/** The config as every answer shows it: passwords in URLs and credential files replaced by ****. */
export function maskConfig(destination: Destination): Record<string, unknown> {
  const config = destination.config as unknown as Record<string, unknown>;
  const masked: Record<string, unknown> = { ...config };
  if (typeof config.url === 'string') masked.url = maskUrl(config.url);
  if (Array.isArray(config.servers)) masked.servers = config.servers.map((server) => maskUrl(server as string));
  if (config.credentials !== undefined) masked.credentials = MASK;
  return masked;
}

function maskUrl(raw: string): string {
  const url = new URL(raw);
  if (url.password !== '') url.password = MASK;
  // A token given as the user name alone (redis://token@host, nats://token@host) is a secret too.
  else if (url.username !== '') url.username = MASK;
  return url.toString();
}

export function storeConfig(destination: Destination, context: string): StoredConfig {
  return { masked: maskConfig(destination), sealed: sealSecret(JSON.stringify(destination), context) };
}

export function openConfig(stored: StoredConfig, context: string): Destination {
  return JSON.parse(openSecret(stored.sealed, context)) as Destination;
}

/** Every host:port a destination connects to, lower-case, with the broker's default port when none is given. */
export function destinationHosts(destination: Destination): string[] {
  switch (destination.type) {
    case 'rabbitmq':
      return [hostPort(destination.config.url, destination.config.url.startsWith('amqps:') ? 5671 : 5672)];
    case 'nats':
      return destination.config.servers.map((server) => hostPort(server, 4222));
    case 'redis_stream':
      return [hostPort(destination.config.url, 6379)];
  }
}

function hostPort(raw: string, defaultPort: number): string {
  const url = new URL(raw);
  return `${url.hostname.toLowerCase()}:${url.port === '' ? defaultPort : url.port}`;
}

/** The first host not in DESTINATION_ALLOWED_HOSTS, or null when every one is listed. */
export function hostNotAllowed(destination: Destination, allowed: readonly string[]): string | null {
  for (const host of destinationHosts(destination)) {
    const name = host.slice(0, host.lastIndexOf(':'));
    if (!allowed.includes(host) && !allowed.includes(name)) return host;
  }
  return null;
}

/** The short form of a destination's target kept in the row's `url` column: masked, for logs and lists. */
export function targetLabel(destination: Destination): string {
  const masked = maskConfig(destination);
  switch (destination.type) {
    case 'rabbitmq':
      return `${masked.url as string}#exchange=${destination.config.exchange}`;
    case 'nats':
      return `${(masked.servers as string[])[0]!}#subject=${destination.config.subject}`;
    case 'redis_stream':
      return `${masked.url as string}#stream=${destination.config.stream}`;
  }
}
