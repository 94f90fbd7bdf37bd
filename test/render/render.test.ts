import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { LensRecord } from '../../src/lens/record.js';
import { renderTopk } from '../../src/render/topk.js';
import { renderDiffChart, renderProbChart, renderRankChart } from '../../src/render/chart.js';
import { colorEnabled, palette } from '../../src/render/style.js';
import { siteLabel, type View } from '../../src/render/view.js';
import { displayWidth, formatProb, quoteToken } from '../../src/render/tokens.js';

const plain: View = { c: palette(false), color: false };

function record(): LensRecord {
  const layer = (l: number, top: [string, number][], prob: number, rank: number) => ({
    layer: l, site: 'block' as const, entropy: 1, kl_to_final: 0.5,
    top: top.map(([token, p], i) => ({ id: i, token, prob: p, logit: 1 })),
    targets: [{ text: ' football', id: 4346, prob, logit: 0, rank, logprob: Math.log(prob), pieces: [{ id: 4346, text: ' football', prob, logit: 0, rank }], first_top1: null, first_top10: null }],
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
});

// ANSI SGR codes written out: bold 1 (off 22), dim 2 (off 22), green 32, yellow 33, cyan 36 (colour off 39), reset 0.
const bold = (s: string) => `\x1b[1m${s}\x1b[22m`;
const dim = (s: string) => `\x1b[2m${s}\x1b[22m`;
const green = (s: string) => `\x1b[32m${s}\x1b[39m`;
const yellow = (s: string) => `\x1b[33m${s}\x1b[39m`;
/** asciichart colours each character of a series on its own, closing with a reset. */
const chartColor = (code: string, chars: string) => [...chars].map((ch) => `\x1b[${code}m${ch}\x1b[0m`).join('');

test('topk table in colour: P ≥ 50% bold green, ≥ 20% green, ≥ 5% yellow, below dim; labels bold; the header bold and dim', () => {
  // palette(true) is chalk at level 1 (16 colours), set explicitly: the result does not depend on the terminal.
  assert.equal(renderTopk(record(), { c: palette(true), color: true }), [
    `${bold('"The sport is"')}  ${dim('position 2 " is" · lens norm · tiny')}`,
    `${bold('L00')}  ${bold(green('" the"      50.0%'))}   ${dim('"\\n"       2e-5')}`,
    `${bold('L01')}  ${green('" football" 25.0%')}   ${yellow('" a"      12.5%')}`,
    `${bold('L02')}  ${bold(green('" football" 75.0%'))}   ${yellow('" soccer"  6.3%')}`,
  ].join('\n'));
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

/** A record with sub-layer sites and two targets whose logits are given per entry. */
function subRecord(): LensRecord {
  const t = (text: string, id: number, logit: number) => ({ text, id, prob: 0.1, logit, rank: 3, logprob: Math.log(0.1), pieces: [{ id, text, prob: 0.1, logit, rank: 3 }], first_top1: null, first_top10: null });
  const entry = (layer: number, site: 'block' | 'attn', a: number, b: number) => ({
    layer, site, entropy: 1, kl_to_final: 0.5, top: [{ id: 1, token: ' x', prob: 0.5, logit: 2 }], targets: [t(' Paris', 6342, a), t(' London', 3576, b)],
  });
  return {
    model: 'tiny', mode: 'norm', prompt: 'The capital is', position: 2,
    tokens: [{ id: 464, text: 'The' }, { id: 3139, text: ' capital' }, { id: 318, text: ' is' }],
    layers: [entry(0, 'block', 0, 1), entry(1, 'attn', 1, 0.5), entry(1, 'block', 2.5, 0.5), entry(2, 'attn', 3, -1), entry(2, 'block', 4, -2)],
  };
}

test('diff chart: the difference per layer and sub-layer, zero on its own row, a table, where the targets came from', () => {
  assert.equal(renderDiffChart(subRecord(), { ...plain, targetOrigin: 'lens-top2' }), [
    '"The capital is"  position 2 " is" · lens norm · tiny',
    'logit(" Paris") − logit(" London") by layer',
    '    +6.00 ┤               ╭ ',
    '    +5.25 ┤             ╭─╯ ',
    '    +4.50 ┤            ╭╯   ',
    '    +3.75 ┤          ╭─╯    ',
    '    +3.00 ┤         ╭╯      ',
    '    +2.25 ┤       ╭─╯       ',
    '    +1.50 ┤     ╭─╯         ',
    '    +0.75 ┤   ╭─╯           ',
    '     0.00 ┤─╭─╯──────────── ',
    '    -0.75 ┤─╯               ',
    '    -1.50 ┤                 ',
    '          0   1a  1   2a  2',
    '          layer',
    '── " Paris" (id 6342) minus " London" (id 3576); the flat line at 0.00: the two are equal',
    "targets: the final layer's top 2 at this position",
    '',
    '     logit " Paris"  logit " London"  difference',
    'L00           0.000            1.000       -1.00',
    'L01a          1.000            0.500       +0.50',
    'L01           2.500            0.500       +2.00',
    'L02a          3.000           -1.000       +4.00',
    'L02           4.000           -2.000       +6.00',
  ].join('\n'));
  assert.throws(() => renderDiffChart(record(), plain), /exactly two targets/);
});

test('sub-layer rows are labelled L01a / L01, and --layers keeps every site of the kept layers', () => {
  assert.equal(renderTopk(subRecord(), { ...plain, layers: [0, 2] }), [
    '"The capital is"  position 2 " is" · lens norm · tiny',
    'L00   " x" 50.0%',
    'L02a  " x" 50.0%',
    'L02   " x" 50.0%',
  ].join('\n'));
  assert.equal(siteLabel({ layer: 3, site: 'attn' }, 12), 'L03a');
  assert.equal(siteLabel({ layer: 7, site: 'block' }, 120), 'L007');
});

test('several-token targets: prob says P is the product, rank says it is the first token\'s', () => {
  const r = subRecord();
  for (const l of r.layers) {
    l.targets[0] = { text: ' Eiffel Tower', id: 412, prob: 0.01, logit: 1, rank: 40, logprob: Math.log(0.01),
      pieces: [{ id: 412, text: ' E', prob: 0.1, logit: 1, rank: 40 }, { id: 733, text: 'iff', prob: 0.1, logit: 1, rank: 2 }], first_top1: null, first_top10: null };
  }
  const rank = renderRankChart(r, { ...plain, layers: [2] }).split('\n');
  assert.ok(rank.includes('── " Eiffel Tower" (rank of its first token " E", id 412)   ━━ " London" (id 3576)'));
  assert.deepEqual(rank.slice(-3), ['     " Eiffel Tower"  " London"', 'L02a              40          3', 'L02               40          3']);
  assert.ok(rank.includes('          2a  2'));
  const prob = renderProbChart(r, plain).split('\n');
  assert.ok(prob.includes('── " Eiffel Tower" (2 tokens " E" "iff": P is their product)   ━━ " London" (id 3576)'));
  assert.equal(prob.at(-1), 'L02             1.0%      10.0%');
  const diff = renderDiffChart(r, plain);
  assert.match(diff, /^log P\(" Eiffel Tower"\) − log P\(" London"\) by layer$/m);
  assert.match(diff, /^L02 +-4\.605 +-2\.303 +-2\.30$/m);
});

test('diff chart in colour: the difference in the first series colour (cyan), the zero line dim, the table\'s header dim and labels bold', () => {
  const cyan = (chars: string) => chartColor('36', chars), faint = (chars: string) => chartColor('2', chars);
  assert.equal(renderDiffChart(subRecord(), { c: palette(true), color: true }), [
    `${bold('"The capital is"')}  ${dim('position 2 " is" · lens norm · tiny')}`,
    dim('logit(" Paris") − logit(" London") by layer'),
    `    +6.00 ┤               ${cyan('╭')} `,
    `    +5.25 ┤             ${cyan('╭─╯')} `,
    `    +4.50 ┤            ${cyan('╭╯')}   `,
    `    +3.75 ┤          ${cyan('╭─╯')}    `,
    `    +3.00 ┤         ${cyan('╭╯')}      `,
    `    +2.25 ┤       ${cyan('╭─╯')}       `,
    `    +1.50 ┤     ${cyan('╭─╯')}         `,
    `    +0.75 ┤   ${cyan('╭─╯')}           `,
    // The zero line is drawn first, the difference over it (it crosses zero between L00 and L01a).
    `     0.00 ${faint('┤─')}${cyan('╭─╯')}${faint('────────────')} `,
    `    -0.75 ${cyan('┤─╯')}               `,
    '    -1.50 ┤                 ',
    '          0   1a  1   2a  2',
    '          layer',
    // The legend's mark is one coloured run.
    '\x1b[36m──\x1b[0m " Paris" (id 6342) minus " London" (id 3576); the flat line at 0.00: the two are equal',
    '',
    dim('     logit " Paris"  logit " London"  difference'),
    `${bold('L00  ')}         0.000            1.000       -1.00`,
    `${bold('L01a ')}         1.000            0.500       +0.50`,
    `${bold('L01  ')}         2.500            0.500       +2.00`,
    `${bold('L02a ')}         3.000           -1.000       +4.00`,
    `${bold('L02  ')}         4.000           -2.000       +6.00`,
  ].join('\n'));
});
