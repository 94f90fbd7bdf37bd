// The CLI end to end on a fixture model: the JSON contract, the human output, every error.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { LensRecord } from '../src/lens/record.js';
import { encodeModel, type Model } from '../src/onnx/proto.js';
import { HEAD_TWINS, VOCAB } from './fixtures/gpt2.js';
import { assertClose, assertOneLineError, fixture, runCli, scratchDir, TINY, type CliResult } from './helpers.js';
import { ambiguousTokens, assertHumanAgrees, assertRecordMatchesReference, assertRecordShape, type RecordShape } from './record-check.js';
import { referenceTargetLogProb } from './reference/gpt2.js';

const { dir: MODEL, weights } = fixture('opset14-merged');
const env = { LENS_CACHE: scratchDir('cli-cache') };
const lens = (args: string[], extra: Parameters<typeof runCli>[1] = {}) => runCli(args, { ...extra, env: { ...env, ...extra.env } });

/** The records of a run that must have succeeded: exit code, then count, then each record's full schema. */
function records(r: CliResult, count: number, shape: Omit<RecordShape, 'layers' | 'vocab'> = {}): LensRecord[] {
  assert.equal(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  const lines = r.stdout.split('\n');
  assert.equal(lines.pop(), '', 'output ends with a newline');
  assert.equal(lines.length, count, `number of records in ${r.stdout.slice(0, 300)}`);
  return lines.map((line, i) => {
    const record: unknown = JSON.parse(line);
    assertRecordShape(record, { layers: TINY.layers, vocab: VOCAB, ...shape }, `record ${i}`);
    return record;
  });
}

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
  const out = records(r, 2, { k: 3, targets: 0, mode: 'norm' });
  assert.deepEqual(out.map((x) => x.prompt), ['Paris is capital of', 'Alan Turing was a']);
  for (const record of out) {
    assert.equal(record.model, MODEL);
    assert.equal(record.position, record.tokens.length - 1);
    assertRecordMatchesReference(record, weights, record.prompt);
  }
  assert.deepEqual(out[0].tokens.map((t) => t.text), ['Paris', ' is', ' capital', ' of']);
});

test('prob and rank --json, both modes: the default target " football" is token 4346; every layer matches the reference', async () => {
  for (const command of ['prob', 'rank']) {
    for (const raw of [false, true]) {
      const r = await lens([command, '--model', MODEL, '--json', ...(raw ? ['--raw'] : [])]);
      const [record] = records(r, 1, { targets: 1, k: 5, mode: raw ? 'raw' : 'norm', prompt: 'The most famous sports in USA is', position: 6 });
      for (const layer of record.layers) assert.deepEqual([layer.targets[0].id, layer.targets[0].text], [4346, ' football']);
      assertRecordMatchesReference(record, weights, `${command}${raw ? ' --raw' : ''}`);
    }
  }
});

test('untied and biased heads end to end: values from the fixture’s own head, exact ranks with ties counted as ties', async () => {
  const prompts: [string, number[]][] = [['The most famous sports in USA is', [464, 749, 5863, 5701, 287, 4916, 318]], ['Paris is capital of', [40313, 318, 3139, 286]]];
  for (const form of ['untied-head', 'biased-gemm-head']) {
    const { dir, weights: own } = fixture(form);
    assert.ok(own.lmHead, `${form} has its own head`);
    // Tokens too close to the twins for the tolerance to order are asked for too, so every rank is settled exactly.
    const near = [...new Set(prompts.flatMap(([, ids]) => ambiguousTokens(own, ids, ids.length - 1, HEAD_TWINS)))];
    const targets = [...HEAD_TWINS, ...near];
    for (const command of ['prob', 'rank']) {
      for (const raw of [false, true]) {
        // Twin head rows: their logits tie exactly, so neither counts the other in its rank.
        const r = await lens([command, '--model', dir, '--json', ...targets.flatMap((id) => ['--target-id', String(id)]), ...(raw ? ['--raw'] : []), ...prompts.map(([p]) => p)]);
        const out = records(r, 2, { targets: targets.length, mode: raw ? 'raw' : 'norm' });
        out.forEach((record, n) => {
          assert.deepEqual(record.tokens.map((t) => t.id), prompts[n][1]);
          for (const layer of record.layers) {
            const [a, b] = layer.targets;
            assert.deepEqual([a.id, b.id], [...HEAD_TWINS]);
            assert.ok(a.logit === b.logit && a.rank === b.rank, `${form} L${layer.layer}: twins differ: ${JSON.stringify([a, b])}`);
          }
          assertRecordMatchesReference(record, own, `${form} ${command}${raw ? ' --raw' : ''} ${record.prompt}`, HEAD_TWINS);
        });
      }
    }
  }
});

