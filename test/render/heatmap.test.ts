// The terminal heatmap: exact text with colours off and on, bands that fit the width.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { renderHeatmap } from '../../src/render/heatmap.js';
import { buildGrid, cutQuoted } from '../../src/render/grid.js';
import { palette } from '../../src/render/style.js';
import { displayWidth } from '../../src/render/tokens.js';
import { heatRecords } from './records.js';

const plain = palette(false);

const three = () => heatRecords('Paris is capital', ['Paris', ' is', ' capital'], [
  [[' the', 0.5, 2.5, 1.25], ['\n', 0.125, 10.5, 0.5], [' France', 1, 0, 0]],
  [[' a', 0.25, 3, 2], [' Schwarzenegger', 0.375, 1.5, 0.25], [' capital', 0.75, 0.75, 0]],
  [[' of', 0.0625, 4, 3.5], [' of', 0.875, 0.5, 1], [' of', 0.96875, 0.25, 0]],
]);

test('heatmap: one row per layer, one column per position headed by its token; numbers with colours off', () => {
  assert.equal(renderHeatmap(three(), 'prob', plain, false, { width: 100 }), [
    '"Paris is capital"  positions 0–2 · lens norm · tiny',
    'top-1 token by layer and position, coloured by probability of the top-1 token',
    '',
    '     0              1              2',
    '     "Paris"        " is"          " capital"',
    'L00  " the"     50% " a"       25% " of"       6%',
    'L01  "\\n"       13% " Schwa…"  38% " of"      88%',
    'L02  " France" 100% " capit…"  75% " of"      97%',
    '',
    'cells: top-1 token and P(top-1) in %; scale 0% … 100%',
  ].join('\n'));
});

test('heatmap --by entropy and --by kl: values in nats, scaled to the largest shown', () => {
  const entropy = renderHeatmap(three(), 'entropy', plain, false, { width: 100 }).split('\n');
  assert.equal(entropy[1], 'top-1 token by layer and position, coloured by entropy of the layer (nats)');
  assert.deepEqual(entropy.slice(5, 8), [
    'L00  " the"    2.50 " a"      3.00 " of"     4.00',
    'L01  "\\n"      10.5 " Schwa…" 1.50 " of"     0.50',
    'L02  " France" 0.00 " capit…" 0.75 " of"     0.25',
  ]);
  assert.equal(entropy.at(-1), 'cells: top-1 token and entropy in nats; scale 0.00 … 10.5');
  const kl = renderHeatmap(three(), 'kl', plain, false, { width: 100 }).split('\n');
  assert.equal(kl[5], 'L00  " the"    1.25 " a"      2.00 " of"     3.50');
  assert.equal(kl.at(-1), 'cells: top-1 token and KL to final in nats; scale 0.00 … 3.50');
});

test('heatmap: a grid wider than the terminal wraps into bands of positions, each with its headers', () => {
  const lines = renderHeatmap(three(), 'prob', plain, false, { width: 40 }).split('\n');
  assert.deepEqual(lines.slice(2), [
    '',
    '     0              1',
    '     "Paris"        " is"',
    'L00  " the"     50% " a"       25%',
    'L01  "\\n"       13% " Schwa…"  38%',
    'L02  " France" 100% " capit…"  75%',
    '',
    '     2',
    '     " capital"',
    'L00  " of"       6%',
    'L01  " of"      88%',
    'L02  " of"      97%',
    '',
    'cells: top-1 token and P(top-1) in %; scale 0% … 100%',
  ]);
  for (const width of [20, 34, 35, 49, 50, 100]) {
    const text = renderHeatmap(three(), 'prob', plain, false, { width });
    const widest = Math.max(...text.split('\n').slice(2, -1).map(displayWidth));
    assert.ok(widest <= Math.max(width, 19), `width ${width}: a line of ${widest}`);
  }
});

test('heatmap: attn sites get their own rows, labelled L01a', () => {
  const records = heatRecords('x', ['x'], [[[' a', 0.5, 1, 1], [' b', 0.25, 1, 1], [' c', 0.75, 1, 1], [' d', 1, 1, 0]]],
    ['block', 'attn', 'block', 'block'], [0, 1, 1, 2]);
  const lines = renderHeatmap(records, 'prob', plain, false, { width: 100 }).split('\n');
  assert.equal(lines[0], '"x"  position 0 · lens norm · tiny');
  assert.deepEqual(lines.slice(5, 9), [
    'L00   " a"       50%',
    'L01a  " b"       25%',
    'L01   " c"       75%',
    'L02   " d"      100%',
  ]);
});

test('heatmap: colours on a terminal: each cell on its step of the scale, a swatch per step in the legend', () => {
  // The scale's eight xterm-256 backgrounds, dark to light (viridis); dark text (16) on the light half, white (231) on the dark.
  const STEP_BACKGROUNDS = [53, 60, 24, 30, 36, 71, 113, 184];
  const cell = (step: number, text: string) => `\x1b[48;5;${STEP_BACKGROUNDS[step]}m\x1b[38;5;${step >= 4 ? 16 : 231}m${text}\x1b[0m`;
  const bold = (s: string) => `\x1b[1m${s}\x1b[22m`, dim = (s: string) => `\x1b[2m${s}\x1b[22m`;
  // Step = ⌊8p⌋ (p = 1 in the top step): 50% → 4, 25% → 2, 6.25% → 0, 12.5% → 1, 37.5% → 3, 87.5% and up → 7, 75% → 6.
  assert.equal(renderHeatmap(three(), 'prob', palette(true), true, { width: 100 }), [
    `${bold('"Paris is capital"')}  ${dim('positions 0–2 · lens norm · tiny')}`,
    dim('top-1 token by layer and position, coloured by probability of the top-1 token'),
    '',
    `     ${dim('0')}              ${dim('1')}              ${dim('2')}`,
    `     ${bold('"Paris"')}        ${bold('" is"')}          ${bold('" capital"')}`,
    `${bold('L00')}  ${cell(4, '" the"     50%')} ${cell(2, '" a"       25%')} ${cell(0, '" of"       6%')}`,
    `${bold('L01')}  ${cell(1, '"\\n"       13%')} ${cell(3, '" Schwa…"  38%')} ${cell(7, '" of"      88%')}`,
    `${bold('L02')}  ${cell(7, '" France" 100%')} ${cell(6, '" capit…"  75%')} ${cell(7, '" of"      97%')}`,
    '',
    `${dim('cells: top-1 token and P(top-1) in %; colour')} ${['0%', '13%', '25%', '38%', '50%', '63%', '75%', '88%'].map((v, s) => cell(s, ` ${v}+ `)).join('')}`,
  ].join('\n'));
});

test('tokens are cut to a fixed width with both quotes kept; the grid checks its records', () => {
  assert.equal(cutQuoted(' Schwarzenegger', 9), '" Schwa…"');
  assert.equal(cutQuoted(' of', 9), '" of"');
  assert.equal(cutQuoted('日本語日本語', 9), '"日本語…"');
  assert.equal(cutQuoted('\u001b[31m', 9), '"\\u001b…"');
  for (const s of ['abcdefghijkl', '日本語日本語', '\u202e\u202e\u202e']) assert.ok(displayWidth(cutQuoted(s, 9)) <= 9);
  assert.throws(() => buildGrid([], 'prob'), RangeError);
  const mixed = [...three().slice(0, 1), ...heatRecords('y', ['y'], [[[' a', 1, 1, 1]]]).map((r) => ({ ...r, position: 1 }))];
  assert.throws(() => buildGrid(mixed, 'prob'), /same layers/);
});
