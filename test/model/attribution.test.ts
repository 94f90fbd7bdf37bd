// lens attribute against the independent float64 references: every part (embed, each block's
// attention and MLP output, the biases) through the final norm with the scale of the real final
// residual, on GPT-2 in every form and on each family in each of its forms (GQA, untied, biases,
// parallel blocks, fused attention and norms, merged, external data).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isHeadPart, type AttributionRecord } from '../../src/lens/attribution.js';
import { DataType, decodeModel, encodeModel, type Node, type Tensor } from '../../src/onnx/proto.js';
import { FORMS as GPT2_FORMS } from '../fixtures/gpt2.js';
import { formsOf, tinyConfig, tinyConfigFor, writeDecoderFixture, type Family } from '../fixtures/llama.js';
import { TORCH_FORMS, torchAvailable, writeTorchFixture, torchSkip } from '../fixtures/torch-export.js';
import { referenceForward, type AttributionReference as ReferenceResult } from '../reference/gpt2.js';
import { assertMatchesReference, attributionRecords, env, PROMPT, within } from './attribution-check.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { assertOneLineError, fixture, runCli, scratchDir } from '../helpers.js';

const root = scratchDir('attribution-fixtures');

function argmax(values: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i] > values[best]) best = i;
  return best;
}

for (const form of Object.keys(GPT2_FORMS)) {
  test(`attribute matches the float64 reference: gpt2 ${form}`, async () => {
    const { dir, weights } = fixture(form);
    const [single, second] = await attributionRecords(dir, [{ id: 4346 }], '1,-1');
    const ids = single.tokens.map((tok) => tok.id);
    const ref = referenceForward(weights, ids);
    assert.deepEqual([single.position, second.position], [1, ids.length - 1]);
    assertMatchesReference(single, ref, `${form} pos 1`);
    assertMatchesReference(second, ref, `${form} pos -1`);
    // No target: the final layer's top-1 at each position.
    const [top] = await attributionRecords(dir, [], '-1');
    assert.equal(top.target.id, argmax(referenceLogitsAt(ref, ids.length - 1)));
    assertMatchesReference(top, ref, `${form} top-1`);
    const withHeads = await attributionRecords(dir, [{ id: 4346 }], '1,-1', 'fp32', true);
    withHeads.forEach((r) => assertMatchesReference(r, ref, `${form} --heads pos ${r.position}`));
  });
}

function referenceLogitsAt(ref: ReferenceResult, position: number): Float64Array {
  return ref.unembed(ref.finalNorm(ref.residual[ref.residual.length - 1][position]));
}

const FAMILIES: Family[] = ['llama', 'qwen2', 'gemma', 'gpt_neox', 'gpt_neo'];
for (const family of FAMILIES) {
  for (const form of formsOf(family)) {
    test(`attribute matches the float64 reference: ${family} ${form}`, async () => {
      const dir = join(root, `${family}-${form}`);
      const weights = writeDecoderFixture(dir, tinyConfigFor(family, form), form);
      const [record] = await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '-1');
      const ref = referenceDecoderForward(weights, record.tokens.map((tok) => tok.id));
      assertMatchesReference(record, ref, `${family} ${form} pair`);
      const [single] = await attributionRecords(dir, [{ id: 7 }], '-1');
      assertMatchesReference(single, ref, `${family} ${form}`);
      const [heads] = await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '-1', 'fp32', true);
      assertMatchesReference(heads, ref, `${family} ${form} --heads`);
    });
  }
}

// Exports torch.onnx wrote itself (skipped without python3-torch, except under CI, as in parity-torch).
const torchMissing = torchAvailable();
const skipTorch = torchSkip();
for (const family of ['llama', 'qwen2', 'gemma'] as Family[]) {
  for (const form of TORCH_FORMS) {
    test(`attribute matches the float64 reference on a torch.onnx export: ${family} ${form}`, { skip: skipTorch }, async () => {
      assert.equal(torchMissing, undefined, torchMissing);
      const dir = join(root, `torch-${family}-${form}`);
      const weights = writeTorchFixture(dir, tinyConfig(family), form);
      const [record] = await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '-1', 'fp32', true);
      assertMatchesReference(record, referenceDecoderForward(weights, record.tokens.map((tok) => tok.id)), `torch ${family} ${form} --heads`);
    });
  }
}

