// fp16 and q4f16 of Gemma, Gemma 2 and Gemma 3 as torch.onnx exports them, put through transformers.js's
// float16 conversion (and MatMul4BitsQuantizer first for q4f16, test/fixtures/variants.ts): every layer,
// both modes, against the float64 reference on the weights as the file stores them, within the fp16 error
// budget (test/model/stored-weights.ts), the last layer against the model's own logits. The export folds
// Gemma's 1 + w into one float32 initializer per norm, so the stored gain is that sum rounded to half.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { DataType, decodeModel, encodeModel, halfToFloat, type Model, type Tensor } from '../../src/onnx/proto.js';
import { headDim, tinyConfig, type DecoderWeights, type Family, type Norm } from '../fixtures/llama.js';
import { torchAvailable, torchSkip, writeTorchFixture } from '../fixtures/torch-export.js';
import { quantizeMatMul4Bits, toFloat16, VARIANT_FILES } from '../fixtures/variants.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { assertVariantLayers, ownLogits } from './lens-check.js';
import { decoderAsStored, ownHalfTolerance } from './stored-weights.js';
import { halfSummedNBits } from './kernel-probes.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('variants-torch-gemma-cache') });
const root = scratchDir('variants-torch-gemma');
const missing = torchAvailable();
const skip = torchSkip();

for (const family of ['gemma', 'gemma2', 'gemma3_text'] as Family[]) {
  test(`fp16 and q4f16 of a torch.onnx ${family}: every layer the reference on the stored weights (gains half(1 + w)), last layer = own logits`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, family);
    const weights = writeTorchFixture(dir, tinyConfig(family), 'torch-past');
    const fp32 = decodeModel(readFileSync(join(dir, 'onnx', 'model.onnx')));
    const fp16 = toFloat16(fp32);
    // What the export and the converter store is what decoderAsStored models: every gain of the file.
    assertGainsStored(fp32, weights, (g) => Math.fround(1 + g), 'fp32 (folded 1 + w)');
    assertGainsStored(fp16, decoderAsStored(weights, 'fp16'), (g) => 1 + g, 'fp16');
    writeFileSync(join(dir, 'onnx', VARIANT_FILES.fp16), encodeModel(fp16));
    writeFileSync(join(dir, 'onnx', VARIANT_FILES.q4f16), encodeModel(toFloat16(quantizeMatMul4Bits(fp32, 32, true))));
    for (const dtype of ['fp16', 'q4f16'] as const) {
      const model = await loadLensModel(dir, { dtype, offline: true, env });
      try {
        const ids = model.encodePrompt('The most famous sports in USA is');
        const positions = [ids.length - 1, 2];
        const V = weights.config.vocab, L = weights.config.layers, P = positions.length;
        const run = await model.run(ids, positions, 'norm');
        const stored = decoderAsStored(weights, dtype);
        const ref = referenceDecoderForward(stored, ids);
        const { worst, worstRatio } = await assertVariantLayers(model, ids, positions, run.logits, ref, stored.lmHead!, dtype);
        const halfSums = await halfSummedNBits();
        const own = await ownLogits(join(dir, 'onnx', VARIANT_FILES[dtype]), ids, [weights.config.kvHeads, headDim(weights.config)]);
        positions.forEach((pos, p) => {
          // The bound variants-families uses for fp16 and q4f16.
          const tol = ownHalfTolerance(dtype, ref.finalNorm(ref.residual[L][pos]), stored.lmHead!, V, halfSums);
          assertClose(run.logits.subarray((L * P + p) * V, (L * P + p + 1) * V), own.subarray(pos * V, (pos + 1) * V), tol, `${dtype} last layer vs own logits`);
        });
        t.diagnostic(`${family} ${dtype}: max |Δlogit| vs the reference ${worst.toExponential(2)}, ${worstRatio.toFixed(2)} of the bound`);
      } finally {
        await model.dispose();
      }
    }
  });
}

/** The numbers of a float or float16 initializer. */
function initializerValues(t: Tensor): number[] {
  if (t.data_type === DataType.FLOAT16) return (t.int32_data?.length ? t.int32_data : Array.from(new Uint16Array(Uint8Array.from(t.raw_data!).buffer))).map(halfToFloat);
  assert.equal(t.data_type, DataType.FLOAT, `${t.name} is a float`);
  return t.float_data?.length ? t.float_data : Array.from(new Float32Array(Uint8Array.from(t.raw_data!).buffer));
}

/**
 * Checks every norm gain the export multiplies by (the initializer read by the norm's `Mul_1`, found by
 * the exporter's node names) against `gain` of the matching gain of `w`, exactly.
 */
function assertGainsStored(model: Model, w: DecoderWeights, gain: (g: number) => number, what: string): void {
  const sandwich = w.traits.blockNorms === 'sandwich';
  const normOf = (layer: number | undefined, path: string): Norm | undefined => {
    if (layer === undefined) return path === 'norm' ? w.finalNorm : undefined;
    const b = w.blocks[layer];
    // Gemma's post_attention_layernorm is the MLP's pre-norm; Gemma 2/3's is on the attention output.
    const byPath: Record<string, Norm | undefined> = {
      input_layernorm: b.ln1, post_attention_layernorm: sandwich ? b.postAttn : b.ln2, pre_feedforward_layernorm: b.ln2,
      post_feedforward_layernorm: b.postMlp, 'self_attn/q_norm': b.qNorm, 'self_attn/k_norm': b.kNorm,
    };
    return byPath[path];
  };
  const initializers = new Map(model.graph.initializer.map((t) => [t.name, t]));
  let checked = 0;
  for (const node of model.graph.node) {
    const m = /^\/model\/(?:layers\.(\d+)\/)?(.+)\/Mul_1$/.exec(node.name ?? '');
    const tensor = node.input.map((i) => initializers.get(i)).find((t) => t?.dims.length === 1);
    if (!m || !tensor) continue;
    const norm = normOf(m[1] === undefined ? undefined : Number(m[1]), m[2]);
    assert.ok(norm, `${what}: ${node.name} multiplies by a gain of no norm`);
    assert.deepEqual(initializerValues(tensor), Array.from(norm.g, gain), `${what}: the gain ${node.name} reads`);
    checked++;
  }
  const perBlock = (sandwich ? 4 : 2) + (w.traits.qkNorm ? 2 : 0);
  assert.equal(checked, 1 + w.config.layers * perBlock, `${what}: every norm's gain found`);
}
