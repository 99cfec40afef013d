/**
 * `npm run console:screenshots`: the pictures of the console in docs/console/ and the README, made
 * from a real server with real data. Boots the built server on an embedded Postgres in a temporary
 * directory, signs in with the first-boot key, gives the org a minute of traffic (webhooks to a local
 * receiver that fails one request in seven, a webhook whose receiver is down, consumer groups, an
 * event type), then photographs each page in Debian's Chromium. Everything stays on 127.0.0.1 and
 * is removed at the end.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type Page } from 'playwright-core';
import { CHROMIUM, CHROMIUM_FLAGS } from '../test/helpers/browser.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const OUT = path.join(ROOT, 'docs/console');
const TRAFFIC_SECONDS = Number(process.env.TRAFFIC_SECONDS ?? 75);

async function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function main(): Promise<void> {
  const dataDir = mkdtempSync(path.join(os.tmpdir(), 'triggers-screens-'));
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;

  // A receiver that answers after 5-40 ms and fails one request in seven.
  let received = 0;
  const receiver = http.createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      received++;
      setTimeout(() => response.writeHead(received % 7 === 0 ? 500 : 204).end(), 5 + Math.random() * 35);
    });
  });
  const receiverPort = await freePort();
  await new Promise<void>((resolve) => receiver.listen(receiverPort, '127.0.0.1', resolve));

  const server = spawn(process.execPath, [path.join(ROOT, 'dist/src/main.js')], {
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      PORT: String(port),
      HOST: '127.0.0.1',
      WORKERS: '1',
      LOG_LEVEL: 'warn',
      WEBHOOK_ALLOW_HTTP: 'true',
      WEBHOOK_ALLOW_PRIVATE: 'true',
      DESTINATION_ALLOWED_HOSTS: '127.0.0.1',
      WEBHOOK_RETRY_SCHEDULE: '2s,5s,10s',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  server.stdout.on('data', (chunk) => (output += chunk));
  server.stderr.on('data', (chunk) => (output += chunk));
  try {
    for (let waited = 0; !/serving on/.test(output); waited += 100) {
      if (waited > 120_000) throw new Error(`the server did not start:\n${output}`);
      await sleep(100);
    }
    const key = /\b(zt_live_[a-z0-9]+_[A-Za-z0-9_-]+)/.exec(output)?.[1];
    if (!key) throw new Error(`no first-boot key in the output:\n${output}`);

    const api = async (method: string, route: string, body?: unknown) => {
      const response = await fetch(base + route, {
        method,
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body),
      });
      const text = await response.text();
      if (!response.ok) throw new Error(`${method} ${route}: ${response.status} ${text}`);
      return text ? JSON.parse(text) : null;
    };

    await api('PUT', '/v1/event-types/order.created', {
      description: 'An order was placed.',
      schema: {
        type: 'object',
        required: ['order_id', 'amount', 'currency'],
        properties: {
          order_id: { type: 'string' },
          amount: { type: 'integer', minimum: 0 },
          currency: { enum: ['EUR', 'USD', 'GBP'] },
          email: { type: 'string', format: 'email' },
          items: { type: 'array' },
        },
      },
    });
    await api('POST', '/v1/webhooks', {
      url: `http://127.0.0.1:${receiverPort}/orders`,
      event_types: ['order.*'],
      description: 'Order service',
    });
    await api('POST', '/v1/webhooks', {
      url: `http://127.0.0.1:${await freePort()}/down`,
      event_types: ['user.*'],
      description: 'CRM (receiver down)',
    });
    await api('POST', '/v1/destinations', {
      type: 'redis_stream',
      config: { url: `redis://:s3cret@127.0.0.1:${await freePort()}`, stream: 'events' },
      description: 'Analytics stream',
    }).catch((error: unknown) => console.warn(`destination not created: ${String(error)}`));
    await api('POST', '/v1/consumer-groups', { name: 'billing', start: 'earliest', event_types: ['order.*'] });
    await api('POST', '/v1/consumer-groups', {
      name: 'search-index',
      start: 'earliest',
      max_deliveries: 1,
      visibility_timeout_s: 1,
    });

    console.log(`sending events for ${TRAFFIC_SECONDS} s…`);
    const types = ['order.created', 'order.paid', 'user.signed_up', 'order.shipped'];
    for (let second = 0; second < TRAFFIC_SECONDS; second++) {
      const count = 20 + Math.round(40 * Math.abs(Math.sin(second / 9)));
      const events = Array.from({ length: count }, (_, index) => {
        const type = types[(second + index) % types.length]!;
        const order = `ord_${second}_${index}`;
        const payload =
          type === 'order.created'
            ? { order_id: order, amount: 1000 + index * 37, currency: 'EUR', email: 'ada@example.com', items: [] }
            : type === 'user.signed_up'
              ? { user_id: `usr_${second}_${index}`, plan: 'team' }
              : { order_id: order };
        return { type, payload };
      });
      await api('POST', '/v1/events/batch', { events });
      if (second % 10 === 5) {
        // The billing group takes and acks a page; search-index takes one it never acks (it goes dead).
        const page = await api('POST', '/v1/consumer-groups/billing/receive', { max: 200 });
        const ids = page.messages.map((message: { event: { id: string } }) => message.event.id);
        if (ids.length > 0) await api('POST', '/v1/consumer-groups/billing/ack', { ids });
        await api('POST', '/v1/consumer-groups/search-index/receive', { max: 5 });
      }
      await sleep(1000);
    }
    await sleep(5000);

    mkdirSync(OUT, { recursive: true });
    const profile = mkdtempSync(path.join(os.tmpdir(), 'triggers-screens-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 860 },
    });
    try {
      const page = context.pages()[0] ?? (await context.newPage());
      await page.goto(`${base}/console`);
      await shoot(page, 'sign-in');
      await page.getByLabel('API key').fill(key);
      await page.getByRole('button', { name: 'Sign in' }).click();
      await page.getByRole('navigation', { name: 'Console pages' }).waitFor();

      await page.goto(`${base}/console#/events`);
      await page.getByRole('table').first().waitFor();
      await page.getByRole('button', { name: 'View' }).first().click();
      await shoot(page, 'events');

      await page.goto(`${base}/console#/groups`);
      await shoot(page, 'groups');
      await page.goto(`${base}/console#/groups/search-index`);
      await shoot(page, 'group');

      await page.goto(`${base}/console#/event-types`);
      await shoot(page, 'event-types');

      await page.goto(`${base}/console#/webhooks`);
      await shoot(page, 'webhooks');
      const webhooks = await api('GET', '/v1/webhooks');
      const orders =
        webhooks.webhooks?.find((hook: { url: string }) => hook.url.endsWith('/orders')) ?? webhooks.data?.[0];
      if (orders) {
        await page.goto(`${base}/console#/webhooks/${orders.id}`);
        await page.locator('svg').first().waitFor();
        await shoot(page, 'webhook', true);
      }
      await page.goto(`${base}/console#/destinations`);
      await shoot(page, 'destinations');
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
    console.log(`wrote ${OUT}`);
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => server.once('exit', resolve));
    receiver.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function shoot(page: Page, name: string, fullPage = false): Promise<void> {
  await page.locator('h1').first().waitFor();
  await sleep(1200); // the page's own loads and the chart's first refresh
  await page.screenshot({ path: path.join(OUT, `${name}.png`), fullPage });
  console.log(`  ${name}.png`);
}

await main();
