// The fixture variants have the layout the real tools write (facts read from their sources), and the lens
// rewrite reads them: structure found through Cast, DequantizeLinear, MatMulInteger and MatMulNBits.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { addLensOutputs, findDecoderStructure, inlineNoPastBranch } from '../../src/onnx/lens-graph.js';
import { DataType, decodeModel, encodeModel, type Graph, type Model } from '../../src/onnx/proto.js';
import { buildModel, FORMS, makeWeights } from '../fixtures/gpt2.js';
import { floatToHalfBits, quantizeBlockwise4, quantizeDynamic, quantizeMatMul4Bits, quantizePerTensor, toFloat16 } from '../fixtures/variants.js';
import { TINY } from '../helpers.js';

const weights = makeWeights({ ...TINY, layers: 2 });
const flat = buildModel(weights, FORMS['opset14-flat']);
const merged = buildModel(weights, FORMS['opset14-merged']);
const allNodes = (g: Graph): Graph['node'] => g.node.flatMap((n) => [n, ...n.attribute.flatMap((a) => (a.g ? allNodes(a.g) : []))]);
const roundTrip = (m: Model) => decodeModel(encodeModel(m));

test('quantization formulas: onnxruntime compute_scale_zp and MLAS blockwise 4-bit, on hand-checked values', () => {
  // int8 symmetric: scale = max|w| / 127, zero point 0.
  const s8 = quantizePerTensor(Float32Array.of(-0.5, 0.25, 1.27), 'int8', true);
  assert.equal(s8.zeroPoint, 0);
  assert.equal(s8.scale, Math.fround(1.27 * 2 / 254));
  assert.deepEqual(Array.from(s8.data), [-50, 25, 127]);
  // uint8 asymmetric over [min(0, ·), max(0, ·)]: scale = 2.55 / 255, zero point round(1 / 0.01) = 100.
  const u8 = quantizePerTensor(Float32Array.of(-1, 1.55), 'uint8', false);
  assert.equal(u8.zeroPoint, 100);
  assert.deepEqual(Array.from(u8.data), [0, 255]);
  // 4-bit symmetric: scale = −(value of largest magnitude) / 8, zero point 8, even element in the low nibble.
  const b = new Float32Array(32).fill(0);
  b[0] = 2; b[1] = -1; b[2] = 1;
  const q = quantizeBlockwise4(b, 32, 1, 32, true);
  assert.equal(q.scales[0], -0.25);
  assert.equal(q.packed[0], (0 & 0xf) | (12 << 4)); // 2 → 8 − 8 = 0; −1 → 8 + 4 = 12
  assert.equal(q.packed[1] & 0xf, 4);                 // 1 → 8 − 4
  // float16: round to nearest even, and the converter's clamp keeps -3.4e38 finite as -1e4.
  assert.equal(floatToHalfBits(1), 0x3c00);
  assert.equal(floatToHalfBits(65504), 0x7bff);
  assert.equal(floatToHalfBits(-1e4), 0xf0e2);
});

test('fp16 variant: float16 weights and constants, Casts at the float graph inputs and outputs, inside If branches too', () => {
  for (const [name, source] of [['flat', flat], ['merged', merged]] as const) {
    const model = roundTrip(toFloat16(source));
    const g = model.graph;
    assert.ok(g.initializer.filter((t) => t.dims.length >= 1 && t.data_type !== DataType.BOOL).every((t) => t.data_type === DataType.FLOAT16), `${name}: weights are float16`);
    assert.ok(g.input.filter((v) => v.name.startsWith('past_')).every((v) => v.type?.tensor_type?.elem_type === DataType.FLOAT), `${name}: graph inputs stay float`);
    assert.ok(g.output.every((v) => v.type?.tensor_type?.elem_type === DataType.FLOAT), `${name}: graph outputs stay float`);
    assert.ok(g.node.some((n) => n.op_type === 'Cast' && n.name === 'past_key_values.0.key_fp16'), `${name}: input cast`);
    assert.ok(g.node.some((n) => n.op_type === 'Cast' && n.input[0] === 'logits_fp16' && n.output[0] === 'logits'), `${name}: output cast`);
    const nodes = allNodes(g);
    assert.ok(nodes.some((n) => n.name?.endsWith('/transformer/Cast_output_cast0')), `${name}: a Cast on the block list is followed by a cast to float16`);
    const readsPast = nodes.filter((n) => n.input.some((i) => i.startsWith('past_key_values.0.key')));
    assert.ok(readsPast.every((n) => n.op_type === 'Cast' || n.input.includes('past_key_values.0.key_fp16')), `${name}: consumers read the cast`);
    const structure = findDecoderStructure(inlineNoPastBranch(g), 2);
    assert.equal(structure.residuals.length, 3);
    const { model: rewritten, tiedEmbedding } = addLensOutputs(model, 2);
    assert.equal(tiedEmbedding, undefined, 'the E·hᵀ trick is for float32 heads only');
    // Both branches read the same three graph inputs; only the past branch reads the outer casts of past_key_values.
    if (name === 'merged') assert.ok(!rewritten.graph.node.some((n) => n.input.some((i) => i.startsWith('past_key_values'))), 'the no-past branch is the one inlined');
  }
});