test('several targets, by text and id; a several-token target is the teacher-forced product, no warning', async () => {
  const r = await lens(['rank', '--model', MODEL, '--json', '--gold', ' football', '--target', ' footballers', '--target-id', '262', 'The most famous sports']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stderr, '');
  const [record] = records(r, 1, { targets: 3 });
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
  assert.deepEqual(records(fromFile, 2).map((r) => r.prompt), ['Paris is capital of', 'Alan Turing was a']);
  const fromStdin = await lens(['topk', '--model', MODEL, '--json', '--file', '-'], { input: 'one\ntwo\nthree' });
  assert.deepEqual(records(fromStdin, 3).map((r) => r.prompt), ['one', 'two', 'three']);
});

test('human output: the values of the JSON records, charts, and no ANSI when piped or with NO_COLOR', async () => {
  const topk = await lens(['topk', '--model', MODEL]);
  assert.equal(topk.code, 0, topk.stderr);
  assertHumanAgrees(topk.stdout, records(await lens(['topk', '--model', MODEL, '--json']), 3), 'topk');
  assert.doesNotMatch(topk.stdout, /\x1b\[/);
  for (const prompt of ['Paris is capital of', 'Alan Turing was a', 'The most famous sports in USA is']) assert.ok(topk.stdout.includes(`"${prompt}"`));
  const layerLines = topk.stdout.split('\n').filter((l) => /^L0\d  /.test(l));
  assert.deepEqual(layerLines.map((l) => l.slice(0, 3)), ['L00', 'L01', 'L02', 'L03', 'L00', 'L01', 'L02', 'L03', 'L00', 'L01', 'L02', 'L03']);
  assert.equal(topk.stderr, '');

  const prob = await lens(['prob', '--model', MODEL, '--target', ' football', '--target-id', '262'], { env: { NO_COLOR: '1', FORCE_COLOR: '1' } });
  assert.equal(prob.code, 0, prob.stderr);
  assertHumanAgrees(prob.stdout, records(await lens(['prob', '--model', MODEL, '--target', ' football', '--target-id', '262', '--json']), 1), 'prob');
  assert.doesNotMatch(prob.stdout, /\x1b\[/);
  assert.match(prob.stdout, /┤/);
  assert.match(prob.stdout, /── " football" \(id 4346\)/);
  assert.match(prob.stdout, /^L03 +\S+%? +\S+%?$/m);

  const rank = await lens(['rank', '--model', MODEL, '--gold', ' football', '--raw', 'Paris is capital of', 'The most famous sports in USA is']);
  assert.equal(rank.code, 0, rank.stderr);
  assertHumanAgrees(rank.stdout, records(await lens(['rank', '--model', MODEL, '--gold', ' football', '--raw', '--json', 'Paris is capital of', 'The most famous sports in USA is']), 2), 'rank');
  assert.match(rank.stdout, /rank of target by layer/);
  assert.match(rank.stdout, /^L00 +\d+$/m);

  const forced = await lens(['topk', '--model', MODEL, 'Paris'], { env: { FORCE_COLOR: '1' } });
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /\x1b\[/, 'colour works when forced');
  const json = await lens(['topk', '--model', MODEL, '--json', 'Paris'], { env: { FORCE_COLOR: '1' } });
  records(json, 1);
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
