import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import tls from 'node:tls';

/**
 * The one reading of a database URL. Both ways we talk to Postgres (the `postgres` client in
 * connect.ts and the COPY connections in wire.ts) connect from the DatabaseTarget built here,
 * through the same socket opener (transport.ts), so a URL cannot mean two things.
 *
 * libpq is the reference: `postgres://` and `postgresql://`, percent-decoding, PG* environment
 * fallbacks (the URL wins), and its sslmode table. Anything we cannot honour on both paths is
 * refused here, at start, with a DatabaseUrlError naming the option; never silently weakened.
 * docs/DATABASE.md has the table.
 */

export type SslMode = 'disable' | 'prefer' | 'require' | 'verify-ca' | 'verify-full';

export interface DatabaseTarget {
  /** Unix socket file (`<dir>/.s.PGSQL.<port>`) when the host is a directory; null for TCP. */
  path: string | null;
  /** TCP host name or address (brackets stripped), or the socket directory. */
  host: string;
  port: number;
  user: string;
  password: string;
  database: string;
  /** From the URL or PGAPPNAME; wins over the name the program passes. */
  applicationName: string | null;
  /** Bounds the TCP connect plus TLS handshake, and again the startup and authentication. */
  connectTimeoutMs: number;
  sslmode: SslMode;
  /** Options for tls.connect when TLS is tried (every mode but disable, TCP only); null otherwise. */
  tls: tls.ConnectionOptions | null;
}

/** A DATABASE_URL (or PG* variable) we refuse; the message never contains the password. */
export class DatabaseUrlError extends Error {}

