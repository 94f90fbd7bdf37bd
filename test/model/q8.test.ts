// The lens on q8 models as onnxruntime's quantize_dynamic writes them (QOperator: DynamicQuantizeLinear →
// MatMulInteger → Cast → Mul for every MatMul by a weight, quantized Gather + DequantizeLinear for the
// embedding table), against the float64 q8 reference (test/reference/q8.ts): the last layer is the
// model's own logits, bit for bit, on any CPU; every other site is the reference's value for that row
// quantized alone. Fixtures: torch.onnx exports of Llama, Qwen2 and Gemma quantized by
// test/fixtures/torch/quantize_dynamic.py with int8 and uint8 weights, and the TS-built GPT-NeoX
// (parallel blocks, LayerNorm, partial rotary) quantized by test/fixtures/variants.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { findDecoderStructure } from '../../src/onnx/lens-graph.js';
import { DataType, decodeModel, encodeModel } from '../../src/onnx/proto.js';
import type { Dtype } from '../../src/model/paths.js';
import { buildDecoderModel, DECODER_FORMS, headDim, tinyConfig, writeDecoderFixture, type DecoderWeights, type Family } from '../fixtures/llama.js';
import { TORCH_Q8_FILES, torchAvailable, writeTorchQ8Fixture, torchSkip, type TorchForm } from '../fixtures/torch-export.js';
import { quantizeDynamic, VARIANT_FILES, writeVariants, type WeightType } from '../fixtures/variants.js';
import { int64Tensor } from '../fixtures/onnx-builder.js';
import { referenceQ8DecoderForward } from '../reference/q8.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { ownLogits } from './lens-check.js';
import { assertQ8Lens, exactU8S8, rowwiseInt8Products, TOL } from './q8-check.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('q8-cache') });
const root = scratchDir('q8-fixtures');
const PROMPT = 'The most famous sports in USA is';
const missing = torchAvailable();
const skip = torchSkip();

/**
 * The op types of a model file (of each If branch, for a merged decoder, which must hold no weights
 * of its own), counted; throws if a MatMul by a weight or a Gather from a float table was left in float.
 */
function quantizedOpCounts(path: string): Map<string, number>[] {
  const { graph } = decodeModel(readFileSync(path));
  const floats = new Set(graph.initializer.filter((t) => t.data_type === DataType.FLOAT).map((t) => t.name));
  const merged = graph.node.length === 1 && graph.node[0].op_type === 'If';
  const bodies = merged ? graph.node[0].attribute.map((a) => a.g!) : [graph];
  return bodies.map((body) => {
    if (merged) assert.equal(body.initializer.length, 0, 'the quantized weights are shared in the outer graph');
    const counts = new Map<string, number>();
    for (const n of body.node) {
      counts.set(n.op_type, (counts.get(n.op_type) ?? 0) + 1);
      assert.ok(!(n.op_type === 'MatMul' && floats.has(n.input[1])), `${n.name}: MatMul by a float weight left`);
      assert.ok(!(n.op_type === 'Gather' && floats.has(n.input[0])), `${n.name}: Gather from a float table left`);
    }
    return counts;
  });
}

const torchWeights = new Map<string, DecoderWeights>();
// Llama (GQA 4/2, untied head) in every 8-bit file, and Optimum-merged (the If branches quantized);
// Qwen2 (q/k/v biases, tied head) and Gemma (GeGLU, (1 + w) norms, √d-scaled embeddings, tied head) in q8.
const TORCH_CASES: [Family, Dtype, TorchForm][] = [
  ['llama', 'q8', 'torch-past'], ['llama', 'int8', 'torch-past'], ['llama', 'uint8', 'torch-past'], ['qwen2', 'q8', 'torch-past'], ['gemma', 'q8', 'torch-past'],
  ['llama', 'q8', 'torch-merged'], ['llama', 'uint8', 'torch-merged'],
];

