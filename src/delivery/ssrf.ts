import dns from 'node:dns';
import net from 'node:net';

/**
 * Server-side request forgery guard. Webhook URLs are chosen by API users, so without this the
 * delivery worker would POST to our own loopback services, the private network, or the cloud
 * metadata endpoint for them. Checked at registration (after DNS resolution) and again when each
 * connection is made (a name can resolve differently later: DNS rebinding).
 *
 * IPv4 spellings (`2130706433`, `0x7f.1`, `017700000001`, `127.1`) never reach this module as
 * such: the WHATWG URL parser turns them into dotted quads. IPv6 is parsed here into its 16
 * bytes, whatever the spelling (compressed, expanded, mixed dotted quad, upper case, leading
 * zeros, a zone id), and classified on the bytes, so no string form slips past a pattern.
 */
const blockedV4 = new net.BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network", includes 0.0.0.0
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, includes the metadata address 169.254.169.254
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation (TEST-NET-1)
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation (TEST-NET-2)
  ['203.0.113.0', 24], // documentation (TEST-NET-3)
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, includes broadcast
] as const)
  blockedV4.addSubnet(network, prefix, 'ipv4');

/** The 8 16-bit groups of an IPv6 address in any valid spelling, or null. A zone id is dropped. */
export function ipv6Groups(address: string): number[] | null {
  const bare = address.replace(/%.*$/s, '');
  if (net.isIPv6(bare) === false) return null;
  const lower = bare.toLowerCase();
  const parse = (part: string): number[] => {
    if (part === '') return [];
    const groups: number[] = [];
    for (const piece of part.split(':')) {
      if (piece.includes('.')) {
        const [a, b, c, d] = piece.split('.').map(Number) as [number, number, number, number];
        groups.push((a << 8) | b, (c << 8) | d);
      } else {
        groups.push(parseInt(piece, 16));
      }
    }
    return groups;
  };
  const gap = lower.indexOf('::');
  if (gap === -1) return parse(lower);
  const head = parse(lower.slice(0, gap));
  const tail = parse(lower.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}

const v4Of = (hi: number, lo: number) => `${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`;
const isBlockedV4 = (dotted: string) => blockedV4.check(dotted, 'ipv4');

/**
 * IPv6 by its groups. Allowed only in global unicast (2000::/3) outside its special blocks, or
 * as a translation of a public IPv4 address (IPv4-mapped, SIIT, 6to4): those
 * reach exactly that IPv4 host, so they are judged as it is.
 */
function isBlockedV6(g: readonly number[]): boolean {
  const [g0, g1, g2, g3, g4, g5, g6, g7] = g as [number, number, number, number, number, number, number, number];
  const zeroTo3 = g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0;
  // ::ffff:0:0/96 (IPv4-mapped) and ::ffff:0:0:0/96 (SIIT IPv4-translated).
  if (zeroTo3 && ((g4 === 0 && g5 === 0xffff) || (g4 === 0xffff && g5 === 0))) return isBlockedV4(v4Of(g6, g7));
  // 64:ff9b::/96, the well-known NAT64 prefix, is refused whole, public IPv4 inside or not: what a
  // NAT64 gateway on our network translates it to is that network's business, not the URL's
  // (issue 23 lists the prefix itself). A DNS64-only deployment sets WEBHOOK_ALLOW_PRIVATE.
  if (g0 === 0x64 && g1 === 0xff9b) return true;
  // 2002::/16, 6to4: the IPv4 address is in groups 1-2.
  if (g0 === 0x2002) return isBlockedV4(v4Of(g1, g2));
  // Everything else outside 2000::/3 is not global: ::/96 (unspecified, loopback, IPv4-compatible),
  // the rest of ::/8, 100::/64 (discard), 64:ff9b:1::/48 (local-use NAT64), fc00::/7 (unique
  // local, includes AWS's fd00:ec2::254), fe80::/10 (link-local), fec0::/10 (site-local), ff00::/8.
  if (g0 < 0x2000 || g0 > 0x3fff) return true;
  // 2001::/23 IETF protocol assignments (Teredo 2001::/32, benchmarking, ORCHID), 2001:db8::/32
  // and 3fff::/20 documentation.
  if (g0 === 0x2001 && (g1 < 0x200 || g1 === 0xdb8)) return true;
  if (g0 === 0x3fff && g1 < 0x1000) return true;
  return false;
}

/** True for addresses a webhook must never reach (loopback, private, link-local, metadata…); true for anything not an IP address. */
export function isBlockedAddress(address: string): boolean {
  if (net.isIPv4(address)) return isBlockedV4(address);
  const groups = ipv6Groups(address);
  return groups === null ? true : isBlockedV6(groups);
}

/** The host of a URL as net.connect sees it (IPv6 literals lose their brackets). */
export function urlHost(url: URL): string {
  const host = url.hostname;
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/**
 * Resolves a host and returns why it may not be used, or null when every address it resolves
 * to is public. Used at registration, where one bad address is enough to refuse. The reason
 * never names the address a name resolves to: that would let any API user map our internal DNS.
 */
export async function refusedHostReason(host: string): Promise<string | null> {
  if (net.isIP(host) || ipv6Groups(host) !== null) return isBlockedAddress(host) ? NOT_ALLOWED : null;
  let addresses: dns.LookupAddress[];
  try {
    addresses = await dns.promises.lookup(host, { all: true, verbatim: true });
  } catch {
    return 'has a host name that does not resolve';
  }
  if (addresses.length === 0) return 'has a host name that does not resolve';
  return addresses.some((entry) => isBlockedAddress(entry.address)) ? NOT_ALLOWED : null;
}

const NOT_ALLOWED = 'is not allowed: it points to a loopback, private, link-local or reserved address';

type LookupCallback = (
  error: NodeJS.ErrnoException | null,
  address: string | dns.LookupAddress[],
  family?: number,
) => void;

/**
 * A `lookup` for net/tls.connect that drops blocked addresses, so the connection can only go to
 * a public one whatever DNS says at that moment. Answers in both shapes Node asks for (`all`
 * for happy-eyeballs, a single address otherwise).
 */
export function guardedLookup(hostname: string, options: dns.LookupOptions, callback: LookupCallback): void {
  dns.lookup(hostname, { ...options, all: true, verbatim: true }, (error, addresses) => {
    if (error) return callback(error, '');
    const allowed = (addresses as dns.LookupAddress[]).filter((entry) => !isBlockedAddress(entry.address));
    if (allowed.length === 0) {
      const refused = Object.assign(
        new Error(`refused: ${hostname} resolves only to private, loopback or reserved addresses`),
        { code: 'EWEBHOOKBLOCKED' },
      );
      return callback(refused, '');
    }
    if (options.all) return callback(null, allowed);
    callback(null, allowed[0]!.address, allowed[0]!.family);
  });
}
