// The CLI end to end on positions, sub-layers, several-token targets, diff and the defaults that
// follow the prompt; expected values from the independent reference forward pass.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { decodeModel, encodeModel } from '../src/onnx/proto.js';
import { parallelBlocks } from './fixtures/parallel.js';
import { referenceForward, referenceLensSites, referenceLogProb, referenceTargetLogProb } from './reference/gpt2.js';
import { assertClose, assertOneLineError, fixture, runCli, scratchDir, TINY } from './helpers.js';

const { dir: MODEL, weights } = fixture('opset17-flat');
const env = { LENS_CACHE: scratchDir('views-cache'), NO_COLOR: '1' };
const lens = (args: string[]) => runCli(args, { env });
const parse = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as LensRecord);
const SEVEN = 'The most famous sports in USA is'; // 7 tokens

function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i] > v[best]) best = i;
  return best;
}

/**
 * Asserts a human diff table (rows "L00  a  b  difference") shows the expected values per layer: a and
 * b to their 3 decimals, the difference with its sign and to its last shown digit (3 significant).
 */
function assertDiffTable(stdout: string, expected: [number, number][]): void {
  const rows = stdout.split('\n').filter((l) => /^L\d\d /.test(l)).map((l) => l.trim().split(/ +/));
  assert.equal(rows.length, expected.length, `one row per layer:\n${stdout}`);
  // Within half a unit of the last digit shown, plus the lens's own tolerance against the reference.
  const agrees = (shown: string, value: number, tol: number) => {
    const decimals = shown.split('.')[1]?.length ?? 0;
    return Math.abs(Number(shown) - value) <= 0.5 * 10 ** -decimals + tol;
  };
  rows.forEach(([label, a, b, diff], l) => {
    const [ea, eb] = expected[l];
    assert.equal(label, `L0${l}`);
    assert.ok(agrees(a, ea, 1e-4) && agrees(b, eb, 1e-4), `${label}: shown ${a} ${b}, reference ${ea} ${eb}`);
    assert.match(diff, /^[+-]\d/, `${label}: the difference carries its sign: ${diff}`);
    assert.equal(diff[0], ea - eb > 0 ? '+' : '-', `${label}: sign of ${diff}, reference ${ea - eb}`);
    assert.ok(agrees(diff, ea - eb, 2e-4), `${label}: difference shown ${diff}, reference ${ea - eb}`);
  });
}

/** Checks a record's top-1, entropy-free values against the reference at its position. */
function checkRecord(record: LensRecord, raw: boolean, sublayers: boolean): void {
  const ids = record.tokens.map((t) => t.id);
  const expected = referenceLensSites(referenceForward(weights, ids), record.position, raw, sublayers);
  assert.equal(record.layers.length, expected.length);
  record.layers.forEach((layer, s) => {
    assert.equal(layer.top[0].id, argmax(expected[s]), `top-1 at ${layer.site} L${layer.layer} position ${record.position}`);
    assertClose(layer.top[0].logit, expected[s][layer.top[0].id], 1e-4, 'top logit');
    assertClose(layer.top[0].prob, Math.exp(referenceLogProb(expected[s], layer.top[0].id)), 1e-5, 'top prob');
  });
}

test('--position: lists and slices give one record per position, ascending, duplicates dropped, each the reference', async () => {
  // Per prompt (7 and 4 tokens): slices clip to each prompt, negatives count from each prompt's own end.
  const cases: [string, number[], number[]][] = [
    ['-1,0,-1', [0, 6], [0, 3]], ['-4:', [3, 4, 5, 6], [0, 1, 2, 3]], ['2:5', [2, 3, 4], [2, 3]],
    [':', [0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 3]], ['-100:2,-1', [0, 1, 6], [0, 1, 3]],
  ];
  for (const [spec, seven, four] of cases) {
    const r = await lens(['topk', '--model', MODEL, '--json', '-k', '1', `--position=${spec}`, SEVEN, 'Paris is capital of']);
    assert.equal(r.code, 0, r.stderr);
    const records = parse(r.stdout);
    assert.deepEqual(records.map((x) => [x.prompt === SEVEN ? 7 : 4, x.position]), [...seven.map((p) => [7, p]), ...four.map((p) => [4, p])], spec);
    for (const record of records) checkRecord(record, false, false);
  }
});

