// The CLI end to end on a fixture model: the JSON contract, the human output, every error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { logSoftmax, entropy as entropyOf } from '../src/lens/math.js';
import { encodeModel, type Model } from '../src/onnx/proto.js';
import { referenceForward, referenceLens, referenceTargetLogProb } from './reference/gpt2.js';
import { assertClose, assertOneLineError, fixture, runCli, scratchDir, TINY } from './helpers.js';

const { dir: MODEL, weights } = fixture('opset14-merged');
const env = { LENS_CACHE: scratchDir('cli-cache') };
const lens = (args: string[], extra: Parameters<typeof runCli>[1] = {}) => runCli(args, { ...extra, env: { ...env, ...extra.env } });
const parse = (stdout: string) => stdout.trim().split('\n').map((l) => JSON.parse(l) as LensRecord);

function snapshot(dir: string): string {
  const walk = (d: string): string[] => readdirSync(d).flatMap((f) => {
    const p = join(d, f);
    const s = statSync(p);
    return s.isDirectory() ? walk(p) : [`${p}:${s.size}:${s.mtimeMs}`];
  });
  return walk(dir).sort().join('\n');
}
const before = snapshot(MODEL);

test('topk --json: the record contract, with values from the reference forward pass', async () => {
  const r = await lens(['topk', '--model', MODEL, '--json', '-k', '3', 'Paris is capital of', 'Alan Turing was a']);
  assert.equal(r.code, 0, r.stderr);
  const records = parse(r.stdout);
  assert.equal(records.length, 2);
  for (const record of records) {
    assert.deepEqual(Object.keys(record), ['model', 'mode', 'prompt', 'tokens', 'position', 'layers']);
    assert.equal(record.mode, 'norm');
    assert.equal(record.model, MODEL);
    assert.equal(record.position, record.tokens.length - 1);
    assert.deepEqual(record.layers.map((l) => l.layer), [0, 1, 2, 3]);
    const ids = record.tokens.map((t) => t.id);
    const expected = referenceLens(referenceForward(weights, ids), record.position, false);
    for (const layer of record.layers) {
      assert.deepEqual(Object.keys(layer), ['layer', 'site', 'top', 'entropy', 'kl_to_final', 'targets']);
      assert.equal(layer.site, 'block');
      assert.deepEqual(layer.targets, []);
      assert.equal(layer.top.length, 3);
      const ref = expected[layer.layer];
      const lp = logSoftmax(ref);
      const order = Array.from(ref.keys()).sort((a, b) => ref[b] - ref[a]).slice(0, 3);
      assert.deepEqual(layer.top.map((t) => t.id), order);
      for (const t of layer.top) {
        assertClose(t.logit, ref[t.id], 1e-4, 'logit');
        assertClose(t.prob, Math.exp(lp[t.id]), 1e-5, 'prob');
        assert.equal(typeof t.token, 'string');
      }
      assertClose(layer.entropy, entropyOf(lp), 1e-4, 'entropy');
    }
    assert.equal(record.layers[3].kl_to_final, 0);
  }
  assert.deepEqual(records[0].tokens.map((t) => t.text), ['Paris', ' is', ' capital', ' of']);
});

test('prob and rank --json: the default target " football" is token 4346; --raw follows the notebook', async () => {
  for (const [command, raw] of [['prob', false], ['rank', true]] as const) {
    const r = await lens([command, '--model', MODEL, '--json', ...(raw ? ['--raw'] : [])]);
    assert.equal(r.code, 0, r.stderr);
    const [record] = parse(r.stdout);
    assert.equal(record.prompt, 'The most famous sports in USA is');
    assert.equal(record.mode, raw ? 'raw' : 'norm');
    const expected = referenceLens(referenceForward(weights, record.tokens.map((t) => t.id)), record.position, raw);
    for (const layer of record.layers) {
      const [t] = layer.targets;
      assert.equal(t.id, 4346);
      assert.equal(t.text, ' football');
      const ref = expected[layer.layer];
      assert.equal(t.rank, 1 + Array.from(ref).filter((v) => v > ref[4346]).length);
      assertClose(t.prob, Math.exp(logSoftmax(ref)[4346]), 1e-6, 'P(football)');
    }
  }
});