for (const [family, dtype, form] of TORCH_CASES) {
  const [file, weightType] = TORCH_Q8_FILES[dtype as keyof typeof TORCH_Q8_FILES];
  test(`q8 as quantize_dynamic writes it: torch.onnx ${family} ${form}, ${dtype} (${weightType} weights)`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, `${family}-${form}`);
    if (!torchWeights.has(dir)) torchWeights.set(dir, writeTorchQ8Fixture(dir, tinyConfig(family), form));
    const w = torchWeights.get(dir)!;
    const path = join(dir, 'onnx', file);
    // The fixture is what the quantizer writes: 7 MatMuls by a weight per block and the head, one
    // DynamicQuantizeLinear per distinct input (q/k/v share one, gate/up share one), the embedding
    // Gather dequantized; in each branch of a merged decoder.
    for (const ops of quantizedOpCounts(path)) {
      assert.equal(ops.get('MatMulInteger'), 7 * w.config.layers + 1);
      assert.equal(ops.get('DynamicQuantizeLinear'), 4 * w.config.layers + 1);
      assert.equal(ops.get('DequantizeLinear'), 1);
    }
    const model = await loadLensModel(dir, { dtype, offline: true, env });
    try {
      const ids = model.encodePrompt(PROMPT);
      const own = await ownLogits(path, ids, [w.config.kvHeads, headDim(w.config)]);
      t.diagnostic(await assertQ8Lens(model, ids, w, own, { weightType }));
    } finally {
      await model.dispose();
    }
  });
}

test('q8 GPT-NeoX (parallel blocks, LayerNorm, partial rotary), int8 and uint8 weights', async (t) => {
  const dir = join(root, 'gpt_neox');
  const w = writeDecoderFixture(dir, tinyConfig('gpt_neox'), 'flat');
  writeVariants(join(dir, 'onnx'), buildDecoderModel(w, DECODER_FORMS['flat-nocast']));
  for (const [dtype, weightType] of [['q8', 'int8'], ['uint8', 'uint8']] as const) {
    const model = await loadLensModel(dir, { dtype, offline: true, env });
    try {
      const ids = model.encodePrompt(PROMPT);
      const own = await ownLogits(join(dir, 'onnx', VARIANT_FILES[dtype]), ids, [w.config.kvHeads, headDim(w.config)]);
      // test/fixtures/variants.ts stores the embedding table uint8 asymmetric.
      t.diagnostic(`${dtype}: ${await assertQ8Lens(model, ids, w, own, { weightType, tableSymmetric: false })}`);
    } finally {
      await model.dispose();
    }
  }
});

test('q8 head that computes the last position only: the lens reads every row through its own head, no logits it lacks', async () => {
  const dir = join(root, 'llama-last-only');
  const w = writeDecoderFixture(dir, tinyConfig('llama'), 'flat');
  const model = buildDecoderModel(w, DECODER_FORMS['flat-nocast']);
  // hidden_states[:, -1:, :] before the head, as an export with logits_to_keep fixed at 1 computes it.
  const { finalNormOutput } = findDecoderStructure(model.graph, w.config.layers);
  const sliced = `${finalNormOutput}/last`;
  for (const n of model.graph.node) n.input = n.input.map((i) => (i === finalNormOutput ? sliced : i));
  const at = model.graph.node.findIndex((n) => n.output.includes(finalNormOutput));
  model.graph.node.splice(at + 1, 0, { name: 'last_position', op_type: 'Slice', input: [finalNormOutput, 'last/starts', 'last/ends', 'last/axes'], output: [sliced], attribute: [], domain: '' });
  model.graph.initializer.push(int64Tensor('last/starts', [1], [-1]), int64Tensor('last/ends', [1], [2 ** 31 - 1]), int64Tensor('last/axes', [1], [1]));
  const path = join(dir, 'onnx', VARIANT_FILES.q8);
  writeFileSync(path, encodeModel(quantizeDynamic(model, 'int8')));
  const lens = await loadLensModel(dir, { dtype: 'q8', offline: true, env });
  try {
    const ids = lens.encodePrompt(PROMPT);
    const V = lens.vocabSize, L = lens.layers, T = ids.length;
    const run = await lens.run(ids, [T - 1, 2], 'norm');
    // The model's one row, quantized alone, is what the per-row head computes for the last position.
    const own = await ownLogits(path, ids, [w.config.kvHeads, headDim(w.config)], 1);
    assert.deepEqual(run.logits.subarray(L * 2 * V, (L * 2 + 1) * V), own, 'last layer at the last position');
    // The reference of this CPU's int8 kernels (test/model/q8-check.ts).
    const ref = referenceQ8DecoderForward(w, ids, { weightType: 'int8', tableSymmetric: false, pairSaturation: !(await exactU8S8()), smeRows: await rowwiseInt8Products() });
    assertClose(run.logits.subarray((L * 2 + 1) * V, (L * 2 + 2) * V), ref.unembed(ref.finalNorm(ref.residual[L][2])), TOL, 'last layer at position 2, quantized alone');
  } finally {
    await lens.dispose();
  }
});