test('q8 variant: MatMulInteger with per-tensor weights shared in the outer graph, DequantizeLinear after quantized embeddings; the head is cloned per row', () => {
  for (const [name, source] of [['flat', flat], ['merged', merged]] as const) {
    const model = roundTrip(quantizeDynamic(source, 'int8'));
    const g = model.graph;
    const nodes = allNodes(g);
    assert.ok(!nodes.some((n) => n.op_type === 'Gemm'), `${name}: Gemm rewritten to MatMul + Add first`);
    assert.ok(!nodes.some((n) => n.op_type === 'MatMul' && n.input[1]?.startsWith('transformer.')), `${name}: every MatMul by a weight is quantized`);
    assert.ok(nodes.some((n) => n.op_type === 'DynamicQuantizeLinear' && n.name?.endsWith('_QuantizeLinear')));
    const lmHead = g.initializer.find((t) => t.name === 'onnx::MatMul_lm_head_quantized');
    assert.equal(lmHead?.data_type, DataType.INT8, `${name}: the head's weights are int8, in the outer graph`);
    assert.equal(g.initializer.find((t) => t.name === 'onnx::MatMul_lm_head_scale')?.dims.length, 0, 'one scale per tensor');
    assert.equal(g.initializer.find((t) => t.name === 'transformer.wte.weight_quantized')?.data_type, DataType.UINT8, 'embeddings as uint8 (the activation type)');
    assert.ok(!g.initializer.some((t) => t.name === 'transformer.wte.weight'), 'float weights removed');
    assert.ok(nodes.some((n) => n.op_type === 'DequantizeLinear' && n.input[0].endsWith('wte/Gather_output_0_quantized')));
    const { model: rewritten } = addLensOutputs(model, 2);
    const scan = rewritten.graph.node.find((n) => n.op_type === 'Scan');
    assert.ok(scan, `${name}: the head runs per row`);
    assert.ok(scan!.attribute.find((a) => a.g)!.g!.node.some((n) => n.op_type === 'DynamicQuantizeLinear'));
    assert.ok(rewritten.graph.initializer.some((t) => t.name === 'onnx::MatMul_lm_head_quantized'), 'weights the Scan body reads are kept');
  }
});

test('q4 variant: MatMulNBits (bits 4, block 32) replaces each MatMul by a weight; Gemm layers stay float', () => {
  const model = roundTrip(quantizeMatMul4Bits(merged, 32, true));
  const nodes = allNodes(model.graph);
  const q4 = nodes.filter((n) => n.op_type === 'MatMulNBits');
  assert.equal(q4.length, 2, 'the head in each branch');
  const attrs = Object.fromEntries(q4[0].attribute.map((a) => [a.name, Number(a.i)]));
  assert.deepEqual(attrs, { K: TINY.d, N: 50257, bits: 4, block_size: 32 });
  assert.equal(q4[0].domain, 'com.microsoft');
  assert.deepEqual(q4[0].input.slice(1), ['onnx::MatMul_lm_head_Q4', 'onnx::MatMul_lm_head_scales']);
  assert.deepEqual(model.graph.initializer.find((t) => t.name === 'onnx::MatMul_lm_head_Q4')?.dims.map(Number), [50257, 1, 16]);
  assert.ok(model.opset_import.some((o) => o.domain === 'com.microsoft'));
  assert.ok(nodes.some((n) => n.op_type === 'Gemm'));
  const { structure } = addLensOutputs(model, 2);
  assert.equal(structure.unembed.op_type, 'MatMulNBits');
});