test('several targets, by text and id; a several-token target is the teacher-forced product, no warning', async () => {
  const r = await lens(['rank', '--model', MODEL, '--json', '--gold', ' football', '--target', ' footballers', '--target-id', '262', 'The most famous sports']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const [record] = parse(r.stdout);
  const ids = record.tokens.map((t) => t.id);
  assert.deepEqual(record.layers[0].targets.map((t) => t.id), [4346, 4346, 262]);
  // --target before --gold, texts before ids.
  assert.deepEqual(record.layers[0].targets.map((t) => t.text), [' footballers', ' football', ' the']);
  const products = referenceTargetLogProb(weights, ids, [4346, 364], false, false);
  for (const layer of record.layers) {
    const t = layer.targets[0];
    assert.deepEqual(t.pieces.map((p) => [p.id, p.text]), [[4346, ' football'], [364, 'ers']]);
    assertClose(t.logprob, products[layer.layer], 1e-4, 'log P(" footballers")');
    assertClose(t.prob, Math.exp(products[layer.layer]), 1e-6, 'P(" footballers")');
    assert.equal(t.rank, layer.targets[1].rank, 'rank of the first token');
    assertClose(t.logit, layer.targets[1].logit, 1e-4, 'logit of the first token');
    assert.deepEqual(layer.targets[1].pieces.length, 1);
  }
});

test('prompts from --file and from stdin, blank lines skipped', async () => {
  const file = join(scratchDir('prompts'), 'prompts.txt');
  writeFileSync(file, 'Paris is capital of\r\n\nAlan Turing was a\n');
  const fromFile = await lens(['topk', '--model', MODEL, '--json', '--file', file]);
  assert.equal(fromFile.code, 0, fromFile.stderr);
  assert.deepEqual(parse(fromFile.stdout).map((r) => r.prompt), ['Paris is capital of', 'Alan Turing was a']);
  const fromStdin = await lens(['topk', '--model', MODEL, '--json', '--file', '-'], { input: 'one\ntwo\nthree' });
  assert.deepEqual(parse(fromStdin.stdout).map((r) => r.prompt), ['one', 'two', 'three']);
});

test('human output: L00..L03 lines, charts, and no ANSI when piped or with NO_COLOR', async () => {
  const topk = await lens(['topk', '--model', MODEL]);
  assert.equal(topk.code, 0, topk.stderr);
  assert.doesNotMatch(topk.stdout, /\x1b\[/);
  for (const prompt of ['Paris is capital of', 'Alan Turing was a', 'The most famous sports in USA is']) assert.ok(topk.stdout.includes(`"${prompt}"`));
  const layerLines = topk.stdout.split('\n').filter((l) => /^L0\d  /.test(l));
  assert.deepEqual(layerLines.map((l) => l.slice(0, 3)), ['L00', 'L01', 'L02', 'L03', 'L00', 'L01', 'L02', 'L03', 'L00', 'L01', 'L02', 'L03']);
  assert.equal(topk.stderr, '');

  const prob = await lens(['prob', '--model', MODEL, '--target', ' football'], { env: { NO_COLOR: '1', FORCE_COLOR: '1' } });
  assert.equal(prob.code, 0, prob.stderr);
  assert.doesNotMatch(prob.stdout, /\x1b\[/);
  assert.match(prob.stdout, /┤/);
  assert.match(prob.stdout, /── " football" \(id 4346\)/);
  assert.match(prob.stdout, /^L03 +\S+%?$/m);

  const rank = await lens(['rank', '--model', MODEL, '--gold', ' football']);
  assert.match(rank.stdout, /rank of target by layer/);
  assert.match(rank.stdout, /^L00 +\d+$/m);

  const forced = await lens(['topk', '--model', MODEL, 'Paris'], { env: { FORCE_COLOR: '1' } });
  assert.match(forced.stdout, /\x1b\[/, 'colour works when forced');
  const json = await lens(['topk', '--model', MODEL, '--json', 'Paris'], { env: { FORCE_COLOR: '1' } });
  assert.doesNotMatch(json.stdout, /\x1b\[/, 'never colour in --json');
});

test('usage errors: one line, exit 2', async () => {
  const cases: [string[], RegExp][] = [
    [['topk', '--bogus'], /unknown option '--bogus'/],
    [['topk', '-k', '0', 'x'], /-k must be at least 1/],
    [['topk', '-k', 'abc', 'x'], /-k must be a whole number/],
    [['topk', '--dtype', 'fp64', 'x'], /fp64/],
    [['topk', '--model', MODEL, '--position', '9', 'Paris'], /--position 9 is outside the prompt's 1 tokens/],
    [['topk', '--model', MODEL, '--position', '-2', 'Paris'], /outside/],
    [['topk', '--model', MODEL, ''], /empty prompt/],
    [['prob', '--model', MODEL, '--target', ''], /empty target/],
    [['prob', '--model', MODEL, '--target-id', '50257'], /token id 50257 is outside the vocabulary/],
    [['topk', '--model', MODEL, 'word '.repeat(TINY.nPositions + 1)], /prompt is \d+ tokens; .* reads at most 64/],
    [['topk', '--model', MODEL, '--file', '/nonexistent/prompts.txt'], /cannot read --file/],
    [['bogus'], /unknown command 'bogus'/],
    [['topk', '--model', 'org/../../x'], /not a model directory or a hub repo id/],
    [['topk', '--model', 'a b/c'], /not a model directory or a hub repo id/],
  ];
  for (const [args, pattern] of cases) assertOneLineError(await lens(args), 2, pattern);
});

test('model errors: one line, exit 1, and nothing written into the model directory', async () => {
  const root = scratchDir('broken');
  const noOnnx = join(root, 'no-onnx');
  mkdirSync(noOnnx);
  for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(MODEL, f), join(noOnnx, f));
  const truncated = join(root, 'truncated');
  cpSync(MODEL, truncated, { recursive: true });
  const bytes = readFileSync(join(MODEL, 'onnx', 'model.onnx'));
  writeFileSync(join(truncated, 'onnx', 'model.onnx'), bytes.subarray(0, bytes.length >> 1));
  const notDecoder = join(root, 'not-decoder');
  cpSync(noOnnx, notDecoder, { recursive: true });
  mkdirSync(join(notDecoder, 'onnx'));
  const relu: Model = { ir_version: 8, opset_import: [{ domain: '', version: 14 }], graph: {
    node: [{ op_type: 'Relu', input: ['input_ids'], output: ['logits'], attribute: [] }], initializer: [], value_info: [],
    input: [{ name: 'input_ids', type: { tensor_type: { elem_type: 1 } } }], output: [{ name: 'logits' }],
  } };
  writeFileSync(join(notDecoder, 'onnx', 'model.onnx'), encodeModel(relu));
  const badConfig = join(root, 'bad-config');
  cpSync(MODEL, badConfig, { recursive: true });
  writeFileSync(join(badConfig, 'config.json'), '{ not json');

  const cases: [string[], RegExp, NodeJS.ProcessEnv?][] = [
    [['topk', '--model', join(root, 'missing')], /model directory not found/],
    [['topk', '--model', root], /has no config.json/],
    [['topk', '--model', noOnnx], /has no onnx\/model.onnx/],
    [['topk', '--model', noOnnx, '--dtype', 'q8'], /has no onnx\/model_quantized.onnx/],
    [['topk', '--model', truncated], /not a readable ONNX model/],
    [['topk', '--model', notDecoder], /not a decoder lens can read: no unembedding/],
    [['topk', '--model', badConfig], /cannot read .*config.json/],
    [['topk', '--model', 'nobody/nothing', '--offline'], /model nobody\/nothing is not in the cache and the network is off/],
    [['topk', '--model', 'nobody/nothing'], /not in the cache/, { HF_HUB_OFFLINE: '1' }],
  ];
  for (const [args, pattern, extra] of cases) assertOneLineError(await lens(args, { env: extra }), 1, pattern);
  assert.equal(snapshot(MODEL), before, 'the model directory is untouched');
});
