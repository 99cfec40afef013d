import dns from 'node:dns';
import net from 'node:net';

/**
 * Server-side request forgery guard. Webhook URLs are chosen by API users, so without this the
 * delivery worker would POST to our own loopback services, the private network, or the cloud
 * metadata endpoint for them. Checked at registration (after DNS resolution) and again when each
 * connection is made (a name can resolve differently later: DNS rebinding).
 */
const blocked = new net.BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network", includes 0.0.0.0
  ['10.0.0.0', 8],
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8],
  ['169.254.0.0', 16], // link-local, includes the metadata address 169.254.169.254
  ['172.16.0.0', 12],
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.168.0.0', 16],
  ['198.18.0.0', 15], // benchmarking
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, includes broadcast
] as const) blocked.addSubnet(network, prefix, 'ipv4');
for (const [network, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['fc00::', 7], // unique local, includes fd00:ec2::254 (AWS metadata over IPv6)
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
  ['64:ff9b:1::', 48], // local-use NAT64
] as const) blocked.addSubnet(network, prefix, 'ipv6');

/** True for addresses a webhook must never reach (loopback, private, link-local, metadata…). */
export function isBlockedAddress(address: string): boolean {
  const family = net.isIP(address);
  if (family === 4) return blocked.check(address, 'ipv4');
  if (family !== 6) return true;
  const lower = address.toLowerCase();
  // IPv4-mapped (::ffff:10.0.0.1) and NAT64 (64:ff9b::10.0.0.1) addresses reach IPv4 hosts.
  const embedded = /^(?:::ffff:|64:ff9b::)(\d+\.\d+\.\d+\.\d+)$/.exec(lower);
  if (embedded) return blocked.check(embedded[1]!, 'ipv4');
  const mappedHex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(lower);
  if (mappedHex) {
    const hi = parseInt(mappedHex[1]!, 16);
    const lo = parseInt(mappedHex[2]!, 16);
    return blocked.check(`${hi >> 8}.${hi & 255}.${lo >> 8}.${lo & 255}`, 'ipv4');
  }
  return blocked.check(address, 'ipv6');
}

/** The host of a URL as net.connect sees it (IPv6 literals lose their brackets). */
export function urlHost(url: URL): string {
  const host = url.hostname;
  return host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
}

/**
 * Resolves a host and returns why it may not be used, or null when every address it resolves
 * to is public. Used at registration, where one bad address is enough to refuse.
 */
export async function refusedHostReason(host: string): Promise<string | null> {
  if (net.isIP(host)) return isBlockedAddress(host) ? `${host} is a private, loopback, link-local or reserved address` : null;
  let addresses: dns.LookupAddress[];
  try {
    addresses = await dns.promises.lookup(host, { all: true, verbatim: true });
  } catch {
    return `host ${host} does not resolve`;
  }
  if (addresses.length === 0) return `host ${host} does not resolve`;
  const bad = addresses.find((entry) => isBlockedAddress(entry.address));
  return bad ? `host ${host} resolves to ${bad.address}, a private, loopback, link-local or reserved address` : null;
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | dns.LookupAddress[], family?: number) => void;

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
      const refused = Object.assign(new Error(`refused: ${hostname} resolves only to private, loopback or reserved addresses`), { code: 'EWEBHOOKBLOCKED' });
      return callback(refused, '');
    }
    if (options.all) return callback(null, allowed);
    callback(null, allowed[0]!.address, allowed[0]!.family);
  });
}
