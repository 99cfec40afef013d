import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { ipv6Groups, isBlockedAddress, refusedHostReason } from '../src/delivery/ssrf.js';
import { call, createOrgWithKey } from './helpers/api.js';
import { TestPostgres } from './helpers/postgres.js';
import { TestServer } from './helpers/server.js';

/**
 * What one org can make the server do with a webhook URL or with many endpoints: the SSRF
 * classifier on every spelling of an address (a pure table), the same through POST /v1/webhooks
 * without WEBHOOK_ALLOW_PRIVATE (422 that says "not allowed", never the address), and the
 * per-org endpoint cap, also when creates race.
 */

// [address as a resolver or URL parser may hand it over, blocked?, why]
const ADDRESSES: Array<[string, boolean, string]> = [
  ['127.0.0.1', true, 'IPv4 loopback'],
  ['169.254.169.254', true, 'metadata'],
  ['10.1.2.3', true, 'private'],
  ['192.0.2.7', true, 'documentation'],
  ['93.184.216.34', false, 'public IPv4'],
  ['::1', true, 'IPv6 loopback'],
  ['0:0:0:0:0:0:0:1', true, 'loopback, expanded'],
  ['0000:0000:0000:0000:0000:0000:0000:0001', true, 'loopback, expanded with leading zeros'],
  ['::', true, 'unspecified'],
  ['::7f00:1', true, 'IPv4-compatible 127.0.0.1 (::/96)'],
  ['::127.0.0.1', true, 'IPv4-compatible, dotted'],
  ['::5db8:d822', true, 'IPv4-compatible, even of a public address (deprecated, ::/96)'],
  ['::ffff:127.0.0.1', true, 'IPv4-mapped loopback, dotted'],
  ['::FFFF:127.0.0.1', true, 'IPv4-mapped, upper case'],
  ['::ffff:7f00:1', true, 'IPv4-mapped loopback, hex'],
  ['0:0:0:0:0:ffff:7f00:0001', true, 'IPv4-mapped, expanded with leading zeros'],
  ['::ffff:a9fe:a9fe', true, 'IPv4-mapped metadata'],
  ['::ffff:0:7f00:1', true, 'SIIT IPv4-translated loopback'],
  ['::ffff:0:127.0.0.1', true, 'SIIT IPv4-translated, dotted'],
  ['::ffff:5db8:d822', false, 'IPv4-mapped public address: the same host as 93.184.216.34'],
  ['64:ff9b::a9fe:a9fe', true, 'NAT64 of 169.254.169.254'],
  ['64:ff9b::7f00:1', true, 'NAT64 of 127.0.0.1'],
  ['64:ff9b::10.0.0.1', true, 'NAT64, dotted'],
  ['0064:FF9B:0000:0000:0000:0000:7F00:0001', true, 'NAT64, expanded upper case'],
  ['64:ff9b::5db8:d822', true, 'NAT64 of a public address: the prefix is refused whole'],
  ['64:ff9b:1::5db8:d822', true, 'local-use NAT64 (64:ff9b:1::/48)'],
  ['2002:7f00:1::1', true, '6to4 of 127.0.0.1'],
  ['2002:a9fe:a9fe::', true, '6to4 of the metadata address'],
  ['2002:c0a8:101::1', true, '6to4 of 192.168.1.1'],
  ['2002:5db8:d822::1', false, '6to4 of a public address'],
  ['2001:0:4136:e378:8000:63bf:3fff:fdd2', true, 'Teredo (2001::/32)'],
  ['2001::1', true, 'Teredo, compressed'],
  ['2001:db8::1', true, 'documentation'],
  ['fec0::1', true, 'site-local (fec0::/10)'],
  ['FEC0:0:0:0:0:0:0:1', true, 'site-local, expanded upper case'],
  ['fe80::1', true, 'link-local'],
  ['fe80::1%eth0', true, 'link-local with a zone id'],
  ['fe80::a9fe:a9fe%25eth0', true, 'link-local with a percent-encoded zone id'],
  ['fc00::1', true, 'unique local'],
  ['fd00:ec2::254', true, 'AWS metadata over IPv6'],
  ['ff02::1', true, 'multicast'],
  ['100::1', true, 'discard-only (100::/64)'],
  ['4000::1', true, 'outside global unicast'],
  ['2606:4700::1111', false, 'public IPv6'],
  ['2a00:1450:4001:81d::200e', false, 'public IPv6'],
  ['localhost', true, 'not an address at all'],
  ['2130706433', true, 'not an address as such (the URL parser makes it 127.0.0.1)'],
];

describe('the SSRF classifier', () => {
  for (const [address, blocked, why] of ADDRESSES) {
    test(`${address}: ${blocked ? 'refused' : 'allowed'} (${why})`, () => {
      assert.equal(isBlockedAddress(address), blocked);
    });
  }

  test('an IPv6 address is read into its 8 groups whatever the spelling', () => {
    const loopbackMapped = [0, 0, 0, 0, 0, 0xffff, 0x7f00, 1];
    for (const spelling of [
      '::ffff:127.0.0.1',
      '::FFFF:7F00:1',
      '0:0:0:0:0:ffff:7f00:0001',
      '0000:0000:0000:0000:0000:FFFF:127.0.0.1',
      '::ffff:7f00:1%lo',
    ]) {
      assert.deepEqual(ipv6Groups(spelling), loopbackMapped, spelling);
    }
    assert.equal(ipv6Groups('127.0.0.1'), null);
    assert.equal(ipv6Groups('1::2::3'), null);
  });

  test('the URL parser turns every IPv4 spelling into a dotted quad before the classifier sees it', () => {
    for (const url of [
      'http://2130706433/',
      'http://0x7f.1/',
      'http://017700000001/',
      'http://127.1/',
      'http://0x7f000001/',
      'http://127.000.000.001/',
    ]) {
      const host = new URL(url).hostname;
      assert.equal(host, '127.0.0.1', url);
      assert.equal(isBlockedAddress(host), true, url);
    }
  });

  test('a refusal says "not allowed" and never names the address a host resolves to', async () => {
    const reason = await refusedHostReason('localhost');
    assert.match(reason ?? '', /not allowed/);
    assert.doesNotMatch(reason!, /127\.0\.0\.1|::1/);
  });
});

