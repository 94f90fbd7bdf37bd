// fp16 of the families after Llama as torch.onnx exports them, put through transformers.js's float16
// conversion (test/fixtures/variants.ts toFloat16): every layer, both modes, against the float64
// reference on the float16-rounded weights within the fp16 error budget (test/model/stored-weights.ts),
// the last layer against the model's own logits. One family per twist: Qwen3's q/k norms, Granite's
// multipliers and ÷ logits_scaling, Cohere's parallel block and × logit_scale, Phi-3's fused
// projections, OLMo2's branch-only norms. Gemma's: test/model/variants-torch-gemma.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadLensModel } from '../../src/model/runtime.js';
import { decodeModel, encodeModel } from '../../src/onnx/proto.js';
import { headDim, tinyConfig, type Family } from '../fixtures/llama.js';
import { torchAvailable, torchSkip, writeTorchFixture } from '../fixtures/torch-export.js';
import { toFloat16, VARIANT_FILES } from '../fixtures/variants.js';
import { referenceDecoderForward } from '../reference/llama.js';
import { assertClose, cleanEnv, scratchDir } from '../helpers.js';
import { assertVariantLayers, ownLogits } from './lens-check.js';
import { decoderAsStored } from './stored-weights.js';

const env = cleanEnv({ LENS_CACHE: scratchDir('fp16-torch-families-cache') });
const root = scratchDir('fp16-torch-families');
const missing = torchAvailable();
const skip = torchSkip();
/** The last layer against the model's own logits: the bound variants-families uses for fp16. */
const OWN = 2e-2;

for (const family of ['qwen3', 'granite', 'cohere', 'phi3', 'olmo2'] as Family[]) {
  test(`fp16 of a torch.onnx ${family}: every layer the reference on the stored weights, last layer = own logits`, { skip }, async (t) => {
    assert.equal(missing, undefined, missing);
    const dir = join(root, family);
    const weights = writeTorchFixture(dir, tinyConfig(family), 'torch-past');
    const path = join(dir, 'onnx', VARIANT_FILES.fp16);
    writeFileSync(path, encodeModel(toFloat16(decodeModel(readFileSync(join(dir, 'onnx', 'model.onnx'))))));
    const model = await loadLensModel(dir, { dtype: 'fp16', offline: true, env });
    try {
      const ids = model.encodePrompt('The most famous sports in USA is');
      const positions = [ids.length - 1, 2];
      const V = weights.config.vocab, L = weights.config.layers, P = positions.length;
      const run = await model.run(ids, positions, 'norm');
      const stored = decoderAsStored(weights, 'fp16');
      const { worst, worstRatio } = await assertVariantLayers(model, ids, positions, run.logits, referenceDecoderForward(stored, ids), stored.lmHead!, 'fp16');
      const own = await ownLogits(path, ids, [weights.config.kvHeads, headDim(weights.config)]);
      positions.forEach((pos, p) => assertClose(run.logits.subarray((L * P + p) * V, (L * P + p + 1) * V), own.subarray(pos * V, (pos + 1) * V), OWN, 'fp16 last layer vs own logits'));
      t.diagnostic(`${family} fp16: max |Δlogit| vs the reference ${worst.toExponential(2)}, ${worstRatio.toFixed(2)} of the bound`);
    } finally {
      await model.dispose();
    }
  });
}