test('--sublayers: {0,block}, {1,attn}, {1,block}, …; attn entries are the reference resid_mid, un-normalised in --raw', async () => {
  for (const raw of [false, true]) {
    const r = await lens(['prob', '--model', MODEL, '--json', '--sublayers', '--position', '1,-1', '--target-id', '262', ...(raw ? ['--raw'] : []), SEVEN]);
    assert.equal(r.code, 0, r.stderr);
    const records = parse(r.stdout);
    assert.deepEqual(records.map((x) => x.position), [1, 6]);
    for (const record of records) {
      assert.deepEqual(record.layers.map((l) => `${l.layer}${l.site}`), ['0block', '1attn', '1block', '2attn', '2block', '3attn', '3block']);
      checkRecord(record, raw, true);
      assert.equal(record.layers.at(-1)!.kl_to_final, 0);
      assert.ok(record.layers.slice(0, -1).every((l) => l.kl_to_final > 0), 'KL relative to {L,block}');
    }
  }
  const human = await lens(['topk', '--model', MODEL, '--sublayers', '-k', '1', SEVEN]);
  assert.deepEqual(human.stdout.trim().split('\n').slice(1).map((l) => l.split(' ')[0]), ['L00', 'L01a', 'L01', 'L02a', 'L02', 'L03a', 'L03']);
});

test('--layers thins the human rows (the final layer always shown), never the JSON', async () => {
  const rows = async (args: string[]) => (await lens(['topk', '--model', MODEL, '-k', '1', ...args, SEVEN])).stdout.trim().split('\n').slice(1).map((l) => l.split(' ')[0]);
  assert.deepEqual(await rows(['--layers', '::2']), ['L00', 'L02', 'L03']);
  assert.deepEqual(await rows(['--layers', '1']), ['L01', 'L03']);
  assert.deepEqual(await rows(['--layers', '-2:', '--sublayers']), ['L02a', 'L02', 'L03a', 'L03']);
  const json = await lens(['topk', '--model', MODEL, '--json', '--layers', '0', SEVEN]);
  assert.equal(parse(json.stdout)[0].layers.length, 4);
});

