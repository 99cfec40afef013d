import diagnostics_channel from 'node:diagnostics_channel';

/**
 * What API key verification reports, for whoever listens (src/metrics). Published on the
 * request path only when `hasSubscribers`; subscribers must be cheap.
 */

/** A look-up of a request's key in the cache of verified keys. */
export interface KeyCacheLookup {
  hit: boolean;
  seconds: number;
}

/** A request whose key was not cached waited this long for its verification (kid look-up, argon2id). */
export interface KeyVerified {
  seconds: number;
}

export const keyCacheLookupChannel = diagnostics_channel.channel('triggers:auth:cache-lookup');
export const keyVerifiedChannel = diagnostics_channel.channel('triggers:auth:verified');
