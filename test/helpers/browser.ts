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
const CHROMIUM_FLAGS = [
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
  private readonly used = new WeakSet<Page>();

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

  async newPage(): Promise<Page> {
    // A persistent context opens with one blank page; use it first.
    const blank = this.context.pages().find((page) => page.url() === 'about:blank' && !this.used.has(page));
    const page = blank ?? (await this.context.newPage());
    this.used.add(page);
    if (blank) this.watch(blank);
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
