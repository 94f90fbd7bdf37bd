// lens attribute on the quantized and float16 forms: the head and the output projections are read as
// the float matrices their kernels multiply by (4-bit blocks and 8-bit weights dequantized), so every
// part matches the float64 reference on the weights as stored, and the parts add up to the model's
// own value where the head is linear (fp16, q4, q4f16, bnb4, genai q4). q8's head quantizes its input
// per tensor: the record then carries the parts' sum and its difference from the model's value.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AttributionRecord } from '../../src/lens/attribution.js';
import type { Dtype } from '../../src/model/paths.js';
import { DataType, decodeModel, encodeModel, type Node } from '../../src/onnx/proto.js';
import { buildDecoderModel, DECODER_FORMS, tinyConfig, writeDecoderFixture, type DecoderWeights, type Family } from '../fixtures/llama.js';
import { GENAI_FORMS, genaiConfig, writeGenaiFixture } from '../fixtures/genai.js';
import { BNB4, quantizeMatMulBnb4, quantizePerTensor, VARIANT_FILES, writeVariants } from '../fixtures/variants.js';
import { referenceForward } from '../reference/gpt2.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { referenceQ8DecoderForward } from '../reference/q8.js';
import { assertOneLineError, fixture, runCli, scratchDir } from '../helpers.js';
import { assertMatchesReference, attributionRecords, env, PROMPT, referenceLogit, within } from './attribution-check.js';
import { exactU8S8, rowwiseInt8Products } from './q8-check.js';
import { decoderAsStored, fp4Stored, gpt2AsStored } from './stored-weights.js';

const root = scratchDir('attribution-quantized');
// float16 residuals and head: the parts stay within a few parts in a thousand of the reference (the
// budget of the fp16 attribution test); the sum is the model's own float16 logit to the same bound.
const HALF = { abs: 2e-2, rel: 1e-2 };

const partsSum = (r: AttributionRecord) => r.parts.reduce((s, p) => s + (p.name === 'head' || p.name === 'attn_bias' ? 0 : p.value), 0);

test('attribute on GPT-2\'s q4 and q4f16 (a MatMulNBits head): every part the reference on the stored weights, --heads too', async () => {
  const { dir, weights } = fixture('opset14-merged', undefined, { variants: true });
  for (const dtype of ['q4', 'q4f16'] as const) {
    const records = await attributionRecords(dir, [{ id: 4346 }], '1,-1', dtype, true);
    const ref = referenceForward(gpt2AsStored(weights, dtype), records[0].tokens.map((t) => t.id));
    const [abs, rel] = dtype === 'q4' ? [1e-4, 1e-3] : [HALF.abs, HALF.rel];
    for (const record of records) {
      assert.equal('quantized_head' in record, false, `${dtype}: a weight-only quantized head is linear`);
      assertMatchesReference(record, ref, `gpt2 ${dtype} pos ${record.position}`, abs, rel);
    }
    const [pair] = await attributionRecords(dir, [{ id: 4346 }, { id: 262 }], '-1', dtype);
    assertMatchesReference(pair, ref, `gpt2 ${dtype} pair`, abs, rel);
  }
});

/** The Llama-shaped family fixture with every dtype variant beside it (every linear quantized, o_proj included). */
function familyWithVariants(family: Family): { dir: string; weights: DecoderWeights } {
  const dir = join(root, `variants-${family}`);
  const weights = writeDecoderFixture(dir, tinyConfig(family), 'flat');
  writeVariants(join(dir, 'onnx'), buildDecoderModel(weights, DECODER_FORMS['flat-nocast']));
  return { dir, weights };
}

