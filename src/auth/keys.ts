import { randomBytes } from 'node:crypto';

/** Scopes as bits, so a cached principal answers a scope check with one AND. */
export const SCOPE_BITS = {
  'events:write': 1,
  'events:read': 2,
  'webhooks:manage': 4,
  'event_types:manage': 8,
} as const;
export type Scope = keyof typeof SCOPE_BITS;
export const ALL_SCOPES = Object.keys(SCOPE_BITS) as Scope[];

export function isScope(value: unknown): value is Scope {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(SCOPE_BITS, value);
}

export function scopeMask(scopes: readonly string[]): number {
  let mask = 0;
  for (const scope of scopes) mask |= SCOPE_BITS[scope as Scope] ?? 0;
  return mask;
}

export type KeyEnv = 'live' | 'test';

export interface ParsedKey {
  env: KeyEnv;
  kid: string;
  secret: string;
}

// zt_<env>_<kid>_<secret>; the secret is base64url, which may itself contain "_".
const KEY_RE = /^zt_(live|test)_([a-z0-9]{8,32})_([A-Za-z0-9_-]{43,128})$/;

export function parseApiKey(key: string): ParsedKey | null {
  const match = KEY_RE.exec(key);
  return match ? { env: match[1] as KeyEnv, kid: match[2]!, secret: match[3]! } : null;
}

const KID_ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';

export function generateApiKey(env: KeyEnv): { kid: string; secret: string; key: string } {
  const bytes = randomBytes(14);
  let kid = '';
  // 252 is the largest multiple of 36 below 256: rejecting larger bytes keeps the kid unbiased.
  for (const byte of bytes) if (byte < 252 && kid.length < 12) kid += KID_ALPHABET[byte % 36];
  while (kid.length < 12) kid += KID_ALPHABET[randomBytes(1)[0]! % 36];
  const secret = randomBytes(32).toString('base64url'); // 256 bits from the CSPRNG
  return { kid, secret, key: `zt_${env}_${kid}_${secret}` };
}
