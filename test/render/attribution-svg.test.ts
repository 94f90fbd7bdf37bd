// The attribution figure: its exact SVG (colours off) for a hand-made record whose bar lengths and
// cell positions are worked out in the comments, the diverging fill, and the HTML page in chromium.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { AttributionRecord } from '../../src/lens/attribution.js';
import { renderHtml } from '../../src/render/html.js';
import { renderAttributionSvg, signedColor, svgDocument } from '../../src/render/svg.js';
import { inBrowser, openPage } from '../browser.js';
import { scratchDir } from '../helpers.js';
import { parseXml } from './xml.js';

/** One layer, two heads: embed +2, attn −1 (= −1.5 + 0.25 + bias 0.25), mlp +0.5, bias +0.25; sum 1.75. */
function record(): AttributionRecord {
  return {
    model: 'tiny', prompt: 'a b', tokens: [{ id: 1, text: 'a' }, { id: 2, text: ' b' }], position: 1,
    target: { id: 3, text: ' c' }, versus: null, value: 1.75,
    parts: [{ name: 'embed', layer: 0, value: 2 }, { name: 'attn', layer: 1, value: -1 }, { name: 'head', layer: 1, head: 0, value: -1.5 },
      { name: 'head', layer: 1, head: 1, value: 0.25 }, { name: 'attn_bias', layer: 1, value: 0.25 }, { name: 'mlp', layer: 1, value: 0.5 }, { name: 'bias', layer: null, value: 0.25 }],
  };
}

// The largest |part| (embed, 2) fills the 250 px half-axis right of the zero line at x 440: attn −1 is
// 125 px ending at it (x 315), mlp 62.5 px, bias 31.25 px. Rows of 18 px from y 96, bars 12 px high 3 px
// in; the grid 56 px under the last row (96 + 4·18 = 168 → 224), cells 64 × 24 from x 104; height
// 224 + 20 + 24 + 36 = 304.
const EXPECTED = `<svg xmlns="http://www.w3.org/2000/svg" width="720" height="304" viewBox="0 0 720 304" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12" class="lens-attribution">
<rect width="720" height="304" fill="#ffffff"/>
<text x="360" y="24" text-anchor="middle" font-size="16" font-weight="bold" class="title">&quot;a b&quot;</text>
<text x="360" y="44" text-anchor="middle" fill="#555555">position 1 &quot; b&quot; · direct logit attribution · tiny</text>
<text x="360" y="62" text-anchor="middle" class="explained">logit(&quot; c&quot;) = +1.750 (the model&#39;s own) · sum of the parts +1.750</text>
<text x="315" y="88" text-anchor="middle" fill="#555555">◀ negative</text>
<text x="565" y="88" text-anchor="middle" fill="#555555">positive ▶</text>
<g class="parts" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="11">
<g class="part" data-name="embed" data-layer="0" data-value="2">
<text x="96" y="109" text-anchor="end">embed</text>
<text x="170" y="109" text-anchor="end">+2.000</text>
<rect x="440" y="99" width="250" height="12" fill="#888888"><title>embed: +2.000</title></rect>
</g>
<g class="part" data-name="attn" data-layer="1" data-value="-1">
<text x="96" y="127" text-anchor="end">L01 attn</text>
<text x="170" y="127" text-anchor="end">−1.000</text>
<rect x="315" y="117" width="125" height="12" fill="#888888"><title>L01 attn: −1.000</title></rect>
</g>
<g class="part" data-name="mlp" data-layer="1" data-value="0.5">
<text x="96" y="145" text-anchor="end">L01 mlp</text>
<text x="170" y="145" text-anchor="end">+0.500</text>
<rect x="440" y="135" width="62.5" height="12" fill="#888888"><title>L01 mlp: +0.500</title></rect>
</g>
<g class="part" data-name="bias" data-layer="" data-value="0.25">
<text x="96" y="163" text-anchor="end">bias</text>
<text x="170" y="163" text-anchor="end">+0.250</text>
<rect x="440" y="153" width="31.25" height="12" fill="#888888"><title>bias: +0.250</title></rect>
</g>
</g>
<line class="zero-line" x1="440" x2="440" y1="94" y2="170" stroke="#000000"/>
<text x="104" y="198" fill="#555555">heads: each head&#39;s direct part (z_h · W_O[h] through the frozen norm); they and the bias add up to the layer&#39;s attn</text>
<g class="heads" font-family="DejaVu Sans Mono, Menlo, Consolas, monospace" font-size="10" text-anchor="middle">
<text x="136" y="218">h0</text>
<text x="200" y="218">h1</text>
<text x="264" y="218">bias</text>
<text x="96" y="240" text-anchor="end" font-size="11">L01</text>
<g class="head" data-layer="1" data-head="0" data-value="-1.5">
<rect x="104" y="224" width="63" height="23" fill="#ffffff" stroke="#cccccc"><title>L01 attn head 0: −1.500</title></rect>
<text x="136" y="240">−1.500</text>
</g>
<g class="head" data-layer="1" data-head="1" data-value="0.25">
<rect x="168" y="224" width="63" height="23" fill="#ffffff" stroke="#cccccc"><title>L01 attn head 1: +0.250</title></rect>
<text x="200" y="240">+0.250</text>
</g>
<g class="attn-bias" data-layer="1" data-value="0.25">
<rect x="232" y="224" width="63" height="23" fill="#ffffff" stroke="#cccccc"><title>L01 attn_bias: +0.250</title></rect>
<text x="264" y="240">+0.250</text>
</g>
</g>
</svg>`;