let pg: TestPostgres;
let server: TestServer;
const CAP = 3;

before(async () => {
  pg = await TestPostgres.shared();
  server = await TestServer.start({
    databaseUrl: await pg.createDatabase('webhook_guards'),
    workers: 2,
    // http:// allowed so that addresses, not the scheme, decide; private addresses are not.
    env: { WEBHOOK_ALLOW_HTTP: 'true', WEBHOOK_MAX_ENDPOINTS_PER_ORG: String(CAP) },
  });
});

after(async () => {
  await server?.stop();
  await pg?.stop();
});

describe('POST /v1/webhooks without WEBHOOK_ALLOW_PRIVATE', () => {
  const refused = [
    'http://[64:ff9b::a9fe:a9fe]/',
    'http://[64:ff9b::7f00:1]/',
    'http://[::7f00:1]/',
    'http://[fec0::1]/',
    'http://[::ffff:127.0.0.1]/',
    'http://[0:0:0:0:0:FFFF:7F00:0001]/',
    'http://[2002:a9fe:a9fe::1]/',
    'http://[2001::1]/',
    'http://2130706433/',
    'http://0x7f.1/',
    'http://017700000001/',
    'http://127.1:8080/hook',
    'http://localhost/hook',
  ];
  for (const url of refused) {
    test(`${url} → 422, "not allowed", without the address`, async () => {
      const { key } = await createOrgWithKey(server.url);
      const response = await call(server.url, 'POST', '/v1/webhooks', { key, body: { url } });
      assert.equal(response.status, 422, response.text);
      assert.equal(response.body.error.code, 'validation_failed');
      assert.equal(response.body.error.details[0].field, 'url');
      assert.match(response.body.error.details[0].message, /not allowed/);
      assert.doesNotMatch(response.text, /127\.0\.0\.1|::1\b|169\.254/, 'the answer names no internal address');
    });
  }

  test('a public address is accepted', async () => {
    const { key } = await createOrgWithKey(server.url);
    const response = await call(server.url, 'POST', '/v1/webhooks', {
      key,
      body: { url: 'http://[2002:5db8:d822::1]/hook' },
    });
    assert.equal(response.status, 201, response.text);
  });
});

describe(`WEBHOOK_MAX_ENDPOINTS_PER_ORG=${CAP}`, () => {
  const create = (key: string) =>
    call(server.url, 'POST', '/v1/webhooks', { key, body: { url: 'https://93.184.216.34/hook' } });

  test('one more endpoint than the cap is a 409 conflict that says why; deleting one makes room; other orgs are not affected', async () => {
    const { key } = await createOrgWithKey(server.url);
    const created = [];
    for (let i = 0; i < CAP; i++) {
      const response = await create(key);
      assert.equal(response.status, 201, response.text);
      created.push(response.body.id as string);
    }
    const refused = await create(key);
    assert.equal(refused.status, 409, refused.text);
    assert.equal(refused.body.error.code, 'conflict');
    assert.match(refused.body.error.message, new RegExp(`${CAP} webhook endpoints and destinations, the most allowed`));
    // A disabled endpoint still counts: it is still there.
    assert.equal(
      (await call(server.url, 'PATCH', `/v1/webhooks/${created[0]}`, { key, body: { enabled: false } })).status,
      200,
    );
    assert.equal((await create(key)).status, 409);
    assert.equal((await call(server.url, 'DELETE', `/v1/webhooks/${created[0]}`, { key })).status, 204);
    assert.equal((await create(key)).status, 201);
    const other = await createOrgWithKey(server.url);
    assert.equal((await create(other.key)).status, 201, 'the cap is per org');
  });

  test('40 creates at once at cap - 1 (through two HTTP workers), three times: exactly one succeeds each time', async () => {
    const db = pg.connect('webhook_guards');
    try {
      for (let round = 0; round < 3; round++) {
        const { key, orgId } = await createOrgWithKey(server.url);
        for (let i = 0; i < CAP - 1; i++) assert.equal((await create(key)).status, 201);
        const results = await Promise.all(Array.from({ length: 40 }, () => create(key)));
        const statuses = results.map((response) => response.status);
        assert.equal(statuses.filter((status) => status === 201).length, 1, `round ${round}: ${statuses}`);
        assert.equal(statuses.filter((status) => status === 409).length, 39, `round ${round}: ${statuses}`);
        const [row] = await db`select count(*)::int as n from webhook_endpoints where org_id = ${orgId}`;
        assert.equal(row!.n, CAP);
      }
    } finally {
      await db.end({ timeout: 1 });
    }
  });
});
