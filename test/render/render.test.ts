import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LensRecord } from '../../src/lens/record.js';
import { renderTopk } from '../../src/render/topk.js';
import { renderProbChart, renderRankChart } from '../../src/render/chart.js';
import { colorEnabled, palette } from '../../src/render/style.js';
import type { View } from '../../src/render/view.js';
import { displayWidth, formatProb, quoteToken } from '../../src/render/tokens.js';

const plain: View = { c: palette(false), color: false };

function record(): LensRecord {
  const layer = (l: number, top: [string, number][], prob: number, rank: number) => ({
    layer: l, site: 'block' as const, entropy: 1, kl_to_final: 0.5,
    top: top.map(([token, p], i) => ({ id: i, token, prob: p, logit: 1 })),
    targets: [{ text: ' football', id: 4346, prob, logit: 0, rank, logprob: Math.log(prob), pieces: [{ id: 4346, text: ' football', prob, logit: 0, rank }] }],
  });
  return {
    model: 'tiny', mode: 'norm', prompt: 'The sport is', position: 2,
    tokens: [{ id: 464, text: 'The' }, { id: 6332, text: ' sport' }, { id: 318, text: ' is' }],
    layers: [
      layer(0, [[' the', 0.5], ['\n', 0.00002]], 0.001, 1000),
      layer(1, [[' football', 0.25], [' a', 0.125]], 0.25, 1),
      layer(2, [[' football', 0.75], [' soccer', 0.0625]], 0.75, 1),
    ],
  };
}

test('topk table: one line per layer, quoted tokens, aligned columns', () => {
  assert.equal(renderTopk(record(), plain), [
    '"The sport is"  position 2 " is" · lens norm · tiny',
    'L00  " the"      50.0%   "\\n"       2e-5',
    'L01  " football" 25.0%   " a"      12.5%',
    'L02  " football" 75.0%   " soccer"  6.3%',
  ].join('\n'));
});

test('prob chart: header, chart with layer axis, legend and table; no ANSI with colours off', () => {
  const text = renderProbChart(record(), plain);
  assert.doesNotMatch(text, /\x1b\[/);
  const lines = text.split('\n');
  assert.equal(lines[0], '"The sport is"  position 2 " is" · lens norm · tiny');
  assert.equal(lines[1], 'P(target) by layer');
  assert.ok(lines.some((l) => /^ {10}0 {3}1 {3}2$/.test(l)), 'x axis with layer numbers');
  assert.ok(lines.includes('── " football" (id 4346)'));
  assert.deepEqual(lines.slice(-4), ['     " football"', 'L00         0.1%', 'L01        25.0%', 'L02        75.0%']);
  assert.match(lines[2], /^ +75\.0% [┤┼]/, 'top of the y axis is the largest probability');
});

test('rank chart: log scale with rank 1 at the top', () => {
  const text = renderRankChart(record(), plain);
  const lines = text.split('\n');
  assert.match(lines[2], /^ +1 [┤┼]/);
  assert.ok(lines.some((l) => /^ +1000 [┤┼]/.test(l)), 'rank 1000 at the bottom');
  assert.deepEqual(lines.slice(-3), ['L00         1000', 'L01            1', 'L02            1']);
});

test('colour is on only for a TTY without NO_COLOR', () => {
  assert.equal(colorEnabled({ isTTY: true }, {}), true);
  assert.equal(colorEnabled({ isTTY: false }, {}), false);
  assert.equal(colorEnabled({ isTTY: true }, { NO_COLOR: '1' }), false);
  assert.equal(colorEnabled({ isTTY: true }, { NO_COLOR: '' }), true);
  assert.match(renderTopk(record(), { c: palette(true), color: true }), /\x1b\[/);
});

test('tokens: leading spaces show, control and bidi characters are escaped', () => {
  assert.equal(quoteToken(' the'), '" the"');
  assert.equal(quoteToken('a"b\\'), '"a\\"b\\\\"');
  assert.equal(quoteToken('\u0000\u001b[31m'), '"\\u0000\\u001b[31m"');
  assert.equal(quoteToken('\u202eevil'), '"\\u202eevil"');
  assert.equal(quoteToken('\ud800'), '"\\ud800"');
  assert.equal(displayWidth('日本'), 4);
  assert.equal(displayWidth('e\u0301'), 1);
  assert.equal(formatProb(0.61234), '61.2%');
  assert.equal(formatProb(0.00002), '2e-5');
  assert.equal(formatProb(1), '100%');
});