test('attribution SVG (colours off): signed bars either side of the zero line, signed labels, the head grid with a title per cell', () => {
  const svg = renderAttributionSvg(record(), { color: false });
  assert.equal(svg, EXPECTED);
  parseXml(svgDocument(svg));
});

test('attribution SVG without heads has no grid; with colours the bars are green (positive) and red (negative)', () => {
  const plain = { ...record(), parts: record().parts.filter((p) => p.name !== 'head' && p.name !== 'attn_bias') };
  const svg = renderAttributionSvg(plain);
  assert.doesNotMatch(svg, /class="heads"/);
  assert.match(svg, /height="204"/); // 168 + 36 below the last row
  assert.match(svg, /<rect x="315" y="117" width="125" height="12" fill="#d62728">/);
  assert.match(svg, /<rect x="440" y="99" width="250" height="12" fill="#2ca02c">/);
});

test('signedColor: white at 0, the full green or red at ±1, half-way mixes', () => {
  assert.equal(signedColor(0), 'rgb(255,255,255)');
  assert.equal(signedColor(1), 'rgb(44,160,44)');
  assert.equal(signedColor(-1), 'rgb(214,39,40)');
  // 255 + (214 − 255)/2 = 234.5, 255 + (39 − 255)/2 = 147, 255 + (40 − 255)/2 = 147.5
  assert.equal(signedColor(-0.5), 'rgb(235,147,148)');
  assert.equal(signedColor(3), 'rgb(44,160,44)');
});

test('attribution HTML in headless chromium: hovering a head shows its value; nothing fetched, no errors', (t) => inBrowser(t, async (context) => {
  const dir = scratchDir('attribution-html');
  const file = join(dir, 'page.html');
  writeFileSync(file, renderHtml('attribute', [{ kind: 'attribute', record: record() }]));
  const { page, errors, requests } = await openPage(context, pathToFileURL(file).href);
  assert.equal(await page.locator('svg.lens-attribution').count(), 1);
  assert.equal(await page.locator('svg.lens-attribution g.heads').count(), 0, 'the page draws the grid as a table, not in the SVG');
  assert.equal(await page.locator('td.cell').count(), 3);
  const tip = page.locator('#lens-tip');
  await page.locator('td.cell[data-layer="1"][data-head="0"]').hover();
  await tip.waitFor({ state: 'visible' });
  assert.match(await tip.innerText(), /L01 attn head 0\s+−1\.500 of \+1\.750/);
  await page.mouse.move(1, 1);
  await tip.waitFor({ state: 'hidden' });
  await page.locator('td.cell[data-layer="1"]:not([data-head])').hover();
  await tip.waitFor({ state: 'visible' });
  assert.match(await tip.innerText(), /L01 attn_bias\s+\+0\.250/);
  assert.deepEqual(errors, []);
  assert.deepEqual(requests, [pathToFileURL(file).href]);
}));
