// lens heatmap, --svg and --html end to end on a fixture model: what the grid shows is what the
// JSON says (and its top-1 what the reference forward pass ranks first); files only where asked.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { referenceForward, referenceLens } from './reference/gpt2.js';
import { assertOneLineError, fixture, runCli, scratchDir } from './helpers.js';
import { findAll, parseXml } from './render/xml.js';

const { dir: MODEL, weights } = fixture('opset14-merged');
const env = { LENS_CACHE: scratchDir('figures-cache'), NO_COLOR: '1' };
const lens = (args: string[]) => runCli(args, { env });
const parse = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as LensRecord);
const PROMPT = 'Paris is capital of France';

test('heatmap --json: one record per position, ascending; each top-1 is the reference argmax', async () => {
  const r = await lens(['heatmap', '--model', MODEL, '--json', PROMPT, 'Alan Turing was a']);
  assert.equal(r.code, 0, r.stderr);
  const records = parse(r.stdout);
  assert.deepEqual(records.map((x) => [x.prompt, x.position]), [
    ...[0, 1, 2, 3, 4].map((p) => [PROMPT, p]), ...[0, 1, 2, 3].map((p) => ['Alan Turing was a', p]),
  ]);
  for (const record of records.slice(0, 5)) {
    const ref = referenceLens(referenceForward(weights, record.tokens.map((t) => t.id)), record.position, false);
    for (const layer of record.layers) {
      const logits = ref[layer.layer];
      const argmax = Array.from(logits.keys()).reduce((a, b) => (logits[b] > logits[a] ? b : a), 0);
      assert.equal(layer.top[0].id, argmax, `L${layer.layer} at ${record.position}`);
    }
  }
});