test('a pair is the difference of its two single-target records, through the CLI', async () => {
  const { dir } = fixture('untied-head');
  const run = async (...targets: string[]) => {
    const result = await runCli(['attribute', '-m', dir, '--offline', '--json', ...targets.flatMap((t) => ['--target-id', t]), PROMPT], { env });
    assert.equal(result.code, 0, result.stderr);
    return JSON.parse(result.stdout) as AttributionRecord;
  };
  const [pair, a, b] = [await run('4346', '262'), await run('4346'), await run('262')];
  assert.deepEqual(Object.keys(pair), ['model', 'prompt', 'tokens', 'position', 'target', 'versus', 'value', 'parts']);
  assert.deepEqual(pair.versus, { id: 262, text: ' the' });
  assert.equal(a.versus, null);
  assert.ok(within(pair.value, a.value - b.value, 1e-5, 0));
  pair.parts.forEach((p, i) => {
    assert.deepEqual(Object.keys(p), ['name', 'layer', 'value']);
    assert.ok(within(p.value, a.parts[i].value - b.parts[i].value, 1e-5, 0), `${p.name} L${p.layer}`);
  });
});

test('attribute refuses three targets in one line (exit 2)', async () => {
  const { dir } = fixture('opset14-merged', undefined, { variants: true });
  assertOneLineError(await runCli(['attribute', '-m', dir, '--offline', '--target', 'a', '--target', 'b', '--target', 'c', PROMPT], { env }), 2, /3 targets/);
});

test('attribute on the fp16 variant: the parts add up to its own logit and stay near the float64 reference', async () => {
  const { dir, weights } = fixture('opset14-merged', undefined, { variants: true });
  const [record] = await attributionRecords(dir, [{ id: 4346 }], '-1', 'fp16');
  const ref = referenceForward(weights, record.tokens.map((tok) => tok.id));
  // float16 residuals and head: a few parts in a thousand.
  assertMatchesReference(record, ref, 'fp16', 2e-2, 1e-2);
});

/** A copy of the opset14-flat fixture whose logits pass through `tail` (nodes from 'logits_head' to 'logits') after the head. */
function withHeadTail(name: string, tail: (from: string, to: string) => { nodes: Node[]; initializers: Tensor[] }): { dir: string; weights: ReturnType<typeof fixture>['weights'] } {
  const source = fixture('opset14-flat');
  const dir = join(root, name);
  cpSync(source.dir, dir, { recursive: true });
  const path = join(dir, 'onnx', 'model.onnx');
  const model = decodeModel(readFileSync(path));
  const logits = model.graph.output[0].name;
  const producer = model.graph.node.find((n) => n.output.includes(logits))!;
  producer.output = producer.output.map((o) => (o === logits ? 'logits_head' : o));
  const { nodes, initializers } = tail('logits_head', logits);
  model.graph.node.push(...nodes);
  model.graph.initializer.push(...initializers);
  writeFileSync(path, encodeModel(model));
  return { dir, weights: source.weights };
}

const scalar = (name: string, value: number): Tensor => ({ name, dims: [], data_type: DataType.FLOAT, raw_data: new Uint8Array(Float32Array.of(value).buffer) });
const op = (op_type: string, input: string[], output: string): Node => ({ name: output, op_type, input, output: [output], attribute: [], domain: '' });

