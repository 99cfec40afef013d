/**
 * Keeps a destination's secrets out of the texts a publisher produces. Errors end up in the attempt
 * log, which the tenant reads, and in operators' logs; a broker or client library may quote a URL
 * or a credential back in an error. Every error text a publisher returns passes through here.
 */

// scheme://userinfo@ (userinfo up to the first '/', '@' or whitespace): the userinfo goes.
const URL_USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)[^\s/@]*@/gi;

/** The URL without its `user:pass@`, for a message or a log line. */
export function withoutUserinfo(text: string): string {
  return text.replace(URL_USERINFO, '$1');
}

export type Scrub = (text: string) => string;

/**
 * A scrubber for one destination: strips the userinfo of any URL and replaces every listed secret
 * (raw, and URL-decoded) by `***`, longest first so a secret containing another goes whole.
 */
export function secretScrubber(secrets: readonly (string | undefined)[]): Scrub {
  const variants = new Set<string>();
  for (const secret of secrets) {
    if (!secret) continue;
    variants.add(secret);
    try {
      variants.add(decodeURIComponent(secret));
    } catch {
      // not %-encoded text: the raw form is enough
    }
    variants.add(encodeURIComponent(secret));
  }
  const ordered = [...variants].filter((s) => s.length > 0).sort((a, b) => b.length - a.length);
  return (text) => {
    let clean = withoutUserinfo(text);
    for (const secret of ordered) {
      if (clean.includes(secret)) clean = clean.split(secret).join('***');
    }
    return clean;
  };
}

/** The password of a URL (decoded as the client would), or undefined. */
export function urlPassword(url: string): string | undefined {
  try {
    const password = new URL(url).password;
    return password === '' ? undefined : password;
  } catch {
    return undefined;
  }
}

/** A short text for any thrown value: its message, or what it is. */
export function errorText(error: unknown): string {
  if (error instanceof Error) return error.message || error.name;
  return String(error);
}
