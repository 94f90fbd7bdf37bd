// The page `lens serve` serves, in headless chromium: type a prompt, the grid's cells are the CLI's
// --json top-1 tokens, click and keyboard show a cell's top-k, a pinned token's chart appears, the
// URL carries the view, and the page asks nothing of any other origin and logs no error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { serve } from '../src/server/server.js';
import { inBrowser, openPage, waitUntil, type Page } from './browser.js';
import { writeTunedLens } from './fixtures/tuned-lens.js';
import { assertClose, cleanEnv, fixture, runCli, scratchDir, TINY } from './helpers.js';

const { dir: MODEL } = fixture('opset14-merged');
// A second model of the same shape and vocabulary, other weights: the comparison's other side.
const { dir: MODEL2 } = fixture('opset14-merged', { ...TINY, seed: 11 });
const cache = scratchDir('server-browser-cache');
const P = 'Paris is capital of';

async function cliRecords(args: string[], model = MODEL): Promise<LensRecord[]> {
  const r = await runCli([...args, '-m', model, '--json'], { env: { LENS_CACHE: cache } });
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

const unescapeXml = (text: string) => text.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&amp;/g, '&');
/** The cells of an exported SVG, read with a pattern of its own (not the page's code): layer, position, token text and fill. */
function svgCellsOf(svgText: string): { layer: string; position: string; text: string; fill: string }[] {
  const pattern = /<g class="cell" data-layer="(\d+)" data-position="(\d+)"><rect [^>]*fill="([^"]+)"[^>]*\/><text [^>]*class="tok">([^<]*)<\/text>/g;
  return [...svgText.matchAll(pattern)].map((m) => ({ layer: m[1], position: m[2], text: unescapeXml(m[4]), fill: m[3] }));
}

const percent = (p: number) => (p >= 0.9995 ? '100%' : p >= 0.001 ? `${(p * 100).toFixed(1)}%` : p.toExponential(0));