// Llama (GQA, untied), Qwen2 (biases) and GPT-NeoX (parallel blocks): the o_proj is quantized too, so
// --heads reads each head through the dequantized projection.
for (const family of ['llama', 'qwen2', 'gpt_neox'] as Family[]) {
  test(`attribute on ${family}'s q4, bnb4, q4f16 and fp16: parts and heads the reference on the stored weights`, async () => {
    const { dir, weights } = familyWithVariants(family);
    for (const dtype of ['q4', 'bnb4', 'q4f16', 'fp16'] as const) {
      const [abs, rel] = dtype === 'q4' || dtype === 'bnb4' ? [1e-4, 1e-3] : [HALF.abs, HALF.rel];
      const [record] = await attributionRecords(dir, [{ id: 7 }], '-1', dtype, true);
      const ref = referenceDecoderForward(decoderAsStored(weights, dtype), record.tokens.map((t) => t.id));
      assertMatchesReference(record, ref, `${family} ${dtype} --heads`, abs, rel);
      const [pair] = await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '-1', dtype, true);
      assertMatchesReference(pair, ref, `${family} ${dtype} pair --heads`, abs, rel);
    }
  });
}

// onnxruntime-genai's builder: MatMulNBits everywhere (GroupQueryAttention's output through a 4-bit
// o_proj), a shared embedding read by GatherBlockQuantized from the head's own 4-bit weight, a head
// pruned to the last position, and io_dtype float16.
for (const form of ['genai-q4', 'genai-q4-shared-pruned', 'genai-q4f16'] as const) {
  test(`attribute on a genai builder graph: qwen3 ${form}`, async () => {
    const dir = join(root, `qwen3-${form}`);
    const weights = writeGenaiFixture(dir, genaiConfig('qwen3'), form);
    const half = GENAI_FORMS[form].half === true;
    const dtype: Dtype = half ? 'q4f16' : 'q4';
    const [abs, rel] = half ? [HALF.abs, HALF.rel] : [1e-4, 1e-3];
    const stored = decoderAsStored(weights, dtype);
    const asStored = GENAI_FORMS[form].sharedEmbeddings ? { ...stored, embed: stored.lmHead! } : stored;
    for (const record of await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '-1', dtype, true)) {
      const ref = referenceDecoderForward(asStored, record.tokens.map((t) => t.id));
      assertMatchesReference(record, ref, `${form} --heads`, abs, rel);
    }
  });
}

