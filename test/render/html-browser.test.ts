// The HTML page in a real browser: Debian's chromium, headless, driven by playwright-core (never a
// browser download). Missing browser or driver: skipped on a workstation, a failure under CI=true.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { renderHtml } from '../../src/render/html.js';
import type { LensRecord } from '../../src/lens/record.js';
import { fixture, runCli, scratchDir } from '../helpers.js';
import { sampleViews } from './records.js';
import { inBrowser, openPage } from '../browser.js';

/** A probability as the page prints it ("12.3%", "100%", "2e-5") back to the interval it stands for. */
function probRange(text: string): [number, number] {
  if (text.endsWith('%')) {
    const p = Number(text.slice(0, -1)) / 100;
    return [p - 0.0005, p + 0.0005];
  }
  const p = Number(text);
  return [p * 0.5, p * 1.5]; // one significant digit
}

test('HTML page in headless chromium: no console errors, nothing fetched, hover and tap show a cell\'s top-k', (t) => inBrowser(t, async (context) => {
  const dir = scratchDir('html-browser');
  const file = join(dir, 'page.html');
  writeFileSync(file, renderHtml('heatmap', sampleViews()));
  const { page, errors, requests } = await openPage(context, pathToFileURL(file).href);
  const tip = page.locator('#lens-tip');
  assert.equal(await page.locator('td.cell').count(), 9);
  await page.locator('td.cell[data-row="L01"][data-position="2"]').hover();
  await tip.waitFor({ state: 'visible' });
  const hovered = await tip.innerText();
  assert.match(hovered, /L01 · position 2 " capital"/);
  assert.match(hovered, /" <&>"\s+87\.5%/);
  assert.match(hovered, /" b"\s+43\.8%/);
  assert.match(hovered, /target " football"\s+1\.0%\s+rank 12/);
  await page.screenshot({ path: join(dir, 'hover.png') }); // (a full-page shot resizes the view and loses the pointer)
  await page.mouse.move(1, 1); // off the grid: the tip goes
  await tip.waitFor({ state: 'hidden' });
  await page.locator('td.cell[data-row="L00"][data-position="0"]').tap();
  await tip.waitFor({ state: 'visible' });
  assert.match(await tip.innerText(), /L00 · position 0 "Paris"[\s\S]*" the"\s+50\.0%/);
  await page.screenshot({ path: join(dir, 'tap.png'), fullPage: true });
  assert.deepEqual(errors, []);
  assert.deepEqual(requests, [pathToFileURL(file).href], 'the page fetches nothing');
  for (const shot of ['hover.png', 'tap.png']) assert.deepEqual([...readFileSync(join(dir, shot)).subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
  t.diagnostic(`screenshots in ${dir}`);
}));

test('lens heatmap --html in headless chromium: a hovered cell shows the JSON record\'s top-k and target', (t) => inBrowser(t, async (context) => {
  const dir = scratchDir('html-cli');
  const file = join(dir, 'heatmap.html');
  const r = await runCli(['heatmap', '--model', fixture('opset14-merged').dir, '--json', '-k', '3', '--target', ' football', '--html', file, 'Paris is capital of'],
    { env: { LENS_CACHE: scratchDir('html-cli-cache'), NO_COLOR: '1' } });
  assert.equal(r.code, 0, r.stderr);
  const records = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as LensRecord);
  const { page, errors, requests } = await openPage(context, pathToFileURL(file).href);
  assert.equal(await page.locator('td.cell').count(), 4 * records.length);
  const record = records[2];
  const layer = record.layers[1];
  await page.locator(`td.cell[data-row="L01"][data-position="${record.position}"]`).hover();
  const tip = page.locator('#lens-tip');
  await tip.waitFor({ state: 'visible' });
  const lines = (await tip.innerText()).split('\n').map((l) => l.trim().replace(/\s+/g, ' '));
  assert.equal(lines[0], `L01 · position 2 " capital"`);
  // Each entry: the token (JSON quoting, where it is plain ASCII) and a probability that rounds from the record's.
  const entries = [...layer.top.map((e) => ({ token: e.token, prob: e.prob, prefix: '' })), ...layer.targets.map((e) => ({ token: e.text, prob: e.prob, prefix: 'target ' }))];
  assert.equal(lines.length, 1 + entries.length);
  entries.forEach((e, i) => {
    const m = /^(target )?(".*") (\S+)(?: rank (\d+) logit (\S+))?$/.exec(lines[1 + i]);
    assert.ok(m && (m[1] ?? '') === e.prefix, lines[1 + i]);
    if (/^[ -~]*$/.test(e.token)) assert.equal(m![2], JSON.stringify(e.token));
    const [lo, hi] = probRange(m![3]);
    assert.ok(e.prob >= lo && e.prob <= hi, `${lines[1 + i]}: ${e.prob}`);
  });
  const target = /rank (\d+) logit (\S+)$/.exec(lines.at(-1)!)!;
  assert.equal(Number(target[1]), layer.targets[0].rank);
  assert.ok(Math.abs(Number(target[2]) - layer.targets[0].logit) <= 0.0005);
  await page.screenshot({ path: join(dir, 'heatmap.png') });
  assert.deepEqual(errors, []);
  assert.deepEqual(requests, [pathToFileURL(file).href]);
  t.diagnostic(`screenshot ${join(dir, 'heatmap.png')}`);
}));