test('defaults follow the prompt: prob/rank the distinct top-1 tokens (final first), diff the final top 2; the seed without a prompt', async () => {
  const ids = [464, 749, 5863, 5701, 287, 4916, 318];
  const expected = referenceLensSites(referenceForward(weights, ids), 6, false, false);
  const tops = expected.map(argmax);
  const distinct = [...new Set([...tops].reverse())].slice(0, 3);
  for (const command of ['prob', 'rank']) {
    const r = await lens([command, '--model', MODEL, '--json', SEVEN]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(parse(r.stdout)[0].layers[0].targets.map((t) => t.id), distinct, command);
    const human = await lens([command, '--model', MODEL, SEVEN]);
    assert.match(human.stdout, /targets: the lens's own top-1 tokens at this position/);
  }
  const final = Array.from(expected[3].keys()).sort((a, b) => expected[3][b] - expected[3][a]).slice(0, 2);
  const diff = await lens(['diff', '--model', MODEL, '--json', SEVEN]);
  assert.equal(diff.code, 0, diff.stderr);
  const [record] = parse(diff.stdout);
  assert.deepEqual(record.layers[0].targets.map((t) => t.id), final);
  record.layers.forEach((l, s) => assertClose(l.targets[0].logit - l.targets[1].logit, expected[s][final[0]] - expected[s][final[1]], 1e-4, 'difference'));
  const seed = parse((await lens(['diff', '--model', MODEL, '--json'])).stdout)[0];
  assert.equal(seed.prompt, SEVEN);
  assert.deepEqual(seed.layers[0].targets.map((t) => t.text), [' football', ' baseball']);
  const seedHuman = await lens(['diff', '--model', MODEL]);
  assert.match(seedHuman.stdout, /^logit\(" football"\) − logit\(" baseball"\) by layer$/m);
  assert.match(seedHuman.stdout, /^ +0\.00 [┼┤]/m, 'the zero line is on the chart');
  const seedIds = seed.tokens.map((t) => t.id), [football, baseball] = seed.layers[0].targets.map((t) => t.id);
  const seedLens = referenceLensSites(referenceForward(weights, seedIds), seed.position, false, false);
  assertDiffTable(seedHuman.stdout, seedLens.map((logits) => [logits[football], logits[baseball]]));
  assert.match(seedHuman.stdout, /targets: the default \(no prompt given\)/);
});

test('diff of several-token targets charts the log-probability difference', async () => {
  const r = await lens(['diff', '--model', MODEL, '--target', ' footballers', '--target', ' the', SEVEN]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^log P\(" footballers"\) − log P\(" the"\) by layer$/m);
  assert.match(r.stdout, /" footballers" \(2 tokens " football" "ers": P is their product\)/);
  // The tokens from the JSON record of the same run (the tokenizer's, not values); log P from the reference.
  const [record] = parse((await lens(['diff', '--model', MODEL, '--json', '--target', ' footballers', '--target', ' the', SEVEN])).stdout);
  const prompt = record.tokens.map((t) => t.id);
  const [pieces, the] = record.layers[0].targets.map((t) => t.pieces.map((p) => p.id));
  assert.deepEqual(pieces.length, 2);
  const a = referenceTargetLogProb(weights, prompt, pieces, false, false), b = referenceTargetLogProb(weights, prompt, the, false, false);
  assertDiffTable(r.stdout, a.map((x, l) => [x, b[l]]));
});

test('usage errors of the views: one line, exit 2', async () => {
  const parallel = join(scratchDir('parallel'), 'model');
  cpSync(MODEL, parallel, { recursive: true });
  const onnx = join(parallel, 'onnx', 'model.onnx');
  writeFileSync(onnx, encodeModel(parallelBlocks(decodeModel(readFileSync(onnx)))));
  const cases: [string[], RegExp][] = [
    [['topk', '--model', MODEL, '--position', '9', 'Paris'], /--position 9 is outside the prompt's 1 tokens/],
    [['topk', '--model', MODEL, '--position', '0,9', 'Paris is'], /--position 0,9: 9 is outside the prompt's 2 tokens/],
    [['topk', '--model', MODEL, '--position', '5:2', SEVEN], /--position 5:2 selects no position of the prompt's 7 tokens/],
    [['topk', '--model', MODEL, '--position', '7:', SEVEN], /selects no position/],
    [['topk', '--model', MODEL, '--position', 'x', SEVEN], /--position: "x" is not an index or slice/],
    [['topk', '--model', MODEL, '--position', '::2', SEVEN], /--position: "::2" is not an index or slice/],
    [['topk', '--model', MODEL, '--layers', '9', SEVEN], /--layers 9 is outside the layers 0\.\.3/],
    [['topk', '--model', MODEL, '--layers', '::0', SEVEN], /step cannot be zero/],
    [['prob', '--model', MODEL, '--target', ' footballers', '--position', '0', SEVEN], /" footballers" is 2 tokens: several-token targets are read at the prompt's last position only/],
    [['prob', '--model', MODEL, '--target', ' footballers', '--position', ':', SEVEN], /last position only/],
    [['prob', '--model', MODEL, '--target', ' Eiffel Tower', 'word '.repeat(TINY.nPositions - 2).trim()], /prompt and target are 65 tokens; .* reads at most 64/],
    [['diff', '--model', MODEL, '--target', ' a', SEVEN], /1 target given; this command compares exactly 2/],
    [['diff', '--model', MODEL, '--target', ' a', '--target', ' b', '--target-id', '3', SEVEN], /3 targets given/],
    [['topk', '--model', parallel, '--sublayers', SEVEN], /--sublayers: .* no residual between attention and MLP/],
  ];
  for (const [args, pattern] of cases) assertOneLineError(await lens(args), 2, pattern);
  // The parallel model itself still works without --sublayers.
  const ok = await lens(['topk', '--model', parallel, '--json', SEVEN]);
  assert.equal(ok.code, 0, ok.stderr);
});
