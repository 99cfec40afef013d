import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { type BrowserContext, chromium, type Page } from 'playwright-core';

/** Debian's chromium (`apt-get install chromium`, done by .ci/run); CHROMIUM_PATH to use another. */
export const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * Without the background-networking flags Chromium reaches out to Google's hosts at start (refused
 * here, and no part of what we test); as root it needs --no-sandbox.
 */
export const CHROMIUM_FLAGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--no-first-run',
  '--disable-default-apps',
  '--disable-extensions',
];

/** Null when Chromium is here; else why the browser tests cannot run (a failure in CI). */
export function chromiumMissing(): string | null {
  if (existsSync(CHROMIUM)) return null;
  const reason = `${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) to run the console's browser tests`;
  if (process.env.CI === 'true') throw new Error(`CI=true but ${reason}`);
  return reason;
}

/**
 * A headless Chromium with an empty profile of its own, and a record of every request its pages
 * make and every console message they print (CSP violations are console errors).
 */
export class TestBrowser {
  readonly requests: string[] = [];
  readonly consoleErrors: string[] = [];
  private shared: Page | null = null;

  private constructor(
    readonly context: BrowserContext,
    private readonly profile: string,
  ) {}

  static async launch(): Promise<TestBrowser> {
    const profile = mkdtempSync(path.join(os.tmpdir(), 'triggers-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_FLAGS,
      viewport: { width: 1280, height: 860 },
    });
    const testBrowser = new TestBrowser(context, profile);
    context.on('request', (request) => testBrowser.requests.push(request.url()));
    context.on('page', (page) => testBrowser.watch(page));
    return testBrowser;
  }

  private watch(page: Page): void {
    page.on('console', (message) => {
      if (message.type() === 'error') this.consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => this.consoleErrors.push(`page error: ${error.message}`));
  }

  /**
   * The file's one tab, reset for the next test: this tab's session forgotten and a fresh document
   * of the console loaded. Its close() leaves it open for the next test. One tab rather than one
   * per test because each new tab is a new renderer process (two, with the console's
   * Cross-Origin-Opener-Policy): ~0.5 CPU-s each, measured, and `npm test` is CPU-bound on 2 cores.
   * newTab() gives a real second tab when a test needs two at once.
   */
  async newPage(): Promise<Page> {
    if (this.shared === null) {
      const page = this.context.pages()[0] ?? (await this.context.newPage());
      this.watch(page); // the context's 'page' event does not fire for the tab it opened with
      page.setDefaultTimeout(10_000);
      page.close = async () => {};
      this.shared = page;
      return page;
    }
    const page = this.shared;
    // What a test listened to on the tab goes with the test (the console and error watch stays).
    for (const event of ['request', 'response', 'requestfinished', 'requestfailed', 'dialog'] as const)
      page.removeAllListeners(event);
    if (page.url().startsWith('http')) {
      await page.evaluate('sessionStorage.clear()').catch(() => {});
      // Another path of the same origin: a new document (a fragment alone would keep the last
      // test's app running), in the same renderer process.
      await page.goto(new URL('/console?next-test', page.url()).href);
    }
    return page;
  }

  /** A second tab (a session of its own), for a test that needs two at once; the test closes it. */
  async newTab(): Promise<Page> {
    const page = await this.context.newPage();
    page.setDefaultTimeout(10_000);
    return page;
  }

  /** Every URL requested that is not `origin` (data: URLs are not requests to anywhere). */
  foreignRequests(origin: string): string[] {
    return this.requests.filter((url) => !url.startsWith('data:') && new URL(url).origin !== origin);
  }

  async close(): Promise<void> {
    await this.context.close().catch(() => {});
    rmSync(this.profile, { recursive: true, force: true });
  }
}

/** Signs in on a fresh page with `key` and waits for the console's navigation. */
export async function signedInPage(browser: TestBrowser, base: string, key: string, hash = ''): Promise<Page> {
  const page = await browser.newPage();
  await page.goto(`${base}/console${hash}`);
  await page.getByLabel('API key').fill(key);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('navigation', { name: 'Console pages' }).waitFor();
  return page;
}

/**
 * Waits until `expression` is true in the page. Polled with page.evaluate (run by the DevTools
 * protocol): Playwright's waitForFunction evaluates its predicate with eval inside the page, which
 * the console's CSP (no 'unsafe-eval') refuses.
 */
export async function waitInPage(page: Page, expression: string, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await page.evaluate(expression))) {
    if (Date.now() > deadline) throw new Error(`not true within ${ms} ms: ${expression}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** For a test's skip option: `test('…', { skip: browserSkip() }, …)`. */
export function browserSkip(): string | false {
  return chromiumMissing() ?? false;
}

export type { Page, TestContext };