const SSL_MODES: readonly string[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full'];
const DEFAULT_CONNECT_TIMEOUT_S = 10;

// Query parameters we honour; every other one is refused by name.
const KNOWN = new Set([
  'host',
  'port',
  'user',
  'password',
  'dbname',
  'sslmode',
  'ssl',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'sslsni',
  'application_name',
  'connect_timeout',
  'client_encoding',
  'target_session_attrs',
  'channel_binding',
  'gssencmode',
  'sslnegotiation',
]);

// Why some well-known libpq options are refused, for a message better than "unknown".
const REFUSED: Record<string, string> = {
  hostaddr: 'give the address as the host',
  fallback_application_name: 'the server names its own connections; set application_name to override',
  service: 'connection service files are not read',
  passfile: '~/.pgpass files are not read; put the password in the URL or PGPASSWORD',
  sslpassword: 'encrypted client keys are not supported; give an unencrypted sslkey',
  sslcrl: 'certificate revocation lists are not supported',
  sslcrldir: 'certificate revocation lists are not supported',
  sslcompression: 'TLS compression is not supported',
  ssl_min_protocol_version: "the TLS version range is Node's default (TLS 1.2 and up)",
  ssl_max_protocol_version: "the TLS version range is Node's default (TLS 1.2 and up)",
  require_auth: 'not supported',
  requirepeer: 'not supported',
  krbsrvname: 'GSSAPI/Kerberos is not supported',
  gsslib: 'GSSAPI/Kerberos is not supported',
  options: 'set run-time parameters on the role or database (ALTER ROLE … SET) instead',
  replication: 'not supported',
  load_balance_hosts: 'multiple hosts are not supported',
  keepalives: 'TCP keepalive is always on (60 s)',
  keepalives_idle: 'TCP keepalive is always on (60 s)',
  keepalives_interval: 'TCP keepalive is always on (60 s)',
  keepalives_count: 'TCP keepalive is always on (60 s)',
  tcp_user_timeout: 'not supported',
};

// Environment variables libpq reads that would change the connection and that we do not honour:
// refused rather than ignored, so the same environment cannot mean something else to psql.
const REFUSED_ENV: Record<string, string> = {
  PGHOSTADDR: 'give the address as the host (PGHOST)',
  PGSERVICE: 'connection service files are not read',
  PGSERVICEFILE: 'connection service files are not read',
  PGPASSFILE: '~/.pgpass files are not read',
  PGSSLCRL: 'certificate revocation lists are not supported',
  PGSSLCRLDIR: 'certificate revocation lists are not supported',
  PGREQUIREAUTH: 'not supported',
  PGREQUIREPEER: 'not supported',
  PGOPTIONS: 'set run-time parameters on the role or database instead',
  // The `postgres` client reads it itself, and throws on `any`; with one host there is no choice to make.
  PGTARGETSESSIONATTRS: 'with one host there is nothing to choose between',
};

/**
 * Parses `url` (a `postgres://` or `postgresql://` URL) with `env` for the PG* fallbacks. Reads the
 * certificate files it names, so call it at start. Throws DatabaseUrlError.
 */
export function parseDatabaseUrl(url: string, env: NodeJS.ProcessEnv): DatabaseTarget {
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(url)?.[1]?.toLowerCase();
  if (scheme !== 'postgres' && scheme !== 'postgresql') {
    throw new DatabaseUrlError('must start with postgres:// or postgresql://');
  }
  const rest = url.slice(scheme.length + 3);
  const authorityEnd = rest.search(/[/?#]/);
  const authority = authorityEnd === -1 ? rest : rest.slice(0, authorityEnd);
  const hostPart = authority.slice(authority.lastIndexOf('@') + 1);
  if (hostPart.includes(',')) throw new DatabaseUrlError('multiple hosts are not supported; give one host');
  if (url.includes('#'))
    throw new DatabaseUrlError('a URL fragment (#…) is not allowed; percent-encode # in a password as %23');
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new DatabaseUrlError('is not a valid URL (percent-encode special characters in the user name and password)');
  }
  const query = parseQuery(parsed.search);
  refuseEnv(env);

  const pick = (name: string, fromUrl: string, envName?: string): string | null => {
    const value = query.get(name) ?? (fromUrl === '' ? undefined : fromUrl) ?? (envName ? env[envName] : undefined);
    return value === undefined || value === '' ? null : value;
  };

  const rawHost = pick('host', decode(parsed.hostname, 'host'), 'PGHOST') ?? 'localhost';
  const host = rawHost.replace(/^\[(.*)\]$/, '$1');
  if (host.includes(',')) throw new DatabaseUrlError('multiple hosts are not supported; give one host');
  const port = portNumber(pick('port', parsed.port, 'PGPORT') ?? '5432');
  const isSocket = host.startsWith('/');
  const user = pick('user', decode(parsed.username, 'user name'), 'PGUSER') ?? os.userInfo().username;
  const password = pick('password', decode(parsed.password, 'password'), 'PGPASSWORD') ?? '';
  const database = pick('dbname', decode(parsed.pathname.slice(1), 'database name'), 'PGDATABASE') ?? user;
  const applicationName = pick('application_name', '', 'PGAPPNAME');
  const connectTimeoutMs = connectTimeout(pick('connect_timeout', '', 'PGCONNECT_TIMEOUT'));

  checkChoice(
    'client_encoding',
    pick('client_encoding', '', 'PGCLIENTENCODING'),
    ['UTF8', 'UTF-8', 'utf8', 'utf-8', 'unicode', 'UNICODE'],
    'the connections always use UTF8',
  );
  checkChoice(
    'target_session_attrs',
    pick('target_session_attrs', ''),
    ['any'],
    'with one host there is nothing to choose between',
  );
  checkChoice(
    'channel_binding',
    pick('channel_binding', '', 'PGCHANNELBINDING'),
    ['disable', 'prefer'],
    'SCRAM channel binding (SCRAM-SHA-256-PLUS) is not implemented',
  );
  checkChoice(
    'gssencmode',
    pick('gssencmode', '', 'PGGSSENCMODE'),
    ['disable', 'prefer'],
    'GSSAPI encryption is not implemented',
  );
  checkChoice(
    'sslnegotiation',
    pick('sslnegotiation', '', 'PGSSLNEGOTIATION'),
    ['postgres'],
    'direct TLS negotiation is not implemented',
  );
  checkChoice('sslsni', pick('sslsni', '', 'PGSSLSNI'), ['0', '1'], '');

  const sslmode = sslMode(query, env);
  const rootCert = pick('sslrootcert', '', 'PGSSLROOTCERT');
  const clientCert = pick('sslcert', '', 'PGSSLCERT');
  const clientKey = pick('sslkey', '', 'PGSSLKEY');
  let mode: SslMode;
  if (rootCert === 'system') {
    // libpq: any CA will sign a certificate for a name its holder controls, so `system` demands
    // verify-full and refuses weaker modes.
    if (sslmode !== null && sslmode !== 'verify-full') {
      throw new DatabaseUrlError(`sslrootcert=system requires sslmode=verify-full, got sslmode=${sslmode}`);
    }
    mode = 'verify-full';
  } else {
    // libpq's default is prefer.
    const chosen = sslmode ?? 'prefer';
    // libpq: with a root certificate, require behaves as verify-ca (and prefer verifies the chain too).
    mode = chosen === 'require' && rootCert !== null ? 'verify-ca' : chosen;
  }
  if (isSocket && (mode === 'require' || mode === 'verify-ca' || mode === 'verify-full')) {
    throw new DatabaseUrlError(
      `sslmode=${mode} cannot be honoured on a Unix socket (host ${host}): Postgres offers no TLS there; use sslmode=disable or prefer, or a TCP host`,
    );
  }
  if ((clientCert === null) !== (clientKey === null))
    throw new DatabaseUrlError('sslcert and sslkey must be given together');

  let tlsOptions: tls.ConnectionOptions | null = null;
  if (mode !== 'disable' && !isSocket) {
    const verifyChain = mode === 'verify-ca' || mode === 'verify-full' || (mode === 'prefer' && rootCert !== null);
    const verifyHost = mode === 'verify-full';
    const sni = pick('sslsni', '', 'PGSSLSNI') !== '0';
    tlsOptions = {
      rejectUnauthorized: verifyChain,
      // No sslrootcert, or `system`: the CAs Node trusts (its bundled list, NODE_EXTRA_CA_CERTS).
      ...(rootCert !== null && rootCert !== 'system' ? { ca: readFile('sslrootcert', rootCert) } : {}),
      ...(clientCert !== null ? { cert: readFile('sslcert', clientCert), key: readFile('sslkey', clientKey!) } : {}),
      ...(sni && !net.isIP(host) ? { servername: host } : {}),
      // verify-ca: the chain only. verify-full: also the host as written in the URL, against the
      // certificate's names (IP addresses against its IP SANs), whatever SNI was sent.
      checkServerIdentity: verifyHost ? (_name, cert) => tls.checkServerIdentity(host, cert) : () => undefined,
    };
  }

  return {
    path: isSocket ? `${host.replace(/\/+$/, '')}/.s.PGSQL.${port}` : null,
    host,
    port,
    user,
    password,
    database,
    applicationName,
    connectTimeoutMs,
    sslmode: isSocket ? 'disable' : mode,
    tls: tlsOptions,
  };
}

/** libpq reads query values with percent-decoding only (a `+` stays a plus). Duplicates are refused. */
function parseQuery(search: string): Map<string, string> {
  const query = new Map<string, string>();
  for (const pair of search.slice(1).split('&')) {
    if (pair === '') continue;
    const equals = pair.indexOf('=');
    if (equals === -1) throw new DatabaseUrlError(`query parameter "${decode(pair, 'parameter')}" has no value`);
    const name = decode(pair.slice(0, equals), 'parameter');
    const value = decode(pair.slice(equals + 1), `value of ${name}`);
    if (!KNOWN.has(name)) {
      const why = REFUSED[name];
      throw new DatabaseUrlError(why ? `parameter ${name} is not supported: ${why}` : `unknown parameter "${name}"`);
    }
    if (query.has(name)) throw new DatabaseUrlError(`parameter ${name} is given twice`);
    query.set(name, value);
  }
  return query;
}

function refuseEnv(env: NodeJS.ProcessEnv): void {
  for (const [name, why] of Object.entries(REFUSED_ENV)) {
    if (env[name]) throw new DatabaseUrlError(`${name} is set, which is not supported: ${why}; unset it`);
  }
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new DatabaseUrlError(`the ${what} has a malformed percent-escape`);
  }
}

function portNumber(raw: string): number {
  const port = Number(raw);
  if (!/^\d+$/.test(raw) || port < 1 || port > 65535)
    throw new DatabaseUrlError(`port must be from 1 to 65535, got "${raw}"`);
  return port;
}

function connectTimeout(raw: string | null): number {
  if (raw === null) return DEFAULT_CONNECT_TIMEOUT_S * 1000;
  const seconds = Number(raw);
  if (!/^\d+$/.test(raw) || seconds < 1 || seconds > 3600) {
    throw new DatabaseUrlError(
      `connect_timeout must be whole seconds from 1 to 3600 (0, "wait forever", is refused), got "${raw}"`,
    );
  }
  // libpq: values under 2 count as 2.
  return Math.max(2, seconds) * 1000;
}

function checkChoice(name: string, value: string | null, allowed: string[], why: string): void {
  if (value !== null && !allowed.includes(value)) {
    throw new DatabaseUrlError(
      `${name}=${value} is not supported${why ? `: ${why}` : ''} (accepted: ${allowed.join(', ')})`,
    );
  }
}

/** sslmode from the URL, then `ssl` (the `postgres` client's spelling), then PGSSLMODE; null if none. */
function sslMode(query: Map<string, string>, env: NodeJS.ProcessEnv): SslMode | null {
  const fromSsl = query.get('ssl');
  if (fromSsl !== undefined && query.has('sslmode')) throw new DatabaseUrlError('give sslmode or ssl, not both');
  if (fromSsl !== undefined && fromSsl !== 'true' && fromSsl !== 'false') {
    throw new DatabaseUrlError(
      `ssl must be true (verified TLS, as sslmode=verify-full) or false (sslmode=disable), got "${fromSsl}"; use sslmode for other modes`,
    );
  }
  const fromUrl =
    query.get('sslmode') ?? (fromSsl === 'true' ? 'verify-full' : fromSsl === 'false' ? 'disable' : undefined);
  const raw = fromUrl ?? (env.PGSSLMODE || undefined);
  if (raw === undefined) return null;
  const source = fromUrl === undefined ? 'PGSSLMODE: ' : '';
  if (!SSL_MODES.includes(raw))
    throw new DatabaseUrlError(
      `${source}sslmode must be one of ${SSL_MODES.filter((mode) => mode !== 'allow').join(', ')}, got "${raw}"`,
    );
  if (raw === 'allow') {
    // libpq's allow tries plain text, then TLS if the server refuses the session; the `postgres`
    // client cannot retry that way, so the two paths would differ. Refused.
    throw new DatabaseUrlError(
      `${source}sslmode=allow is not supported (plain first, TLS on refusal cannot be done identically on every connection); use prefer, require or stronger`,
    );
  }
  return raw as SslMode;
}

function readFile(option: string, file: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (error) {
    throw new DatabaseUrlError(
      `${option}: cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`,
    );
  }
}
