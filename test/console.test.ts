/**
 * The console (API.md §9) in a real browser: Debian's Chromium driven by playwright-core, against
 * the server's own /console over a real Postgres. Sign-in, scopes, the events page, keyboard use,
 * and what the page may load: nothing from another origin, nothing the CSP refuses.
 * The endpoint pages are in console-endpoints.test.ts, groups and event types in console-groups.test.ts;
 * the three make the browser set (`npm run test:browser`). The files and their headers without a
 * browser: console-files.test.ts, in npm test.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { call, createOrgWithKey, sendEvent, UNKNOWN_API_KEY } from './helpers/api.js';
import { browserSkip, signedInPage, TestBrowser, waitInPage } from './helpers/browser.js';
import { InProcessServer } from './helpers/in-process.js';
import { TestPostgres } from './helpers/postgres.js';

const skip = browserSkip();
if (skip) console.log(`# skipping the console's browser tests: ${skip}`);

let pg: TestPostgres;
let server: InProcessServer;
let browser: TestBrowser;
let base: string;

before(async () => {
  pg = await TestPostgres.shared();
  server = await InProcessServer.start({ databaseUrl: await pg.createDatabase('console') });
  base = server.url;
  if (!skip) browser = await TestBrowser.launch();
});

after(async () => {
  await browser?.close();
  await server?.stop();
  await pg?.stop();
});

describe('the console in Chromium', { skip }, () => {
  test('a wrong key is refused with a clear message, and nothing is kept', async () => {
    const page = await browser.newPage();
    await page.goto(`${base}/console`);
    await page.getByRole('heading', { name: 'Triggers console' }).waitFor();
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.getByRole('alert').filter({ hasText: 'Paste an API key first.' }).waitFor();

    await page.getByLabel('API key').fill(UNKNOWN_API_KEY);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.filter({ hasText: 'Check that the whole key was pasted' }).waitFor();
    assert.match((await alert.textContent()) ?? '', /invalid API key/i);
    assert.equal(await page.evaluate('sessionStorage.length'), 0);
    assert.equal(await page.getByRole('navigation', { name: 'Console pages' }).count(), 0);
    await page.close();
  });

  test('a key signs in, is kept in sessionStorage only, survives a reload and goes at sign-out', async () => {
    const { key } = await createOrgWithKey(base, { name: 'Acme Console' });
    const page = await signedInPage(browser, base, key);
    await page.getByText('Acme Console').waitFor();
    assert.deepEqual(await page.evaluate('Object.values(sessionStorage)'), [key], 'the key, in this tab only');
    assert.equal(await page.evaluate('localStorage.length'), 0);
    assert.deepEqual(await browser.context.cookies(), [], 'no cookies: nothing a cross-site request could carry');

    await page.reload();
    await page.getByRole('navigation', { name: 'Console pages' }).waitFor();
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('API key').waitFor();
    assert.equal(await page.evaluate('sessionStorage.length'), 0);

    // Another tab is another session: it starts signed out.
    const other = await browser.newTab();
    await other.goto(`${base}/console`);
    await other.getByLabel('API key').waitFor();
    await page.close();
    await other.close();
  });

  test("the key's scopes decide which pages show", async () => {
    const reader = await createOrgWithKey(base, { scopes: ['events:read'] });
    const manager = await createOrgWithKey(base, { scopes: ['webhooks:manage'] });
    const everything = await createOrgWithKey(base);
    const pagesOf = async (key: string) => {
      const page = await signedInPage(browser, base, key);
      const names = await page.getByRole('navigation', { name: 'Console pages' }).getByRole('link').allInnerTexts();
      await page.close();
      return names;
    };
    assert.deepEqual(await pagesOf(reader.key), ['Events', 'Inbox & groups']);
    assert.deepEqual(await pagesOf(manager.key), ['Webhooks', 'Destinations']);
    assert.deepEqual(await pagesOf(everything.key), [
      'Events',
      'Inbox & groups',
      'Event types',
      'Webhooks',
      'Destinations',
    ]);
  });

  test('the events page lists, filters by type and time, and shows a payload', async () => {
    const { key } = await createOrgWithKey(base);
    const other = await createOrgWithKey(base);
    const ids: Record<string, string> = {};
    for (const type of ['order.created', 'order.paid', 'user.signed_up']) {
      const sent = await sendEvent(base, key, { type, payload: { name: type, amount: 42 } });
      assert.equal(sent.status, 202, sent.text);
      ids[type] = sent.body.id;
    }
    assert.equal((await sendEvent(base, other.key, { type: 'order.secret', payload: {} })).status, 202);

    const page = await signedInPage(browser, base, key, '#/events');
    const table = page.getByRole('table', { name: 'Events, newest first' });
    await table.waitFor();
    const rows = table.locator('tbody tr');
    assert.deepEqual(await rows.locator('td:nth-child(2)').allInnerTexts(), [
      'user.signed_up',
      'order.paid',
      'order.created',
    ]);
    assert.equal(await page.getByText('order.secret').count(), 0, "another org's event is never shown");

    await page.getByLabel('Type').fill('order.*');
    await page.getByRole('button', { name: 'Show events' }).click();
    await page.getByText('user.signed_up').waitFor({ state: 'detached' });
    assert.deepEqual(await rows.locator('td:nth-child(2)').allInnerTexts(), ['order.paid', 'order.created']);

    await rows.first().getByRole('button', { name: 'View' }).click();
    const payload = page.getByLabel(`Event ${ids['order.paid']}`);
    await payload.waitFor();
    const shown = JSON.parse((await payload.textContent()) ?? '');
    assert.equal(shown.id, ids['order.paid']);
    assert.deepEqual(shown.payload, { name: 'order.paid', amount: 42 });
    assert.equal(await rows.first().getByRole('button', { name: 'Hide' }).getAttribute('aria-expanded'), 'true');

    // A window that ends before the events were received shows none.
    await page.getByLabel('Received before').fill('2020-01-01T00:00');
    await page.getByLabel('Received from').fill('2019-12-31T00:00');
    await page.getByRole('button', { name: 'Show events' }).click();
    await page.getByText('No events in this window.').waitFor();
    await page.close();
  });

  test('keyboard only: skip link, pages reached by Tab and Enter, focus always visible', async () => {
    const { key } = await createOrgWithKey(base);
    const page = await signedInPage(browser, base, key, '#/events');
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate('document.activeElement?.textContent'), 'Skip to content');
    const outline = await page.evaluate('getComputedStyle(document.activeElement).outlineStyle');
    assert.equal(outline, 'solid', 'the focused control shows an outline');

    // Tab forward to the Webhooks link and open it with Enter.
    let reached = false;
    for (let step = 0; step < 15 && !reached; step++) {
      await page.keyboard.press('Tab');
      reached = (await page.evaluate('document.activeElement?.textContent')) === 'Webhooks';
    }
    assert.ok(reached, 'the Webhooks link is reachable by Tab');
    await page.keyboard.press('Enter');
    await page.waitForURL(/#\/webhooks$/);
    // The page renders after the hash changes (CI at load 9 read the link before its re-render).
    await waitInPage(page, `document.querySelector('a[href="#/webhooks"]')?.getAttribute('aria-current') === 'page'`);
    assert.equal(await page.getByRole('link', { name: 'Webhooks' }).getAttribute('aria-current'), 'page');
    // Focus moves to the new page's heading (once it has rendered).
    await waitInPage(page, "document.activeElement?.tagName === 'H1'");

    // Every control has an accessible name (a label, text, or aria-label).
    const unnamed = await page.evaluate(`[...document.querySelectorAll('input, select, textarea, button')]
      .filter((control) => !(control.labels?.length || control.getAttribute('aria-label') || control.textContent.trim()))
      .map((control) => control.outerHTML)`);
    assert.deepEqual(unnamed, []);
    await page.close();
  });

  test('a key revoked while the console is open sends it back to sign-in', async () => {
    const { key, keyId } = await createOrgWithKey(base);
    const page = await signedInPage(browser, base, key, '#/events');
    await page.getByRole('table', { name: 'Events, newest first' }).or(page.getByText('No events')).first().waitFor();
    const revoked = await call(base, 'DELETE', `/v1/admin/keys/${keyId}`, { admin: true });
    assert.equal(revoked.status, 200, revoked.text);
    // The key cache forgets a revoked key within 2 s (API.md §2); the next call is a 401.
    await new Promise((resolve) => setTimeout(resolve, 2_500));
    await page.getByRole('button', { name: 'Show events' }).click();
    await page.getByRole('alert').filter({ hasText: 'revoked' }).waitFor();
    await page.getByLabel('API key').waitFor();
    assert.equal(await page.evaluate('sessionStorage.length'), 0);
    await page.close();
  });

  test('no request left this origin and the CSP refused nothing', () => {
    assert.ok(browser.requests.length > 0);
    assert.deepEqual(browser.foreignRequests(base), []);
    // 401s of the wrong-key tests print "Failed to load resource"; anything else is a fault.
    const faults = browser.consoleErrors.filter((text) => !/status of 401/.test(text));
    assert.deepEqual(faults, []);
  });
});
