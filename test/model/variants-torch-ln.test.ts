// fp16, q4 and q8 of the LayerNorm and hybrid families as torch.onnx exports them (Phi-2, OPT, BLOOM,
// LFM2: test/fixtures/torch/modeling_ln.py; StableLM and OLMo2: test/fixtures/torch/modeling.py), the
// variants made as transformers.js's scripts make them (test/fixtures/variants.ts toFloat16 and
// quantizeMatMul4Bits; q8 by test/fixtures/torch/quantize_dynamic.py). fp16 and q4: every layer, both
// modes, against the float64 reference on the weights as the file stores them (test/model/stored-weights.ts)
// within the variant's error budget, the last layer against the model's own logits; q8: every site
// against the float64 q8 reference (test/model/q8-check.ts). OLMo2's fp16 is in fp16-torch-families.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel, type LensModel } from '../../src/model/runtime.js';
import { onnxFileFor } from '../../src/model/paths.js';
import { decodeModel, encodeModel } from '../../src/onnx/proto.js';
import { headDim, tinyConfig, type Family } from '../fixtures/llama.js';
import { lnFamilyModel, stateDictOf, type LnFamily } from '../fixtures/ln-families.js';
import { TORCH_Q8_FILES, torchAvailable, torchSkip, writeTorchFixture, writeTorchModel, writeTorchQ8Files } from '../fixtures/torch-export.js';
import { SP_VOCAB_SIZE } from '../fixtures/sentencepiece.js';
import { quantizeMatMul4Bits, toFloat16, VARIANT_FILES } from '../fixtures/variants.js';
import { lnHead, referenceLnForward } from '../reference/layernorm-families.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { referenceLens, type ReferenceResult } from '../reference/gpt2.js';
import { referenceQ8LnForward } from '../reference/q8.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { assertVariantLayers, ownLogits } from './lens-check.js';
import { assertQ8Lens } from './q8-check.js';
import { decoderAsStored, lnAsStored } from './stored-weights.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('variants-torch-ln-cache') });
const root = scratchDir('variants-torch-ln');
const missing = torchAvailable();
const skip = torchSkip();
const PROMPT = 'The most famous sports in USA is';
/** The last layer against the model's own logits: the bounds variants-families uses (q4: the same dequantized weights in float32). */
const OWN = { fp16: 2e-2, q4: 1e-4 } as const;
type Q8Dtype = keyof typeof TORCH_Q8_FILES;

/** Writes the fp16 and q4 files of dir/onnx/model.onnx and the `q8` one. */
function writeVariantFiles(dir: string, q8: Q8Dtype): void {
  const fp32 = decodeModel(readFileSync(join(dir, 'onnx', 'model.onnx')));
  writeFileSync(join(dir, 'onnx', VARIANT_FILES.fp16), encodeModel(toFloat16(fp32)));
  writeFileSync(join(dir, 'onnx', VARIANT_FILES.q4), encodeModel(quantizeMatMul4Bits(fp32, 32, true)));
  writeTorchQ8Files(dir, [q8]);
}

/** The MatMulNBits nodes of a q4 file. */
function q4MatMuls(path: string): number {
  return decodeModel(readFileSync(path)).graph.node.filter((n) => n.op_type === 'MatMulNBits').length;
}

/**
 * The fp16 or q4 check shared by both kinds of family: every layer against `ref` (on the stored weights,
 * `head` the stored head), the last layer against the file's own logits, and for q4 that the
 * quantization moved the last layer away from the fp32 reference `fp32` (or the check would not see
 * a wrong dequantization).
 */
async function checkAgainstStored(model: LensModel, ids: number[], own: Float32Array, ref: ReferenceResult, head: Float32Array, fp32: ReferenceResult, dtype: 'fp16' | 'q4'): Promise<string> {
  const positions = [ids.length - 1, 2];
  const V = model.vocabSize, L = model.layers, P = positions.length;
  const run = await model.run(ids, positions, 'norm');
  const { worst, worstRatio } = await assertVariantLayers(model, ids, positions, run.logits, ref, head, dtype);
  let worstOwn = 0;
  positions.forEach((pos, p) => {
    const last = run.logits.subarray((L * P + p) * V, (L * P + p + 1) * V), theirs = own.subarray(pos * V, (pos + 1) * V);
    for (let i = 0; i < V; i++) worstOwn = Math.max(worstOwn, Math.abs(last[i] - theirs[i]));
    assertClose(last, theirs, OWN[dtype], `${dtype} last layer vs own logits`);
  });
  const unquantized = referenceLens(fp32, positions[0], false)[L];
  const moved = Math.max(...unquantized.map((v, i) => Math.abs(v - run.logits[L * P * V + i])));
  if (dtype === 'q4') assert.ok(moved > 50 * OWN.q4, `q4 moved the last layer by ${moved}`);
  return `max |Δlogit| vs the reference ${worst.toExponential(2)} (${worstRatio.toFixed(2)} of the bound), vs own logits ${worstOwn.toExponential(2)}, vs fp32 ${moved.toExponential(2)}`;
}