test('a head scaled after the unembedding (Granite divides by logits_scaling): every part is scaled', async () => {
  const { dir, weights } = withHeadTail('scaled-head', (from, to) => ({ nodes: [op('Div', [from, 'logits_scaling'], to)], initializers: [scalar('logits_scaling', 4)] }));
  const [record] = await attributionRecords(dir, [{ id: 4346 }], '-1');
  const ref = referenceForward(weights, record.tokens.map((tok) => tok.id));
  const [unscaled] = await attributionRecords(fixture('opset14-flat').dir, [{ id: 4346 }], '-1');
  assertMatchesReference(unscaled, ref, 'unscaled');
  assert.ok(within(record.value, unscaled.value / 4, 1e-6, 1e-6), `value ${record.value} vs ${unscaled.value} / 4`);
  record.parts.forEach((p, i) => assert.ok(within(p.value, unscaled.parts[i].value / 4, 1e-6, 1e-6), `${p.name} L${p.layer}`));
});

test('a softcapped head (Gemma 2\'s c·tanh(u / c)): the parts explain the logit before the cap, and the record says so', async () => {
  const { dir } = withHeadTail('softcap-head', (from, to) => ({
    nodes: [op('Div', [from, 'cap'], 'capped_in'), op('Tanh', ['capped_in'], 'capped'), op('Mul', ['capped', 'cap'], to)],
    initializers: [scalar('cap', 8)],
  }));
  const [record] = await attributionRecords(dir, [{ id: 4346 }, { id: 262 }], '-1');
  const [plain] = await attributionRecords(fixture('opset14-flat').dir, [{ id: 4346 }, { id: 262 }], '-1');
  assert.equal(record.softcap, 8);
  assert.equal('softcap' in plain, false);
  // The same weights without the cap: its logits are the capped model's before the cap.
  assert.ok(within(record.value, plain.value, 1e-4, 1e-4), `value ${record.value} vs ${plain.value}`);
  record.parts.forEach((p, i) => assert.ok(within(p.value, plain.parts[i].value, 1e-5, 1e-5), `${p.name} L${p.layer}`));
});

test('a head with another op after the unembedding (a tanh without its cap) is refused in one line', async () => {
  const { dir } = withHeadTail('tanh-head', (from, to) => ({ nodes: [op('Tanh', [from], to)], initializers: [] }));
  assertOneLineError(await runCli(['attribute', '-m', dir, '--offline', PROMPT], { env }), 1, /cannot read the final norm and head/);
});

test('attribute --heads --svg --html: the figures carry the JSON record\'s parts and heads; a path in the model directory is refused', async () => {
  const { dir } = fixture('untied-head');
  const out = scratchDir('attribution-figures');
  const [svg, html] = [join(out, 'parts.svg'), join(out, 'parts.html')];
  const result = await runCli(['attribute', '-m', dir, '--offline', '--json', '--heads', '--target-id', '4346', '--svg', svg, '--html', html, PROMPT], { env });
  assert.equal(result.code, 0, result.stderr);
  const record = JSON.parse(result.stdout) as AttributionRecord;
  const figure = readFileSync(svg, 'utf8');
  const values = (text: string, pattern: RegExp) => [...text.matchAll(pattern)].map((m) => Number(m[1]));
  assert.deepEqual(values(figure, /class="part" data-name="[a-z_]+" data-layer="\d*" data-value="([^"]+)"/g), record.parts.filter((p) => !isHeadPart(p)).map((p) => p.value));
  assert.deepEqual(values(figure, /class="head" data-layer="\d+" data-head="\d+" data-value="([^"]+)"/g), record.parts.filter((p) => p.name === 'head').map((p) => p.value));
  const page = readFileSync(html, 'utf8');
  assert.deepEqual(values(page, /<td class="cell" tabindex="0" data-layer="\d+" data-head="\d+" data-value="([^"]+)"/g), record.parts.filter((p) => p.name === 'head').map((p) => p.value));
  assert.match(result.stderr, /wrote .*parts\.svg[\s\S]*wrote .*parts\.html/);
  assertOneLineError(await runCli(['attribute', '-m', dir, '--offline', '--svg', join(dir, 'x.svg'), PROMPT], { env }), 2, /--svg .* is inside/);
});