test('attribute on genai q4 with int8 activations (accuracy_level 4): the head is marked as rounding its input, --heads is refused naming why', async () => {
  const dir = join(root, 'qwen3-genai-q4-int8');
  const weights = writeGenaiFixture(dir, genaiConfig('qwen3'), 'genai-q4-int8');
  const [record] = await attributionRecords(dir, [{ id: 7 }], '-1', 'q4');
  assert.ok(record.quantized_head, 'the record says the head rounds its input');
  assert.ok(within(record.quantized_head.parts_sum, partsSum(record), 1e-9, 0));
  assert.ok(within(record.quantized_head.difference, record.value - partsSum(record), 1e-9, 0));
  // The difference is the head's int8 rounding of a float input: small against the logit, but there.
  const ref = referenceDecoderForward(decoderAsStored(weights, 'q4'), record.tokens.map((t) => t.id));
  assert.ok(Math.abs(record.quantized_head.difference) < 0.05 * Math.abs(referenceLogit(ref, record.position, 7)) + 1e-2, `difference ${record.quantized_head.difference}`);
  assertOneLineError(await runCli(['attribute', '-m', dir, '--offline', '--dtype', 'q4', '--heads', PROMPT], { env }), 1, /--heads on .*: block 1's attention output projection quantizes its input to int8 in blocks \(MatMulNBits accuracy_level 4\)/);
});

/** W̃ [V, d]: the head as quantize_dynamic stores it (int8, one scale), dequantized. */
function dequantizedHead(w: DecoderWeights): Float32Array {
  const { data, scale, zeroPoint } = quantizePerTensor(w.lmHead ?? w.embed, 'int8', true);
  return Float32Array.from(data, (q) => (q - zeroPoint) * scale);
}

// q8 (quantize_dynamic): the head quantizes its input with one scale for the whole sequence, so the
// logit is not linear in the parts. Each part is read through the dequantized head W̃ (what it adds
// to W̃ · LN(r_L)); the record carries their sum and its difference from the model's own logit. The
// output projections multiply the quantized z̃, whose per-head slices sum exactly to what they write.
for (const family of ['llama', 'qwen2'] as Family[]) {
  test(`attribute on ${family}'s q8: parts and heads the float64 q8 reference through the dequantized head; the rounding is in the record`, async (t) => {
    const { dir, weights } = familyWithVariants(family);
    const [record] = await attributionRecords(dir, [{ id: 7 }], '-1', 'q8', true);
    const ids = record.tokens.map((t) => t.id);
    // On an x86-64 CPU without VNNI, onnxruntime's u8·s8 kernel saturates pairs, and on an Arm CPU with
    // SME it quantizes the products' inputs row by row: the reference then models that kernel.
    const smeRows = await rowwiseInt8Products();
    const q8 = referenceQ8DecoderForward(weights, ids, { weightType: 'int8', tableSymmetric: false, pairSaturation: !(await exactU8S8()), smeRows });
    const head = dequantizedHead(weights), { d, vocab } = weights.config;
    const linearHead = (v: Float64Array) => Float64Array.from({ length: vocab }, (_, t) => head.subarray(t * d, (t + 1) * d).reduce((s, w, i) => s + w * v[i], 0));
    const throughW̃ = { ...q8, unembed: linearHead };
    // The model's own value is the quantized head's (the q8 reference's own logits).
    // An input on a rounding boundary may go either way in float32 (the slack of test/model/q8-check.ts).
    const pos = record.position;
    const slack = q8.headSlack(q8.residual[weights.config.layers].map((v) => q8.finalNorm(v)))[pos];
    assert.ok(within(record.value, q8.ownLogits[pos][7], 1e-4 + slack), `value ${record.value} vs own ${q8.ownLogits[pos][7]}`);
    // Every part, and the heads summing to their attn; the sum compared with W̃ · LN(r_L), not the value.
    const { quantized_head: marked, ...plain } = record;
    assert.ok(marked, 'the record says the head rounds its input');
    const linearValue = referenceLogit(throughW̃, pos, 7);
    // On SME the heads are slices of z quantized with one scale while the projection quantizes each row
    // (as in GPT-2's test below): there they cannot add up to attn, and the gap is reported.
    const headsGap = assertMatchesReference({ ...plain, value: marked.parts_sum }, throughW̃, `${family} q8 --heads`, 1e-4, 1e-3, !smeRows);
    if (smeRows) t.diagnostic(`SME rows: ${family} q8 |heads + attn_bias − attn| up to ${headsGap.toExponential(2)}`);
    assert.ok(within(marked.parts_sum, linearValue), `parts sum ${marked.parts_sum} vs W̃ · LN(r_L) ${linearValue}`);
    assert.ok(within(marked.parts_sum, partsSum(record), 1e-9, 0));
    assert.ok(within(marked.difference, record.value - marked.parts_sum, 1e-9, 0));
    // The difference is the head's rounding: W̃ · (x̃ − x), at most half a step per input element.
    const ownMinusLinear = q8.ownLogits[pos][7] - linearValue;
    assert.ok(within(marked.difference, ownMinusLinear, 1e-4 + slack), `difference ${marked.difference} vs reference ${ownMinusLinear}`);
  });
}

test('attribute on GPT-2\'s q8: the parts add up to W̃ · LN(r_L), the record carries the rounding, heads + attn_bias = attn', async (t) => {
  const { dir } = fixture('opset14-merged', undefined, { variants: true });
  // On an Arm CPU with SME the int8 projection quantizes each row of z while the heads' shares are
  // slices of z quantized with one scale (lens's own DynamicQuantizeLinear): there they do not add up.
  const rowwise = await rowwiseInt8Products();
  for (const dtype of ['q8', 'uint8'] as const) {
    const [record] = await attributionRecords(dir, [{ id: 4346 }], '-1', dtype, true);
    assert.ok(record.quantized_head, `${dtype}: marked`);
    assert.ok(within(record.quantized_head.parts_sum, partsSum(record), 1e-9, 0));
    assert.ok(within(record.value - record.quantized_head.parts_sum, record.quantized_head.difference, 1e-9, 0));
    for (const attn of record.parts.filter((p) => p.name === 'attn')) {
      const split = record.parts.filter((p) => p.layer === attn.layer && (p.name === 'head' || p.name === 'attn_bias')).reduce((s, p) => s + p.value, 0);
      if (rowwise && dtype === 'q8') { t.diagnostic(`SME rows: ${dtype} L${attn.layer} heads + attn_bias ${split} vs attn ${attn.value}`); continue; }
      assert.ok(within(split, attn.value, 1e-4, 1e-4), `${dtype} L${attn.layer}: heads + attn_bias ${split} vs attn ${attn.value}`);
    }
  }
  // The human view names the gap.
  const result = await runCli(['attribute', '-m', dir, '--offline', '--dtype', 'q8', '--target-id', '4346', PROMPT], { env });
  assert.equal(result.code, 0, result.stderr);
  assert.match(result.stdout, /sum of the parts [−+][\d.]+ · [−+][\d.]+ from the head quantizing its input/);
});

test('a float head behind QuantizeLinear → DequantizeLinear (QDQ) is marked as rounding its input; the parts are the float reference\'s', async () => {
  // Untied: lens clones the head as it is (a tied one it computes as E · hᵀ from the norm's output).
  const source = fixture('untied-head');
  const dir = join(root, 'qdq-head');
  cpSync(source.dir, dir, { recursive: true });
  const path = join(dir, 'onnx', 'model.onnx');
  const model = decodeModel(readFileSync(path));
  const logits = model.graph.output[0].name;
  const head = model.graph.node.find((n) => n.output.includes(logits))!;
  assert.equal(head.op_type, 'MatMul', 'the fixture\'s head is a MatMul by a stored weight');
  const x = head.input[0];
  head.input[0] = 'head_input_dq';
  const op = (op_type: string, input: string[], output: string): Node => ({ name: output, op_type, input, output: [output], attribute: [], domain: '' });
  model.graph.node.splice(model.graph.node.indexOf(head), 0, op('QuantizeLinear', [x, 'qdq_scale', 'qdq_zero'], 'head_input_q'), op('DequantizeLinear', ['head_input_q', 'qdq_scale', 'qdq_zero'], 'head_input_dq'));
  model.graph.initializer.push(
    { name: 'qdq_scale', dims: [], data_type: DataType.FLOAT, raw_data: new Uint8Array(Float32Array.of(0.05).buffer) },
    { name: 'qdq_zero', dims: [], data_type: DataType.UINT8, raw_data: Uint8Array.of(128) },
  );
  writeFileSync(path, encodeModel(model));
  const [record] = await attributionRecords(dir, [{ id: 4346 }], '-1');
  assert.ok(record.quantized_head, 'marked');
  const ref = referenceForward(source.weights, record.tokens.map((t) => t.id));
  const { quantized_head: marked, ...plain } = record;
  // Every part and the sum are the float model's (the parts do not see the rounding); the value is not.
  assertMatchesReference({ ...plain, value: marked.parts_sum }, ref, 'QDQ head');
  assert.ok(within(marked.difference, record.value - marked.parts_sum, 1e-9, 0));
  assert.ok(Math.abs(marked.difference) > 1e-4, `the rounding shows: ${marked.difference}`);
});

test('attribute on llama\'s bnb4 with FP4 codes: parts and heads the reference on the stored weights', async () => {
  const dir = join(root, 'llama-fp4');
  const weights = writeDecoderFixture(dir, tinyConfig('llama'), 'flat');
  writeFileSync(join(dir, 'onnx', VARIANT_FILES.bnb4), encodeModel(quantizeMatMulBnb4(buildDecoderModel(weights, DECODER_FORMS['flat-nocast']), BNB4.FP4)));
  const [record] = await attributionRecords(dir, [{ id: 7 }, { id: 11 }], '-1', 'bnb4', true);
  assertMatchesReference(record, referenceDecoderForward(fp4Stored(weights), record.tokens.map((t) => t.id)), 'llama bnb4 FP4 --heads');
});