test('lens serve\'s page in headless chromium', (t) => inBrowser(t, async (context) => {
  const served = await serve({ models: [MODEL], env: cleanEnv({ LENS_CACHE: cache }), offline: true, port: 0 });
  try {
    const { page, errors, requests } = await openPage(context, `${served.origin}/`);
    await page.getByLabel('Prompt', { exact: true }).fill(P);
    await page.keyboard.press('Enter');
    await waitUntil(page, `document.querySelectorAll('[role=gridcell]').length === 16`);

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
    await waitUntil(page, `document.getElementById('topk-title').textContent.startsWith('L02 · position 3')`);
    assert.deepEqual(await page.evaluate(`[document.activeElement.dataset.layer, document.activeElement.dataset.position]`), ['2', '3']);
    await page.keyboard.press('Escape');
    await dialog.waitFor({ state: 'hidden' });
    await page.keyboard.press('Enter');
    await dialog.waitFor({ state: 'visible' });

    // pin the cell's second token: the page reruns with it as a target and charts it
    const pinned = records[3].layers[2].top[1];
    await page.locator(`[role=dialog] button[data-pin="${pinned.id}"]`).click();
    await waitUntil(page, `document.querySelectorAll('#pin-chart svg polyline').length === 2`);
    const withTarget = await cliRecords(['heatmap', '-k', '10', '--target-id', String(pinned.id), P]);
    const target = withTarget[3].layers[2].targets[0];
    const rows = await dialogRows(page);
    assert.equal(rows.at(-1), `pinned ${JSON.stringify(pinned.token)} ${percent(target.prob)} rank ${target.rank}`);
    assert.match(await page.locator('#pin-list').innerText(), new RegExp(JSON.stringify(pinned.token).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));

    // stride 2 keeps layers 0 and 2, and the last (3)
    await page.getByLabel('Layer stride').fill('2');
    await page.getByLabel('Layer stride').press('Enter');
    await waitUntil(page, `document.querySelectorAll('[role=gridcell]').length === 12`);
    assert.deepEqual([...new Set((await cellsOf(page)).map((c) => c.layer))], [0, 2, 3]);

    // the URL holds the view: a fresh page on it shows the same
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('prompt'), P);
    assert.equal(url.searchParams.get('pin'), String(pinned.id));
    assert.equal(url.searchParams.get('cell'), '2,3');
    assert.equal(url.searchParams.get('stride'), '2');
    // Export SVG downloads the grid as drawn: one cell per grid cell, its token text and colour
    const shown = await page.evaluate<{ layer: string; position: string; text: string; fill: string }[]>(`
      Array.from(document.querySelectorAll('[role=grid] [role=gridcell]')).map((c) => ({
        layer: c.dataset.layer, position: c.dataset.position, text: c.querySelector('.tok').textContent, fill: c.style.backgroundColor }))`);
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export SVG' }).click()]);
    assert.equal(download.suggestedFilename(), 'lens-heatmap.svg');
    const svgText = readFileSync(await download.path(), 'utf8');
    assert.match(svgText, /^<\?xml[^>]*>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.doesNotMatch(svgText, /href=|url\(/); // standalone: nothing to fetch
    const svgCells = svgCellsOf(svgText);
    assert.deepEqual(svgCells, shown);
    for (const c of svgCells) {
      const layer = records[Number(c.position)].layers.find((l) => l.layer === Number(c.layer))!;
      const quoted = JSON.stringify(layer.top[0].token);
      assert.equal(c.text, quoted.length <= 12 ? quoted : `${quoted.slice(0, 10)}…"`);
    }

    // LENS_SCREENSHOT_DIR keeps the shot (the README's comes from here)
    await page.screenshot({ path: join(process.env.LENS_SCREENSHOT_DIR ?? scratchDir('serve-shot'), 'serve.png'), fullPage: true });
    const again = await openPage(context, url.href);
    await waitUntil(again.page, `document.querySelectorAll('#pin-chart svg polyline').length === 2 && document.querySelectorAll('[role=gridcell]').length === 12`);
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

/** The difference grid's cells: layer, position and B − A as the page computed it. */
const diffCellsOf = (page: Page) => page.evaluate<{ layer: number; position: number; value: number }[]>(`
  Array.from(document.querySelectorAll('#diff [role=gridcell]')).map((c) => ({
    layer: Number(c.dataset.layer), position: Number(c.dataset.position), value: Number(c.dataset.value) }))`);
const cellsIn = (page: Page, box: string) => page.evaluate<{ layer: number; position: number; id: number }[]>(`
  Array.from(document.querySelectorAll('${box} [role=gridcell]')).map((c) => ({ layer: Number(c.dataset.layer), position: Number(c.dataset.position), id: Number(c.dataset.tokenId) }))`);

test('lens serve\'s page compares a second prompt and a second model', (t) => inBrowser(t, async (context) => {
  const served = await serve({ models: [MODEL, MODEL2], env: cleanEnv({ LENS_CACHE: cache }), offline: true, port: 0 });
  try {
    const Q = 'The tower is in';
    const A = await cliRecords(['heatmap', '-k', '10', P]);
    const pinnedId = A[3].layers[3].top[1].id;
    // the view from a link: compare P with Q on the first model, coloured by a pinned token's probability
    const query = new URLSearchParams({ prompt: P, model: MODEL, by: 'pinned', pin: String(pinnedId), compare: '1', prompt2: Q, model2: MODEL });
    const { page, errors, requests } = await openPage(context, `${served.origin}/?${query}`);
    await waitUntil(page, `document.querySelectorAll('#heatmap-b [role=gridcell]').length > 0 && document.querySelectorAll('#diff [role=gridcell]').length > 0`);
    const withPin = await cliRecords(['heatmap', '-k', '10', '--target-id', String(pinnedId), P]);
    const B = await cliRecords(['heatmap', '-k', '10', '--target-id', String(pinnedId), Q]);
    // row by row, as the grid reads: layer, then position
    const topOf = (records: LensRecord[]) => records[0].layers.flatMap((_, s) => records.map((r) => ({ layer: r.layers[s].layer, position: r.position, id: r.layers[s].top[0].id })));
    assert.deepEqual(await cellsIn(page, '#heatmap-b'), topOf(B));
    assert.deepEqual(await cellsIn(page, '#heatmap'), topOf(withPin));
    // the difference: P(pinned) under B minus under A, at the positions both prompts have
    const shared = Math.min(withPin.length, B.length);
    const expected = withPin[0].layers.flatMap((l, s) => withPin.slice(0, shared).map((r, p) => ({ layer: l.layer, position: r.position, value: B[p].layers[s].targets[0].prob - r.layers[s].targets[0].prob })));
    const diff = await diffCellsOf(page);
    assert.deepEqual(diff.map((c) => [c.layer, c.position]), expected.map((c) => [c.layer, c.position]));
    assertClose(diff.map((c) => c.value), expected.map((c) => c.value), 1e-12, 'B − A of P(pinned)');

    // linked: selecting a cell in A selects the same layer and position in B and in the difference
    await page.locator('#heatmap [role=gridcell][data-layer="2"][data-position="1"]').click();
    const selected = await page.evaluate<string[]>(`Array.from(document.querySelectorAll('[role=gridcell][aria-selected=true]')).map((c) => c.closest('[id]').id + ' ' + c.dataset.layer + ',' + c.dataset.position)`);
    assert.deepEqual(selected, ['heatmap 2,1', 'heatmap-b 2,1', 'diff 2,1']);
    const rowsB = await page.evaluate<string[]>(`Array.from(document.querySelectorAll('[role=dialog] tr.top-b')).map((r) => r.innerText.replace(/\\s+/g, ' ').trim())`);
    assert.deepEqual(rowsB, B[1].layers[2].top.map((e) => `${JSON.stringify(e.token)} ${percent(e.prob)} logit ${e.logit.toFixed(3)}`));
    assert.equal(new URL(page.url()).searchParams.get('cell'), '2,1');

    // the same prompt under the second model: B is that model's --json
    await page.getByLabel('Second prompt (empty: the same)').fill('');
    await page.getByLabel('Second model').selectOption(MODEL2);
    await page.getByRole('button', { name: 'Run' }).click();
    await waitUntil(page, `document.getElementById('side-b').textContent.endsWith(${JSON.stringify(MODEL2)})`);
    const B2 = await cliRecords(['heatmap', '-k', '10', '--target-id', String(pinnedId), P], MODEL2);
    assert.deepEqual(await cellsIn(page, '#heatmap-b'), topOf(B2));
    const diff2 = await diffCellsOf(page);
    assertClose(diff2.map((c) => c.value), withPin.flatMap((r, p) => r.layers.map((l, s) => ({ s, p }))).sort((x, y) => x.s - y.s || x.p - y.p).map(({ s, p }) => B2[p].layers[s].targets[0].prob - withPin[p].layers[s].targets[0].prob), 1e-12, 'B − A across models');
    const url = new URL(page.url());
    assert.equal(url.searchParams.get('model2'), MODEL2);
    assert.equal(url.searchParams.get('compare'), '1');
    assert.equal(url.searchParams.get('prompt2'), null);
    // LENS_SCREENSHOT_DIR keeps this one too (the README's comparison shot)
    await page.locator('#heatmap [role=gridcell][data-layer="2"][data-position="3"]').click();
    await page.getByLabel('Colour by').selectOption('prob');
    await page.setViewportSize({ width: 1500, height: 700 });
    await page.screenshot({ path: join(process.env.LENS_SCREENSHOT_DIR ?? scratchDir('serve-shot'), 'serve-compare.png'), fullPage: true });

    assert.deepEqual(errors, []);
    assert.deepEqual(requests.filter((r) => !r.startsWith(`${served.origin}/`)), []);
  } finally {
    await served.close();
  }
}));

test('lens serve\'s page: the lens toggle with a tuned lens loaded, and the attribution panel', (t) => inBrowser(t, async (context) => {
  const lensDir = writeTunedLens(TINY.d, TINY.layers);
  const served = await serve({ models: [MODEL], env: cleanEnv({ LENS_CACHE: cache }), offline: true, port: 0, lens: 'tuned', tunedLens: lensDir });
  try {
    const { page, errors, requests } = await openPage(context, `${served.origin}/?${new URLSearchParams({ prompt: P })}`);
    await waitUntil(page, `document.querySelectorAll('#heatmap [role=gridcell]').length === 16`);
    const grid = () => cellsIn(page, '#heatmap');
    const rowMajor = (records: LensRecord[]) => records[0].layers.flatMap((_, s) => records.map((r) => ({ layer: r.layers[s].layer, position: r.position, id: r.layers[s].top[0].id })));
    const tuned = await cliRecords(['heatmap', '-k', '10', '--tuned-lens', lensDir, P]);
    const logit = await cliRecords(['heatmap', '-k', '10', P]);
    assert.notDeepEqual(rowMajor(tuned), rowMajor(logit)); // the toggle must show a difference
    assert.deepEqual(await grid(), rowMajor(tuned));
    await page.getByLabel('Lens').selectOption('logit');
    await waitUntil(page, `new URL(location.href).searchParams.get('lens') === 'logit'`);
    await waitUntil(page, `document.getElementById('status').textContent === 'running\u2026' || document.querySelector('#heatmap [data-layer="1"][data-position="1"]')?.dataset.tokenId === ${JSON.stringify(String(logit[1].layers[1].top[0].id))}`);
    await waitUntil(page, `document.getElementById('status').textContent !== 'running\u2026'`);
    assert.deepEqual(await grid(), rowMajor(logit));

    // attribution of the selected cell's position: the parts `lens attribute --json` prints
    await page.getByLabel('Attribution', { exact: true }).check();
    await page.locator('#heatmap [role=gridcell][data-layer="1"][data-position="2"]').click();
    await waitUntil(page, `document.querySelectorAll('#attribution tr.part').length > 0`);
    const [expected] = await cliRecords(['attribute', '--position', '2', P]) as unknown as { position: number; target: { text: string }; value: number; parts: { name: string; layer: number | null; value: number }[] }[];
    const parts = await page.evaluate<{ name: string; layer: string; value: number }[]>(`
      Array.from(document.querySelectorAll('#attribution tr.part')).map((r) => ({ name: r.dataset.name, layer: r.dataset.layer, value: Number(r.dataset.value) }))`);
    assert.deepEqual(parts, expected.parts.map((p) => ({ name: p.name, layer: p.layer === null ? '' : String(p.layer), value: p.value })));
    assert.match(await page.locator('#attribution-title').innerText(), new RegExp(`position 2 .*: ${expected.value.toFixed(3).replace('.', '\\.')}$`));
    assert.equal(new URL(page.url()).searchParams.get('attr'), '1');

    assert.deepEqual(errors, []);
    assert.deepEqual(requests.filter((r) => !r.startsWith(`${served.origin}/`)), []);
  } finally {
    await served.close();
  }
}));
