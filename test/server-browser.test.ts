// The page `lens serve` serves, in headless chromium: type a prompt, the grid's cells are the CLI's
// --json top-1 tokens, click and keyboard show a cell's top-k, a pinned token's chart appears, the
// URL carries the view, and the page asks nothing of any other origin and logs no error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { serve } from '../src/server/server.js';
import { inBrowser, openPage, type Page } from './browser.js';
import { cleanEnv, fixture, runCli, scratchDir } from './helpers.js';

const { dir: MODEL } = fixture('opset14-merged');
const cache = scratchDir('server-browser-cache');
const P = 'Paris is capital of';

async function cliRecords(args: string[]): Promise<LensRecord[]> {
  const r = await runCli([...args, '-m', MODEL, '--json'], { env: { LENS_CACHE: cache } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

/** Every grid cell as the page shows it: its layer, position, top-1 id and the text drawn. */
const cellsOf = (page: Page) => page.evaluate<{ layer: number; position: number; id: number; text: string }[]>(`
  Array.from(document.querySelectorAll('[role=grid] [role=gridcell]')).map((c) => ({
    layer: Number(c.dataset.layer), position: Number(c.dataset.position), id: Number(c.dataset.tokenId), text: c.querySelector('.tok').textContent }))`);

/** The rows of the open top-k dialog, whitespace collapsed. */
const dialogRows = (page: Page) => page.evaluate<string[]>(`
  Array.from(document.querySelectorAll('[role=dialog] tr')).map((r) => r.innerText.replace(/\\s+/g, ' ').trim())`);

const percent = (p: number) => (p >= 0.9995 ? '100%' : p >= 0.001 ? `${(p * 100).toFixed(1)}%` : p.toExponential(0));

test('lens serve\'s page in headless chromium', (t) => inBrowser(t, async (context) => {
  const served = await serve({ models: [MODEL], env: cleanEnv({ LENS_CACHE: cache }), offline: true, port: 0 });
  try {
    const { page, errors, requests } = await openPage(context, `${served.origin}/`);
    await page.getByLabel('Prompt', { exact: true }).fill(P);
    await page.keyboard.press('Enter');
    await page.waitForFunction(`document.querySelectorAll('[role=gridcell]').length === 16`);

    // the grid: layers 0–3 × positions 0–3, each cell the CLI's top-1
    const records = await cliRecords(['heatmap', '-k', '10', P]);
    const cells = await cellsOf(page);
    const expected = records.flatMap((r) => r.layers.map((l) => ({ layer: l.layer, position: r.position, id: l.top[0].id, token: l.top[0].token })));
    assert.equal(cells.length, expected.length);
    for (const e of expected) {
      const cell = cells.find((c) => c.layer === e.layer && c.position === e.position);
      assert.ok(cell, `cell L${e.layer} p${e.position}`);
      assert.equal(cell.id, e.id);
      const quoted = JSON.stringify(e.token);
      assert.ok(quoted.length <= 12 ? cell.text === quoted : cell.text === `${quoted.slice(0, 10)}…"`, `${cell.text} vs ${quoted}`);
    }

    // a click shows the cell's top-k, with the record's probabilities
    await page.locator('[role=gridcell][data-layer="1"][data-position="2"]').click();
    const dialog = page.locator('[role=dialog]');
    await dialog.waitFor({ state: 'visible' });
    const layer1 = records[2].layers[1];
    assert.match(await page.locator('#topk-title').innerText(), /^L01 · position 2 " capital"$/);
    assert.deepEqual((await dialogRows(page)).map((row) => row.replace(/ pin$/, '')),
      layer1.top.map((e) => `${JSON.stringify(e.token)} ${percent(e.prob)} logit ${e.logit.toFixed(3)}`));

    // the keyboard walks the grid: right, then down, then Enter shows that cell
    await page.locator('[role=gridcell][data-layer="1"][data-position="2"]').focus();
    await page.keyboard.press('ArrowRight');
    await page.keyboard.press('ArrowDown');
    await page.keyboard.press('Enter');
    await page.waitForFunction(`document.getElementById('topk-title').textContent.startsWith('L02 · position 3')`);
    assert.deepEqual(await page.evaluate(`[document.activeElement.dataset.layer, document.activeElement.dataset.position]`), ['2', '3']);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'visible' });

    // pin the cell's second token: the page reruns with it as a target and charts it
    const pinned = records[3].layers[2].top[1];
    await page.locator(`[role=dialog] button[data-pin="${pinned.id}"]`).click();
    await page.waitForFunction(`document.querySelectorAll('#pin-chart svg polyline').length === 2`);
    const withTarget = await cliRecords(['heatmap', '-k', '10', '--target-id', String(pinned.id), P]);
    const target = withTarget[3].layers[2].targets[0];
    const rows = await dialogRows(page);
    assert.equal(rows.at(-1), `pinned ${JSON.stringify(pinned.token)} ${percent(target.prob)} rank ${target.rank}`);
    assert.match(await page.locator('#pin-list').innerText(), new RegExp(JSON.stringify(pinned.token).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));

    // stride 2 keeps layers 0 and 2, and the last (3)
    await page.getByLabel('Layer stride').fill('2');
    await page.getByLabel('Layer stride').press('Enter');
    await page.waitForFunction(`document.querySelectorAll('[role=gridcell]').length === 12`);
    assert.deepEqual([...new Set((await cellsOf(page)).map((c) => c.layer))], [0, 2, 3]);

    // the URL holds the view: a fresh page on it shows the same
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('prompt'), P);
    assert.equal(url.searchParams.get('pin'), String(pinned.id));
    assert.equal(url.searchParams.get('cell'), '2,3');
    assert.equal(url.searchParams.get('stride'), '2');
    // LENS_SCREENSHOT_DIR keeps the shot (the README's comes from here)
    await page.screenshot({ path: join(process.env.LENS_SCREENSHOT_DIR ?? scratchDir('serve-shot'), 'serve.png'), fullPage: true });
    const again = await openPage(context, url.href);
    await again.page.waitForFunction(`document.querySelectorAll('#pin-chart svg polyline').length === 2 && document.querySelectorAll('[role=gridcell]').length === 12`);
    assert.equal(await again.page.getByLabel('Prompt', { exact: true }).inputValue(), P);
    assert.equal(await again.page.getByLabel('Layer stride').inputValue(), '2');
    assert.match(await again.page.locator('#topk-title').innerText(), /^L02 · position 3 " of"$/);
    assert.deepEqual(await dialogRows(again.page), rows);
    assert.equal(again.page.url(), url.href);

    assert.deepEqual([...errors, ...again.errors], []);
    const foreign = [...requests, ...again.requests].filter((r) => !r.startsWith(`${served.origin}/`));
    assert.deepEqual(foreign, []);
  } finally {
    await served.close();
  }
}));