/** Loads the `dtype` variant of dir, runs `check` on it with the test prompt's ids and the file's own logits, and disposes of it. */
async function withVariant(dir: string, dtype: 'fp16' | 'q4' | Q8Dtype, kvShape: [number, number] | undefined, check: (model: LensModel, ids: number[], own: Float32Array) => Promise<string>): Promise<string> {
  const model = await loadLensModel(dir, { dtype, offline: true, env });
  try {
    const ids = model.encodePrompt(PROMPT);
    return `${dtype}: ${await check(model, ids, await ownLogits(join(dir, onnxFileFor(dtype)), ids, kvShape))}`;
  } finally {
    await model.dispose();
  }
}

const LN_FAMILIES: LnFamily[] = (process.env.LENS_TEST_LN_FAMILIES?.split(',') as LnFamily[] | undefined) ?? ['phi', 'opt', 'bloom', 'lfm2'];

for (const family of LN_FAMILIES) {
  test(`fp16, q4 and q8 of a torch.onnx ${family}: every layer the reference on the stored weights, last layer = own logits`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, family);
    const hub = lnFamilyModel(family);
    writeTorchModel(dir, hub.config, stateDictOf(hub), SP_VOCAB_SIZE, 'torch-past');
    // LFM2 has a Conv: transformers.js's q8 of such a model has uint8 weights (onnxruntime-web has no int8
    // ConvInteger), the same file as its uint8.
    const q8: Q8Dtype = family === 'lfm2' ? 'uint8' : 'q8';
    writeVariantFiles(dir, q8);
    // OPT flattens its hidden states before the MLP, so fc1 and fc2 are exported as Gemm, which the 4-bit quantizer leaves alone.
    const gemms = new Set(family === 'opt' ? [0, 1, 2].flatMap((l) => [`model.decoder.layers.${l}.fc1.weight`, `model.decoder.layers.${l}.fc2.weight`]) : []);
    for (const dtype of ['fp16', 'q4'] as const) {
      t.diagnostic(`${family} ${await withVariant(dir, dtype, undefined, async (model, ids, own) => {
        const stored = lnAsStored(hub, dtype, gemms);
        const ref = referenceLnForward(stored.model, ids, stored.linear), head = stored.weight(lnHead(hub).weight);
        if (dtype === 'q4') assert.equal(q4MatMuls(join(dir, onnxFileFor('q4'))), stored.quantized.size, 'the file quantizes the linears (and the head) the reference does');
        return checkAgainstStored(model, ids, own, ref, head, referenceLnForward(hub, ids), dtype);
      })}`);
    }
    t.diagnostic(`${family} ${await withVariant(dir, q8, undefined, (model, ids, own) => assertQ8Lens(model, ids, (o) => referenceQ8LnForward(hub, ids, o), own, { weightType: TORCH_Q8_FILES[q8][1] }))}`);
  });
}

// Both also in q8 (int8 weights).
const DECODER_CASES: [Family, ('fp16' | 'q4')[]][] = [['stablelm', ['fp16', 'q4']], ['olmo2', ['q4']]];

for (const [family, dtypes] of DECODER_CASES) {
  test(`${dtypes.join(', ')} and q8 of a torch.onnx ${family}: every layer the reference on the stored weights, last layer = own logits`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, family);
    const weights = writeTorchFixture(dir, tinyConfig(family), 'torch-past');
    writeVariantFiles(dir, 'q8');
    const kvShape: [number, number] = [weights.config.kvHeads, headDim(weights.config)];
    for (const dtype of dtypes) {
      t.diagnostic(`${family} ${await withVariant(dir, dtype, kvShape, (model, ids, own) => {
        const stored = decoderAsStored(weights, dtype);
        return checkAgainstStored(model, ids, own, referenceDecoderForward(stored, ids), stored.lmHead!, referenceDecoderForward(weights, ids), dtype);
      })}`);
    }
    t.diagnostic(`${family} ${await withVariant(dir, 'q8', kvShape, (model, ids, own) => assertQ8Lens(model, ids, weights, own, { weightType: TORCH_Q8_FILES.q8[1] }))}`);
  });
}
