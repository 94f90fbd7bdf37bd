// The bnb4 variant (model_bnb4.onnx: com.microsoft MatMulBnb4, written as onnxruntime's
// MatMulBnb4Quantizer writes it, test/fixtures/variants.ts) of the Llama-family fixtures: every layer,
// in both modes, against the independent float64 reference on the weights as the file stores them
// (code value · block absmax, test/model/stored-weights.ts), and the last layer against the model's
// own logits (onnxruntime on the unrewritten file). FP4 is checked too (the quantizer's other type).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { encodeModel } from '../../src/onnx/proto.js';
import { buildDecoderModel, DECODER_FORMS, headDim, tinyConfig, writeDecoderFixture, type Family } from '../fixtures/llama.js';
import { BNB4, BNB4_CODES, quantizeBnb4, quantizeMatMulBnb4, VARIANT_FILES, type Bnb4Type } from '../fixtures/variants.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { referenceLens } from '../reference/gpt2.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { assertVariantLayers, ownLogits } from './lens-check.js';
import { decoderAsStored, fp4Stored } from './stored-weights.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('variants-bnb4-cache') });
const root = scratchDir('variants-bnb4');
/** The same dequantized weights and float32 MatMul on the same row. */
const OWN = 1e-4;

test('bnb4 packing, hand-computed: absmax per block of the flattened Bᵀ, nearest code, first value in the high nibble', () => {
  // B [K=2, N=3]; Bᵀ flattened = [1, -0.5, 0.1, 4, -2, 0] in blocks of 4: absmax 1 and 2 (a block spans rows of Bᵀ).
  const b = Float32Array.from([1, 0.1, -2, -0.5, 4, 0]);
  const nf4 = quantizeBnb4(b, 2, 3, 4, BNB4.NF4);
  assert.deepEqual([...nf4.absmax], [4, 2]);
  // Block 1 (÷4): 0.25 → 0.2461 (code 10), -0.125 → -0.0911 (6), 0.025 → 0 (7), 1 → 15; block 2 (÷2): -1 → 0, 0 → 7.
  assert.deepEqual([...nf4.packed], [(10 << 4) | 6, (7 << 4) | 15, (0 << 4) | 7]);
  const fp4 = quantizeBnb4(b, 2, 3, 4, BNB4.FP4);
  // FP4: 0.25 → 0.25 (7), -0.125 → -0.1667 (14), 0.025 → 0.0052 (1), 1 → 1 (3); -1 → -1 (11), 0 → 0 (0).
  assert.deepEqual([...fp4.packed], [(7 << 4) | 14, (1 << 4) | 3, (11 << 4) | 0]);
  assert.equal(BNB4_CODES[BNB4.FP4][14], -0.16666667);
});

for (const [family, type] of [['llama', BNB4.NF4], ['qwen2', BNB4.NF4], ['llama', BNB4.FP4]] as [Family, Bnb4Type][]) {
  const name = type === BNB4.NF4 ? 'NF4' : 'FP4';
  test(`bnb4 (${name}) of ${family}: every layer the reference on the stored weights, last layer = the variant's own logits`, async (t) => {
    const dir = join(root, `${family}-${name}`);
    const weights = writeDecoderFixture(dir, tinyConfig(family), 'flat');
    writeFileSync(join(dir, 'onnx', VARIANT_FILES.bnb4), encodeModel(quantizeMatMulBnb4(buildDecoderModel(weights, DECODER_FORMS['flat-nocast']), type)));
    const model = await loadLensModel(dir, { dtype: 'bnb4', offline: true, env });
    try {
      const ids = model.encodePrompt('The most famous sports in USA is');
      const positions = [ids.length - 1, 2];
      const V = weights.config.vocab, L = weights.config.layers, P = positions.length;
      const stored = type === BNB4.NF4 ? decoderAsStored(weights, 'bnb4') : fp4Stored(weights);
      const ref = referenceDecoderForward(stored, ids);
      const run = await model.run(ids, positions, 'norm');
      const { worst, worstRatio } = await assertVariantLayers(model, ids, positions, run.logits, ref, stored.lmHead!, 'bnb4');
      const own = await ownLogits(join(dir, 'onnx', VARIANT_FILES.bnb4), ids, [weights.config.kvHeads, headDim(weights.config)]);
      let worstOwn = 0;
      positions.forEach((pos, p) => {
        const last = run.logits.subarray((L * P + p) * V, (L * P + p + 1) * V), theirs = own.subarray(pos * V, (pos + 1) * V);
        for (let i = 0; i < V; i++) worstOwn = Math.max(worstOwn, Math.abs(last[i] - theirs[i]));
        assertClose(last, theirs, OWN, 'bnb4 last layer vs own logits');
      });
      // The quantization must have moved the logits, or the check above would not see a wrong layout.
      const fp32Ref = referenceLens(referenceDecoderForward(weights, ids), positions[0], false)[L];
      const moved = Math.max(...fp32Ref.map((v, i) => Math.abs(v - run.logits[(L * P) * V + i])));
      assert.ok(moved > 50 * OWN, `bnb4 moved the last layer by ${moved}`);
      t.diagnostic(`${family} ${name}: max |Δlogit| vs the reference ${worst.toExponential(2)} (${worstRatio.toFixed(2)} of the bound), vs own logits ${worstOwn.toExponential(2)}, vs fp32 ${moved.toFixed(3)}`);
    } finally {
      await model.dispose();
    }
  });
}