test('heatmap: the grid shows each position\'s top-1 and its probability, with every position\'s token heading its column', async () => {
  const [json, text] = await Promise.all([lens(['heatmap', '--model', MODEL, '--json', PROMPT]), lens(['heatmap', '--model', MODEL, PROMPT])]);
  assert.equal(text.code, 0, text.stderr);
  assert.equal(text.stderr, '');
  assert.doesNotMatch(text.stdout, /\x1b\[/);
  const records = parse(json.stdout);
  const lines = text.stdout.split('\n');
  assert.equal(lines[0], `"${PROMPT}"  positions 0–4 · lens norm · ${MODEL}`);
  // Width 100 when not a terminal: 6 columns of 15 fit, so five positions make one band.
  assert.deepEqual(lines[3].trim().split(/\s+/), ['0', '1', '2', '3', '4']);
  assert.deepEqual(lines[4].trim().split(/\s{2,}/), records.map((r) => `"${r.tokens[r.position].text}"`));
  // A cell: the token quoted, cut to 9 columns as "abcdef…", then the percentage right-aligned in 4.
  // Checked where the token is plain ASCII, whose quoting needs no escapes.
  const cell = (token: string, prob: number) => {
    const quoted = `"${token}"`.length <= 9 ? `"${token}"` : `"${token.slice(0, 6)}…"`;
    return `${quoted.padEnd(9)} ${`${Math.round(prob * 100)}%`.padStart(4)}`;
  };
  let checked = 0;
  for (let l = 0; l <= 3; l++) {
    const row = lines[5 + l];
    assert.ok(row.startsWith(`L0${l}  `), row);
    records.forEach((r, j) => {
      const { token, prob } = r.layers[l].top[0];
      if (!/^[ -!#-\[\]-~]*$/.test(token)) return;
      assert.equal(row.slice(5 + 15 * j, 5 + 15 * j + 14), cell(token, prob), `L0${l} at ${r.position}`);
      checked++;
    });
  }
  assert.ok(checked >= 15, `only ${checked} of 20 cells were plain ASCII`);
  assert.equal(lines.at(-2), 'cells: top-1 token and P(top-1) in %; scale 0% … 100%');
});

test('heatmap --sublayers --by entropy: attn rows between blocks, entropies in nats', async () => {
  const [json, text] = await Promise.all([
    lens(['heatmap', '--model', MODEL, '--json', '--sublayers', 'Paris is']),
    lens(['heatmap', '--model', MODEL, '--sublayers', '--by', 'entropy', 'Paris is'])]);
  assert.equal(text.code, 0, text.stderr);
  const records = parse(json.stdout);
  const rows = text.stdout.split('\n').filter((l) => /^L\d\d/.test(l));
  assert.deepEqual(rows.map((l) => l.split(' ')[0]), ['L00', 'L01a', 'L01', 'L02a', 'L02', 'L03a', 'L03']);
  rows.forEach((row, i) => {
    const values = row.match(/ (\d+\.\d+)(?= |$)/g)!.map(Number);
    assert.deepEqual(values, records.map((r) => Number(r.layers[i].entropy.toFixed(2))));
  });
  const bad = await lens(['heatmap', '--model', MODEL, '--by', 'size', 'x']);
  assertOneLineError(bad, 2, /--by/);
});

test('--svg: one prompt writes FILE, several FILE-1, FILE-2 (paths on stderr); every cell and series is in them', async () => {
  const dir = scratchDir('figures-svg');
  const r = await lens(['heatmap', '--model', MODEL, '--svg', join(dir, 'fig.svg'), '--json', PROMPT, 'Alan Turing was a']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, `lens: wrote ${join(dir, 'fig-1.svg')}\nlens: wrote ${join(dir, 'fig-2.svg')}\n`);
  assert.deepEqual(readdirSync(dir).sort(), ['fig-1.svg', 'fig-2.svg']);
  const records = parse(r.stdout);
  for (const [n, prompt] of [[1, PROMPT], [2, 'Alan Turing was a']] as const) {
    const svg = parseXml(readFileSync(join(dir, `fig-${n}.svg`), 'utf8'));
    const cells = findAll(svg, (e) => e.attrs.class === 'cell');
    const mine = records.filter((x) => x.prompt === prompt);
    assert.equal(cells.length, 4 * mine.length);
    for (const cell of cells) {
      const record = mine.find((x) => x.position === Number(cell.attrs['data-position']))!;
      assert.equal(Number(cell.attrs['data-value']), record.layers[Number(cell.attrs['data-row'].slice(1))].top[0].prob);
    }
  }
  const thin = await lens(['heatmap', '--model', MODEL, '--layers', '2:', '--sublayers', '--svg', join(dir, 'thin.svg'), 'Paris is']);
  assert.equal(thin.code, 0, thin.stderr);
  const thinCells = findAll(parseXml(readFileSync(join(dir, 'thin.svg'), 'utf8')), (e) => e.attrs.class === 'cell');
  assert.deepEqual([...new Set(thinCells.map((c) => c.attrs['data-row']))], ['L02a', 'L02', 'L03a', 'L03'], '--layers thins the figure too');
  for (const command of ['prob', 'rank', 'diff']) {
    const file = join(dir, `${command}.svg`);
    const c = await lens([command, '--model', MODEL, '--svg', file, '--json', PROMPT]);
    assert.equal(c.code, 0, c.stderr);
    assert.equal(c.stderr, `lens: wrote ${file}\n`);
    const [record] = parse(c.stdout);
    const series = findAll(parseXml(readFileSync(file, 'utf8')), (e) => e.attrs.class === 'series');
    assert.equal(series.length, command === 'diff' ? 1 : record.layers[0].targets.length);
    series.forEach((s, j) => {
      const values = findAll(s, (e) => e.name === 'circle').map((p) => Number(p.attrs['data-value']));
      const expected = record.layers.map((l) => (command === 'prob' ? l.targets[j].prob : command === 'rank' ? l.targets[j].rank : l.targets[0].logit - l.targets[1].logit));
      assert.deepEqual(values, expected);
    });
  }
});

test('--html on every command: one self-contained page with every prompt; nothing written on failure or where not asked', async () => {
  const dir = scratchDir('figures-html');
  for (const command of ['topk', 'prob', 'rank', 'diff', 'heatmap']) {
    const file = join(dir, `${command}.html`);
    const r = await lens([command, '--model', MODEL, '--html', file, PROMPT, 'Alan Turing was a']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, `lens: wrote ${file}\n`);
    const page = readFileSync(file, 'utf8');
    assert.equal(page.match(/<section class="prompt">/g)?.length, 2, command);
    assert.doesNotMatch(page, /<link|\ssrc=|\shref=|url\(|@import/);
  }
  const before = readdirSync(MODEL).sort();
  assertOneLineError(await lens(['topk', '--model', MODEL, '--html', join(MODEL, 'page.html'), 'x']), 2, /inside/);
  assertOneLineError(await lens(['heatmap', '--model', MODEL, '--svg', join(env.LENS_CACHE, 'fig.svg'), 'x']), 2, /inside/);
  assertOneLineError(await lens(['topk', '--model', MODEL, '--svg', join(dir, 'x.svg'), 'x']), 2, /unknown option '--svg'/);
  assertOneLineError(await lens(['prob', '--model', MODEL, '--svg', join(dir, 'no', 'x.svg'), 'x']), 2, /does not exist/);
  // A prompt that fails after one that worked: no file at all.
  const late = await lens(['heatmap', '--model', MODEL, '--html', join(dir, 'late.html'), 'fine', '']);
  assert.equal(late.code, 2);
  assert.match(late.stderr, /^lens: empty prompt[^\n]*\n$/);
  assert.equal(existsSync(join(dir, 'late.html')), false);
  assert.deepEqual(readdirSync(MODEL).sort(), before);
});
