// A headless chromium for the page tests: Debian's chromium driven by playwright-core (never a
// browser download). Missing browser or driver: skipped on a workstation, a failure under CI=true.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { scratchDir } from './helpers.js';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** The part of playwright-core's API these tests use. */
export interface Page {
  on(event: 'console', f: (m: { type(): string; text(): string }) => void): void;
  on(event: 'pageerror', f: (e: Error) => void): void;
  on(event: 'request', f: (r: { url(): string }) => void): void;
  goto(url: string): Promise<unknown>;
  locator(selector: string): Locator;
  screenshot(options: { path: string; fullPage?: boolean }): Promise<unknown>;
  setViewportSize(size: { width: number; height: number }): Promise<void>;
  mouse: { move(x: number, y: number): Promise<void> };
  keyboard: { press(key: string): Promise<void> };
  getByLabel(text: string, options?: { exact?: boolean }): Locator;
  getByRole(role: string, options?: { name?: string }): Locator;
  url(): string;
  waitForFunction(expression: string): Promise<unknown>;
  evaluate<T>(expression: string): Promise<T>;
  waitForEvent(event: 'download'): Promise<{ path(): Promise<string>; suggestedFilename(): string }>;
}
export interface Locator {
  hover(): Promise<void>; tap(): Promise<void>; innerText(): Promise<string>; count(): Promise<number>;
  waitFor(options: { state: 'visible' | 'hidden' }): Promise<void>;
  click(): Promise<void>; fill(text: string): Promise<void>; focus(): Promise<void>; press(key: string): Promise<void>;
  getAttribute(name: string): Promise<string | null>; inputValue(): Promise<string>; nth(index: number): Locator;
  check(): Promise<void>; selectOption(value: string): Promise<unknown>;
}
export interface Context { pages(): Page[]; newPage(): Promise<Page>; close(): Promise<void> }
interface Playwright { chromium: { launchPersistentContext(dir: string, options: Record<string, unknown>): Promise<Context> } }

/**
 * A fresh headless chromium context (its own user-data dir), or why there is none. Under CI=true a
 * missing browser or driver throws, so the test fails rather than skips.
 */
export async function launchBrowser(): Promise<{ context: Context } | { missing: string }> {
  let playwright: Playwright | undefined;
  try {
    // required by name (CommonJS), so that NODE_PATH can point at a copy outside the project
    playwright = createRequire(import.meta.url)('playwright-core') as Playwright;
  } catch { /* reported below */ }
  const missing = !existsSync(CHROMIUM) ? `${CHROMIUM} is missing (apt-get install -y chromium)`
    : !playwright ? 'the playwright-core package is missing' : undefined;
  if (missing) {
    if (process.env.CI === 'true') throw new Error(`browser test cannot run under CI: ${missing}`);
    return { missing };
  }
  const context = await playwright!.chromium.launchPersistentContext(scratchDir('chromium-profile'), {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_ARGS, hasTouch: true, acceptDownloads: true, viewport: { width: 1000, height: 700 },
  });
  return { context };
}

/** Loads `url` in a new page and collects console errors, page errors and every request the page makes. */
export async function openPage(context: Context, url: string): Promise<{ page: Page; errors: string[]; requests: string[] }> {
  const page = await context.newPage();
  const errors: string[] = [], requests: string[] = [];
  page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('request', (r) => requests.push(r.url()));
  await page.goto(url);
  return { page, errors, requests };
}

/** Runs `body` with a fresh browser context, closed afterwards; skips (fails under CI) without a browser. */
export async function inBrowser(t: { skip(message: string): void }, body: (context: Context) => Promise<void>): Promise<void> {
  const launched = await launchBrowser();
  if ('missing' in launched) { t.skip(launched.missing); return; }
  try {
    await body(launched.context);
  } finally {
    await launched.context.close();
  }
}

/**
 * Waits until `expression` is truthy in the page, polled from here by evaluate: playwright's own
 * waitForFunction sometimes evaluates a string predicate by eval inside the page, which the served
 * page's Content-Security-Policy (no 'unsafe-eval') refuses.
 */
export async function waitUntil(page: Page, expression: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await page.evaluate<boolean>(`Boolean(${expression})`))) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((resolve) => setTimeout(resolve, 25));
  }
}
